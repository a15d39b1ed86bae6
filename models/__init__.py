"""GLNet for glgeo (installed as ``glgeo.models``).

``build_model`` builds a network from a backbone name; ``load_checkpoint`` loads a glgeo
checkpoint file or a zoo model by name; ``import_released`` converts the GLNet authors'
released checkpoints.
"""

from .backbones import STRIDES, Backbone, build_backbone, list_backbones, register_backbone
from .checkpoint import Checkpoint, InputScaling, import_released, load_checkpoint, save_checkpoint, save_released
from .coarse_to_fine import relaxed_foreground_box
from .glnet import MODES, GLNet, GLNetConfig, GLNetOutput, build_model
from .heads import BranchFeatures, FPNHead
from .losses import FocalLoss, GLNetObjective
from .sharing import L2GCanvas, PatchBoxes, coverage_map, crop_global, sample_global
from .zoo import list_models, model_card

__all__ = [
    "MODES",
    "STRIDES",
    "Backbone",
    "BranchFeatures",
    "Checkpoint",
    "FPNHead",
    "FocalLoss",
    "GLNetObjective",
    "GLNet",
    "GLNetConfig",
    "GLNetOutput",
    "InputScaling",
    "L2GCanvas",
    "PatchBoxes",
    "build_backbone",
    "build_model",
    "coverage_map",
    "crop_global",
    "sample_global",
    "import_released",
    "save_released",
    "list_backbones",
    "list_models",
    "load_checkpoint",
    "model_card",
    "register_backbone",
    "relaxed_foreground_box",
    "save_checkpoint",
]
