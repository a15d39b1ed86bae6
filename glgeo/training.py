"""GLNet training: the paper's three stages on PyTorch Lightning.

1. the global branch alone on downsampled scenes;
2. the local branch (with G -> L sharing) and the aggregation conv, the global branch
   frozen: focal(local) + focal(aggregated) + 0.15 fmreg;
3. (bidirectional models) the L -> G global branch and the aggregation conv, the local
   branch frozen: focal(global) + focal(aggregated).

Each stage starts from the previous stage's best checkpoint. Optimisation follows the
released code: Adam (betas 0.9/0.999, weight decay 5e-4), poly learning-rate decay (power
0.9) over the stage's steps, one optimizer step per batch of scenes. In stage 2 a scene's
patches go through the network in sub-batches, one backward per sub-batch (the gradients
add up, as in the released code); in stage 3 every patch first goes through the frozen
local branch to fill the L -> G canvases, then the global branch runs once and each
sub-batch's aggregation loss is back-propagated through it.

A run folder holds, per stage, ``stageN/best.pt`` (best validation mIoU) and
``stageN/last.pt`` (glgeo checkpoints, usable by ``glgeo segment``), Lightning's
``stageN/lightning/last.ckpt`` (for ``resume``), CSV logs in ``stageN/logs`` (and
TensorBoard logs where the ``tensorboard`` package is installed); ``model.pt`` is the final stage's best model.

Validation scores each scene at the logits' resolution (1/4): the patch logits are
merged into the scene (summed where patches overlap) and compared with the mask resized
by nearest neighbour; stage 1 scores the global branch on the downsampled scene. Full
resolution scores come from ``glgeo evaluate``.

Training data is a published layout (:mod:`glgeo.datasets`) or your own imagery and labels
read through torchgeo (kind ``geo``, :mod:`glgeo.geodata`: scenes drawn by torchgeo's
samplers, split by area); both give the same samples, so the stages run unchanged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .atomic import atomic_path, unwritable_folder_error
from .averaging import WeightAverage
from .datasets import (
    GLNetSceneDataset,
    SampleSpec,
    SceneCollection,
    balanced_weights,
    class_shares,
    collate_scenes,
    context_footprint,
    open_dataset,
)
from .device import resolve_precision
from .errors import CheckpointError, InputError, Interruption, MissingDependencyError, OutputError
from .modes import MODE_STAGES, TrainMode
from .resolution import whole_pixels
from .metrics import SegmentationScores, confusion_tensor
from .schemes import NODATA_ID, ClassScheme
from .splits import Split, make_split

try:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback, TQDMProgressBar
    from lightning.pytorch.utilities import rank_zero_only
except ImportError:  # the standalone package has the same API
    try:
        import pytorch_lightning as pl  # type: ignore[no-redef]
        from pytorch_lightning.callbacks import Callback, TQDMProgressBar  # type: ignore[no-redef]
        from pytorch_lightning.utilities import rank_zero_only  # type: ignore[no-redef]
    except ImportError:
        raise MissingDependencyError("glgeo training needs PyTorch Lightning: pip install lightning") from None

from glgeo.models import GLNet, InputScaling, L2GCanvas, PatchBoxes, build_model, load_checkpoint, save_checkpoint
from glgeo.models.losses import (
    FMREG_WEIGHT, STAGE_TERMS, FocalLoss, GLNetObjective, SegmentationLoss, class_loss_weights, cut_consistency, mosaic_of,
    resize_labels,
)
from glgeo.models.backbones import check_backbone_name
from glgeo.models.checkpoint import FORMAT as CHECKPOINT_FORMAT
from glgeo.models.checkpoint import resolve_checkpoint
from glgeo.models.sharing import feature_map_regularisation

log = logging.getLogger(__name__)

StageSpec = Literal["1", "2", "3", "all"]

#: Learning rates of the released code per stage.
DEFAULT_LR = {1: 5e-5, 2: 2e-5, 3: 2e-5}
#: Keep stage 3's local features between its two passes when they fit in this many bytes.
LOCAL_CACHE_BYTES = 1 << 30
#: Cut consistency (stage 1): the largest share of a view's side a random cut takes off
#: each side (a quarter: about what a user's bounding box or a context window's edge takes
#: off a scene's view; benchmarks/invariance.py cuts 14 % of the rows and 21 % of the columns).
MAX_CUT = 0.25


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class DataSettings:
    """Where the scenes come from and what each sample holds.

    Args:
        kind: ``inria``, ``deepglobe``, ``folder``, or ``geo`` (imagery and labels, in ``geo``).
        root: the dataset folder (not for ``geo``).
        scheme: the class scheme (``folder`` datasets; the benchmark's own otherwise).
        split_file: train/val lists to use (see :mod:`glgeo.splits`).
        val_cities: Inria leave-cities-out.
        split_seed: seed of the random split (DeepGlobe, folder).
        global_size: side of the downsampled scene (paper: 508).
        patch_size: side of the local patches (paper: 508).
        batch_size: scenes per optimizer step (paper: 6).
        sub_batch: patches per forward/backward in stages 2 and 3 (paper: 6).
        workers: data-loading processes.
        bands: the images' RGB bands (1-based); ``None``: each image's bands labelled red,
            green and blue, else its three non-alpha bands, as ``glgeo segment`` reads scenes.
        input_range: raw values mapped to 0 and 1 (RGB bytes: 0, 255).
        augment: random flips and quarter turns of training scenes.
        scale: read scenes at this fraction of their resolution (1: the paper; 0.25 makes
            short CPU runs possible; the model then expects imagery at that resolution).
        geo: imagery and labels read through torchgeo (:class:`glgeo.geodata.GeoInputs`),
            for kind ``geo``; it holds its own scheme and validation area.
        gsd: metres per pixel of the dataset's images, when their georeferencing (or the
            layout's published figure) does not say it or says it wrongly, e.g. 4.78 for
            DeepGlobe images reduced from 2448 to 256 px. Recorded in the checkpoints.
        color_jitter: per training scene, brightness, contrast and saturation factors drawn
            uniformly from ``[1 - color_jitter, 1 + color_jitter]`` (the same for the global
            image and the scene's patches); 0: none.
        crop_jitter: scale jitter of training scenes (:class:`~glgeo.datasets.SampleSpec`).
        blur_jitter: per training scene, a Gaussian blur of standard deviation drawn
            uniformly from ``[0, blur_jitter]`` patch pixels (:func:`blur`; the global image
            by the same ground width), so the model learns imagery that was resampled (a
            reprojection, a decimated read) as well as imagery as delivered; 0: none.
        mosaic: share of training scenes cut from a 2 x 2 mosaic of four scenes
            (:class:`~glgeo.datasets.SampleSpec`); not for imagery (``geo``) inputs, whose
            samplers already cut windows anywhere in the imagery.
        balance: class-balanced sampling power (:func:`~glgeo.datasets.balanced_weights`):
            0 draws every training scene once per epoch; above 0 an epoch draws as many
            scenes, with replacement, favouring scenes of rare classes.
        holdout_share, holdout_scenes: validation scenes moved to the split's test part
            (:func:`~glgeo.splits.hold_out`): checkpoints are chosen on the rest, and the
            held-out ones stay unseen for reporting (``glgeo evaluate --part test``).
    """

    kind: str
    root: Path | None = None
    scheme: ClassScheme | None = None
    split_file: Path | None = None
    val_cities: tuple[str, ...] = ()
    split_seed: int = 0
    global_size: int = 508
    patch_size: int = 508
    batch_size: int = 6
    sub_batch: int = 6
    workers: int = 2
    bands: tuple[int, int, int] | None = None
    input_range: tuple[float, float] = (0.0, 255.0)
    augment: bool = True
    scale: float = 1.0
    geo: Any = None
    gsd: float | None = None
    color_jitter: float = 0.0
    crop_jitter: float = 0.0
    blur_jitter: float = 0.0
    mosaic: float = 0.0
    balance: float = 0.0
    holdout_share: float = 0.0
    holdout_scenes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.kind == "geo") != (self.geo is not None):
            raise InputError("imagery and labels (geo) go with kind 'geo', and kind 'geo' needs them")
        if self.kind != "geo" and self.root is None:
            raise InputError(f"a {self.kind} dataset needs its root folder")
        if self.kind == "geo" and (self.split_file is not None or self.val_cities):
            raise InputError("imagery and labels are split by area (val_images, val_bbox, val_fraction), not by split_file or val_cities")
        if self.kind == "geo" and (self.holdout_share or self.holdout_scenes):
            raise InputError(
                "holdout_share and holdout_scenes hold out validation scenes of a dataset; imagery and labels are"
                " split by area: keep the area to report on out of the training imagery and score it afterwards"
                " (glgeo evaluate --images)"
            )
        if self.batch_size < 1 or self.sub_batch < 1 or self.workers < 0:
            raise InputError("batch size and sub-batch must be >= 1 and workers >= 0")
        for name, least in (("global_size", 32), ("patch_size", 64)):  # as --global-size, --patch-size
            whole = whole_pixels(getattr(self, name), least)
            if whole is None:
                raise InputError(f"{name}={getattr(self, name)!r} must be a whole number of pixels, {least} or more")
            object.__setattr__(self, name, whole)  # numpy integers as int (they are saved in checkpoints)
        if self.gsd is not None and not self.gsd > 0:
            raise InputError(f"the images' ground sample distance must be positive, got gsd={self.gsd}")
        if not 0 <= self.color_jitter < 1:
            raise InputError(f"colour jitter must be in [0, 1), got color_jitter={self.color_jitter}")
        if not 0 <= self.crop_jitter < 1:
            raise InputError(f"crop (scale) jitter must be in [0, 1), got crop_jitter={self.crop_jitter}")
        if not 0 <= self.blur_jitter <= MAX_BLUR:
            raise InputError(f"blur jitter must be in [0, {MAX_BLUR:g}] pixels, got blur_jitter={self.blur_jitter}")
        if not 0 <= self.mosaic <= 1:
            raise InputError(f"the mosaic share must be in [0, 1], got mosaic={self.mosaic}")
        if self.mosaic and self.kind == "geo":
            raise InputError(
                f"mosaic={self.mosaic:g} is for dataset inputs (kind deepglobe, inria or folder): imagery inputs are"
                " already cut into windows anywhere in the imagery; leave it at 0"
            )
        if self.kind == "geo":
            # torchgeo's sampler draws the imagery's scenes: these would be recorded but not applied
            unused = [f"{name}={value:g}" for name, value in (("crop_jitter", self.crop_jitter), ("balance", self.balance))
                      if value]
            if unused:
                raise InputError(
                    f"{' and '.join(unused)} {'are' if len(unused) > 1 else 'is'} for dataset inputs (kind deepglobe,"
                    " inria or folder): imagery inputs are drawn as scenes of scene_size at random places of the"
                    f" imagery; leave {'them' if len(unused) > 1 else 'it'} at 0"
                )
            if self.gsd is not None:
                raise InputError(
                    f"gsd={self.gsd:g} is for images whose files do not say their resolution; imagery inputs are"
                    " georeferenced (their resolution is known): read them at another with res=RES"
                )
        if self.balance < 0:
            raise InputError(f"the class-balance power must be >= 0, got balance={self.balance}")
        if not self.input_range[1] > self.input_range[0]:
            raise InputError(f"input range needs max > min, got {self.input_range}")


@dataclass(frozen=True)
class TrainSettings:
    """How the network is trained and on what hardware.

    Args:
        out: the run folder.
        backbone: ``resnet18``, ``resnet34``, ``resnet50`` ... (paper: resnet50).
        pyramid_channels: FPN width (paper: 256); smaller trains faster on a CPU.
        segmentation_channels: width of each ps2 level (paper: 128).
        mode: the model to end with: ``global``, ``g2l`` or ``bidirectional``.
        stage: ``1``, ``2``, ``3`` or ``all`` (every stage of the mode, in order).
        epochs: epochs per stage (stage 1, 2, 3).
        lr: learning rate per stage (stage 1, 2, 3).
        weight_decay: Adam weight decay.
        poly_power: exponent of the poly learning-rate decay.
        focal_gamma: focal loss gamma (released code 3, paper 6).
        loss_balance: class-weighted loss power (:func:`~glgeo.models.losses.class_loss_weights`
            of the training scenes' class shares); 0: every pixel weighs alike. For dataset
            inputs (kind ``deepglobe``, ``inria``, ``folder``).
        lovasz: weight of a Lovász-softmax term added to every output's focal loss
            (:class:`~glgeo.models.losses.SegmentationLoss`: it asks for each class's IoU);
            0: none.
        cut_consistency: weight of the cut-consistency term of stage 1 (the global branch
            also learns from random cuts of its views and is asked for the same class
            probabilities on the shared ground, :func:`random_cuts`); 0: none.
        fmreg_weight: weight of the feature-map regularisation (stage 2).
        ema: decay of an exponential moving average of the weights (per optimizer step,
            warmed up; :class:`~glgeo.averaging.WeightAverage`): validation, ``best.pt``
            and ``last.pt`` use the average. 0: none.
        init: checkpoint (file or zoo name) the first stage run starts from; by default
            stage 1 starts from scratch and stage N from the run's ``stageN-1/best.pt``.
        backbone_weights: weights for a fresh model's backbones: a torchvision ImageNet
            state-dict file (the released code started from ImageNet weights), or a glgeo
            checkpoint (file or zoo name) of the same backbone, whose branches give theirs
            to the same branches (:func:`transfer_backbones`; its heads and classes are
            not used, so it may be of another class scheme).
        resume: continue an interrupted run from its Lightning checkpoints; finished
            stages are skipped. ``out`` must exist (a stage with no saved epoch starts
            afresh).
        accelerator: ``auto``, ``cpu``, ``gpu``...
        devices: Lightning's ``devices`` (``auto``, a count, or a list such as ``0,1``).
        num_nodes: machines (DDP).
        strategy: Lightning strategy (``auto``, ``ddp``, ``ddp_spawn``...).
        precision: ``auto``, ``fp32``, ``bf16`` or ``fp16`` (mixed precision), the names
            ``glgeo segment`` takes; ``auto`` as :func:`training_precision` decides.
        seed: seed of weights, augmentation and data order.
        limit_train_batches: batches per training epoch (``None``: all), for short runs.
        limit_val_batches: batches per validation (``None``: all).
        progress_bar: draw Lightning's progress bar.
        metadata: facts stored in every checkpoint (for example the command line).
    """

    out: Path
    backbone: str = "resnet50"
    pyramid_channels: int = 256
    segmentation_channels: int = 128
    mode: TrainMode = "bidirectional"
    stage: StageSpec = "all"
    epochs: tuple[int, int, int] = (20, 20, 20)
    lr: tuple[float, float, float] = (DEFAULT_LR[1], DEFAULT_LR[2], DEFAULT_LR[3])
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    focal_gamma: float = 3.0
    loss_balance: float = 0.0
    lovasz: float = 0.0
    cut_consistency: float = 0.0
    fmreg_weight: float = FMREG_WEIGHT
    ema: float = 0.0
    init: str | None = None
    backbone_weights: str | Path | None = None
    resume: bool = False
    accelerator: str = "auto"
    devices: str | int | list[int] = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"
    seed: int = 0
    limit_train_batches: int | None = None
    limit_val_batches: int | None = None
    progress_bar: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODE_STAGES:
            raise InputError(f"unknown mode {self.mode!r}; choose from: {', '.join(MODE_STAGES)}")
        if self.stage not in ("1", "2", "3", "all"):
            raise InputError(f"stage must be 1, 2, 3 or all, got {self.stage!r}")
        if len(self.epochs) != 3 or any(e < 1 for e in self.epochs):
            raise InputError(f"give at least one epoch per stage, got {self.epochs}")
        if self.precision not in ("auto", *LIGHTNING_PRECISION):
            raise InputError(f"unknown precision {self.precision!r}; use auto, fp32, bf16 or fp16")
        if len(self.lr) != 3 or any(not v > 0 for v in self.lr):
            raise InputError(f"learning rates must be positive, got {self.lr}")
        if not self.loss_balance >= 0:
            raise InputError(f"the loss class-balance power must be >= 0, got loss_balance={self.loss_balance}")
        if not self.cut_consistency >= 0:
            raise InputError(f"the cut-consistency weight must be >= 0, got cut_consistency={self.cut_consistency}")
        if not self.lovasz >= 0:
            raise InputError(f"the Lovász term's weight must be >= 0, got lovasz={self.lovasz}")
        if not 0 <= self.ema < 1:
            raise InputError(f"the weight-average decay must be 0 (none) or below 1, got ema={self.ema}")
        # checked here, not first when the stage builds its loss and model: the run folder is
        # made before the dataset is read
        if not self.focal_gamma >= 0:
            raise InputError(f"the focal loss's gamma must be >= 0 (0 is cross-entropy), got focal_gamma={self.focal_gamma}")
        check_backbone_name(self.backbone)
        for name, paper in (("pyramid_channels", 256), ("segmentation_channels", 128)):
            width = getattr(self, name)
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise InputError(f"{name}={width} must be a whole number of channels, 1 or more (the paper's: {paper})")

    @property
    def stages(self) -> tuple[int, ...]:
        """The stages this run trains, in order.

        Raises:
            InputError: a stage that the mode does not have.
        """
        allowed = MODE_STAGES[self.mode]
        if self.stage == "all":
            return allowed
        stage = int(self.stage)
        if stage not in allowed:
            raise InputError(f"a {self.mode} model has no stage {stage}; its stages are {', '.join(map(str, allowed))}")
        return (stage,)


@dataclass(frozen=True)
class StageResult:
    """What one stage produced (``first_loss`` and ``last_loss``: the mean training loss of
    the stage's first and last epoch; ``seconds``: its training time, both across resumes)."""

    stage: int
    best: Path
    last: Path
    best_miou: float | None
    epochs: int
    seconds: float
    first_loss: float | None
    last_loss: float | None


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced."""

    out: Path
    model: Path
    split: Split
    stages: tuple[StageResult, ...]


# --------------------------------------------------------------------------- helpers


def poly_lr(base: float, progress: float, power: float = 0.9) -> float:
    """The poly schedule: ``base * (1 - progress) ** power`` for progress in [0, 1]."""
    return base * (1.0 - min(max(progress, 0.0), 1.0)) ** power


def scale_input(raw: torch.Tensor, input_range: tuple[float, float]) -> torch.Tensor:
    """Raw pixel values to network inputs in [0, 1] (on the tensor's device)."""
    lo, hi = input_range
    return (raw.float() - lo) / (hi - lo)


def jitter_factors(n: int, strength: float, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(n, 3)`` brightness, contrast and saturation factors, uniform in ``1 +- strength``
    (torch's generator, which Lightning seeds)."""
    return 1.0 + strength * (2.0 * torch.rand((n, 3)) - 1.0).to(device)


def _grey(x: torch.Tensor) -> torch.Tensor:
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])


def color_jitter(x: torch.Tensor, factors: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Brightness, saturation and contrast of RGB inputs ``(N, 3, H, W)`` in [0, 1].

    ``factors`` ``(N, 3)``: brightness multiplies the pixels, saturation scales their
    distance to their grey value, contrast their distance to ``mean`` ``(N,)`` (the grey
    mean of the scene's global image, so a scene's patches change like the scene);
    the result is clipped to [0, 1].
    """
    b, c, sat = (factors[:, i].view(-1, 1, 1, 1).to(x.dtype) for i in range(3))
    x = x * b
    grey = _grey(x)
    x = (x - grey) * sat + grey
    m = mean.view(-1, 1, 1, 1).to(x.dtype)
    return ((x - m) * c + m).clamp_(0.0, 1.0)


#: The largest blur jitter, in pixels (a Gaussian's standard deviation).
MAX_BLUR = 3.0


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Each image of ``x`` ``(N, C, H, W)`` blurred by a Gaussian of its own standard
    deviation ``sigma`` ``(N,)`` in pixels (separable, reflected at the edges; 0: as it is),
    in float32 whatever the autocast, returned in ``x``'s dtype."""
    radius = int(math.ceil(3 * float(sigma.max()))) if sigma.numel() else 0
    n, c, h, w = x.shape
    if radius == 0 or min(h, w) <= radius:  # nothing to blur, or too small to reflect
        return x
    offsets = torch.arange(-radius, radius + 1, device=x.device, dtype=torch.float32)
    s = sigma.to(device=x.device, dtype=torch.float32).clamp_min(1e-6).view(-1, 1)
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / s) ** 2)
    kernel = (kernel / kernel.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # one per image and band
    with torch.autocast(device_type=x.device.type, enabled=False):
        flat = x.to(torch.float32).reshape(1, n * c, h, w)
        flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel.view(n * c, 1, 1, -1), groups=n * c)
        flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel.view(n * c, 1, -1, 1), groups=n * c)
    return flat.view(n, c, h, w).to(x.dtype)


def random_cuts(
    images: torch.Tensor, labels: torch.Tensor, max_cut: float, mosaic: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int, int, int]], list[tuple[int, ...]]]:
    """A random cut of each view, read as a whole view (the global branch's input size).

    Each side of a view loses a share drawn uniformly from ``[0, max_cut]`` of the view's
    side, independently (so the cut's aspect differs from the view's, as a scene cut by a
    user's bounding box or a context window's edge does). With probability ``mosaic`` the
    cut of that size is instead taken from a 3 x 3 mosaic of the batch's views with the view
    at the centre (the others: the next eight of the batch, cyclically) anywhere its centre
    lies on the view, so the cut holds foreign ground beyond the view's edges, as a context
    window that straddles two kinds of land does. Cuts follow the label grid (``labels``
    ``(N, h, w)``, the logits' resolution): the images are cut along the same lines and
    resized bilinearly, the labels nearest.

    Returns:
        the cut images ``(N, 3, H, W)``, the cut labels ``(N, h, w)``, each cut's box
        ``(top, left, height, width)`` in label cells of its source, and each cut's source
        (:func:`~glgeo.models.losses.mosaic_of`: the view's index, or the nine of the mosaic).
    """
    n, _, height, width = images.shape
    h, w = labels.shape[-2:]
    fy, fx = height // h, width // w
    cut_images, cut_labels, boxes, sources = [], [], [], []
    for i in range(n):
        top, bottom, left, right = (int(torch.randint(0, int(max_cut * side) + 1, ()).item()) for side in (h, h, w, w))
        bh, bw = h - top - bottom, w - left - right
        if mosaic > 0 and float(torch.rand(())) < mosaic:
            source: tuple[int, ...] = tuple((i + k) % n for k in range(-4, 5))  # the view at the centre
            # the cut's centre anywhere on the view (the mosaic's middle tile)
            top = h + int(torch.randint(0, h, ()).item()) - bh // 2
            left = w + int(torch.randint(0, w, ()).item()) - bw // 2
        else:
            source = (i,)
        view = mosaic_of(images, source)[None, :, top * fy : (top + bh) * fy, left * fx : (left + bw) * fx]
        cut_images.append(F.interpolate(view, size=(height, width), mode="bilinear", align_corners=False, antialias=True))
        cut_labels.append(resize_labels(mosaic_of(labels, source)[None, top : top + bh, left : left + bw], (h, w)))
        boxes.append((top, left, bh, bw))
        sources.append(source)
    return torch.cat(cut_images), torch.cat(cut_labels), boxes, sources


def merge_patch_logits(logits: torch.Tensor, boxes: torch.Tensor, scene_size: Sequence[int], out_size: Sequence[int]) -> torch.Tensor:
    """Sum patch logits ``(N, C, h, w)`` into a scene-wide ``(C, *out_size)`` map.

    Each patch box ``(top, left, h, w)`` in a ``scene_size`` scene is mapped onto the
    output grid and its logits resized bilinearly onto that footprint.
    """
    height, width = int(scene_size[0]), int(scene_size[1])
    oh, ow = int(out_size[0]), int(out_size[1])
    canvas = logits.new_zeros((logits.shape[1], oh, ow), dtype=torch.float32)
    for patch, (t, l, h, w) in zip(logits, boxes.tolist()):
        r0, r1 = round(t * oh / height), max(round((t + h) * oh / height), round(t * oh / height) + 1)
        c0, c1 = round(l * ow / width), max(round((l + w) * ow / width), round(l * ow / width) + 1)
        r1, c1 = min(r1, oh), min(c1, ow)
        canvas[:, r0:r1, c0:c1] += F.interpolate(patch[None].float(), size=(r1 - r0, c1 - c0), mode="bilinear", align_corners=False)[0]
    return canvas


# --------------------------------------------------------------------------- Lightning


class GLNetTask(pl.LightningModule):
    """One training stage of GLNet as a LightningModule (manual optimisation).

    Args:
        model: the network, with the mode the run ends with.
        stage: 1, 2 or 3.
        scheme: the class scheme (for validation scores).
        lr: base learning rate of the stage.
        weight_decay: Adam weight decay.
        poly_power: poly decay exponent.
        focal_gamma: focal loss gamma.
        fmreg_weight: feature-map regularisation weight (stage 2).
        sub_batch: patches per forward/backward.
        input_range: raw values mapped to 0 and 1.
        color_jitter: brightness/contrast/saturation jitter of training scenes
            (:func:`color_jitter`); 0: none.
        blur_jitter: the largest Gaussian blur of training scenes, in patch pixels
            (:func:`blur`); 0: none.
        class_weights: a loss weight per class of the scheme (``None``: all 1).
        lovasz: weight of the Lovász-softmax term of every output's loss
            (:class:`~glgeo.models.losses.SegmentationLoss`); 0: focal loss alone.
        cut_consistency: weight of the cut-consistency term (stage 1,
            :func:`~glgeo.models.losses.cut_consistency`); 0: no cuts.
        max_cut: the largest share of a view's side a cut takes off each side.
        mosaic_cuts: share of the cuts taken from a 3 x 3 mosaic of the batch's views
            (:func:`random_cuts`).
        ema: decay of an exponential moving average of the weights, updated after each
            optimizer step (:class:`~glgeo.averaging.WeightAverage`); validation and the
            saved checkpoints use the average. 0: none.
    """

    def __init__(
        self,
        model: GLNet,
        stage: int,
        scheme: ClassScheme,
        lr: float,
        weight_decay: float = 5e-4,
        poly_power: float = 0.9,
        focal_gamma: float = 3.0,
        fmreg_weight: float = FMREG_WEIGHT,
        sub_batch: int = 6,
        input_range: tuple[float, float] = (0.0, 255.0),
        color_jitter: float = 0.0,
        blur_jitter: float = 0.0,
        class_weights: Sequence[float] | None = None,
        lovasz: float = 0.0,
        cut_consistency: float = 0.0,
        max_cut: float = MAX_CUT,
        mosaic_cuts: float = 0.0,
        ema: float = 0.0,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = model
        self.stage = stage
        self.scheme = scheme
        self.lr = lr
        self.weight_decay = weight_decay
        self.poly_power = poly_power
        self.sub_batch = sub_batch
        self.input_range = input_range
        # the stage's objective (glgeo.models.losses), computed here sub-batch by sub-batch
        loss: torch.nn.Module = FocalLoss(focal_gamma, ignore_index=NODATA_ID, class_weights=class_weights)
        if lovasz > 0:
            loss = SegmentationLoss(loss, lovasz)
        self.objective = GLNetObjective(stage, loss, fmreg_weight)
        self.color_jitter = color_jitter
        self.blur_jitter = blur_jitter
        self._blur: torch.Tensor | None = None  # this batch's blur per scene, in patch pixels
        self.cut_consistency = cut_consistency
        self.max_cut = max_cut
        self.mosaic_cuts = mosaic_cuts
        self._jitter: tuple[torch.Tensor, torch.Tensor] | None = None
        model.set_stage(stage)  # before any DDP wrapping: DDP registers only trainable parameters
        self.ema = ema
        self.average: WeightAverage | None = None  # made on the training device (on_fit_start)
        self._saved_average: dict[str, Any] | None = None  # a resumed run's, until then
        self._averaged = contextlib.ExitStack()  # the average applied during validation
        self.val_confusion: torch.Tensor | None = None
        self.loss_history: list[float] = []  # one mean per epoch, a resumed run's earlier epochs first
        self._epoch_losses: list[tuple[float, int]] = []  # (loss, batch size) of this epoch's steps
        self._seconds_before = 0.0  # the stage's training time before a resume
        self._fit_started: float | None = None

    # ------------------------------------------------------------------ setup
    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.model.stage_parameters(self.stage) if p.requires_grad]
        return torch.optim.Adam(params, lr=self.lr, betas=(0.9, 0.999), weight_decay=self.weight_decay)

    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()
        if self.ema > 0 and self.average is None:
            self.average = WeightAverage(self.model, self.ema)
            if self._saved_average is not None:
                self.average.load_state_dict(self._saved_average)
                self._saved_average = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.average is not None:
            checkpoint["glgeo_weight_average"] = self.average.state_dict()
        # saved as an epoch ends (glgeo's callback runs before this module's on_train_epoch_end):
        # that epoch's loss too; not a mid-epoch save (Lightning's on a cluster's requeue signal)
        if self._at_epoch_end():
            self._close_epoch()
        checkpoint["glgeo_loss_history"] = list(self.loss_history)
        checkpoint["glgeo_train_seconds"] = self.train_seconds()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.loss_history = list(checkpoint.get("glgeo_loss_history", []))
        self._seconds_before = float(checkpoint.get("glgeo_train_seconds", 0.0))
        self._saved_average = checkpoint.get("glgeo_weight_average")
        if self.ema > 0 and self._saved_average is None:
            raise InputError("the run being resumed kept no weight average: resume it with ema=0, or start a new run")

    def averaged(self) -> contextlib.AbstractContextManager:
        """A block in which the network holds the averaged weights (with ``ema``; else its own)."""
        return self.average.applied(self.model) if self.average is not None else contextlib.nullcontext()

    def _progress(self, batch_idx: int) -> float:
        trainer = self.trainer
        per_epoch = max(1, int(trainer.num_training_batches))
        total = per_epoch * max(1, int(trainer.max_epochs or 1))
        return (trainer.current_epoch * per_epoch + batch_idx) / total

    # --------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        opt = self.optimizers()
        lr = poly_lr(self.lr, self._progress(batch_idx), self.poly_power)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        images = scale_input(batch["image"], self.input_range)
        self._jitter = None
        if self.color_jitter > 0:
            factors = jitter_factors(images.shape[0], self.color_jitter, images.device)
            mean = _grey(images * factors[:, 0].view(-1, 1, 1, 1)).mean(dim=(1, 2, 3))
            self._jitter = (factors, mean)
            images = color_jitter(images, factors, mean)
        self._blur = None
        if self.blur_jitter > 0:
            self._blur = self.blur_jitter * torch.rand(images.shape[0], device=images.device)
            images = blur(images, self._blur * self._global_pixels(batch, images))
        if self.stage == 1:
            loss, parts = self._stage1(images, batch["label"], opt)
        elif self.stage == 2:
            loss, parts = self._stage2(images, batch, opt)
        else:
            loss, parts = self._stage3(images, batch, opt)
        opt.step()
        if self.average is not None:
            self.average.update(self.model)
        n = images.shape[0]
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=n, sync_dist=True)
        for name, value in parts.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        self.log("lr", lr, on_step=True, on_epoch=False, batch_size=n)
        self._epoch_losses.append((float(loss), n))
        return loss

    def _backward(self, opt: Any, loss: torch.Tensor, last: bool, retain_graph: bool = False) -> None:
        # Gradients of a batch add up over its sub-batches; with DDP only the last backward
        # of the step synchronises them across processes.
        with opt.toggle_model(sync_grad=last):
            self.manual_backward(loss, retain_graph=retain_graph)

    def _stage1(self, images: torch.Tensor, labels: torch.Tensor, opt: Any) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.model.encode_global(images).logits
        loss = self.objective.term("global", logits, labels)
        parts = {"global": float(loss.detach())}
        if self.cut_consistency > 0:
            # the same views cut at random, trained on alike, and asked for the same classes
            # on the ground they share
            cut_images, cut_labels, boxes, sources = random_cuts(images, labels, self.max_cut, self.mosaic_cuts)
            cut_logits = self.model.encode_global(cut_images).logits
            cut_loss = self.objective.term("global", cut_logits, cut_labels)
            agreement = cut_consistency(logits, cut_logits, boxes, valid=cut_labels != NODATA_ID, sources=sources)
            loss = (loss + cut_loss) / 2 + self.cut_consistency * agreement
            parts.update(cut=float(cut_loss.detach()), consistency=float(agreement.detach()))
        self._backward(opt, loss, last=True)
        return loss.detach(), parts

    def _scene_chunks(self, batch: dict[str, Any]) -> list[tuple[int, int, int]]:
        """(scene, start, stop) of every sub-batch of the batch's patches."""
        return [
            (b, j, min(j + self.sub_batch, len(patches)))
            for b, patches in enumerate(batch["patches"])
            for j in range(0, len(patches), self.sub_batch)
        ]

    def _chunk(self, batch: dict[str, Any], b: int, j: int, k: int) -> tuple[torch.Tensor, torch.Tensor, PatchBoxes]:
        boxes = batch["boxes"][b][j:k]
        h, w = batch["scene_size"][b].tolist()
        pboxes = PatchBoxes.from_pixels(boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3], h, w, scene_index=b)
        patches = scale_input(batch["patches"][b][j:k], self.input_range)
        if self._jitter is not None and self.training:
            factors, mean = self._jitter
            n = patches.shape[0]
            patches = color_jitter(patches, factors[b : b + 1].expand(n, 3), mean[b : b + 1].expand(n))
        if self._blur is not None and self.training:
            patches = blur(patches, self._blur[b : b + 1].expand(patches.shape[0]))
        return patches, batch["patch_labels"][b][j:k], pboxes

    @staticmethod
    def _global_pixels(batch: dict[str, Any], images: torch.Tensor) -> torch.Tensor:
        """Per scene, a pixel of the working grid in global-image pixels (the global image
        shows the whole scene, ``scene_size``, in its side)."""
        sizes = batch["scene_size"]  # a tensor (N, 2), or one per scene (the patch collate's lists)
        sizes = torch.stack(list(sizes)) if isinstance(sizes, (list, tuple)) else sizes
        longer = sizes.to(images.device).max(dim=1).values.to(torch.float32)
        return images.shape[-1] / longer

    def _stage2(self, images: torch.Tensor, batch: dict[str, Any], opt: Any) -> tuple[torch.Tensor, dict[str, float]]:
        with torch.no_grad():
            context = self.model.encode_global(images)
        chunks = self._scene_chunks(batch)
        total, sums = torch.zeros((), device=images.device), {"local": 0.0, "aggregated": 0.0, "fmreg": 0.0}
        for i, (b, j, k) in enumerate(chunks):
            patches, labels, boxes = self._chunk(batch, b, j, k)
            local = self.model.encode_local(patches, boxes, context)
            aggregated = self.model.aggregate(local.ps3, context.ps3, boxes)
            parts = {
                "local": self.objective.term("local", local.logits, labels),
                "aggregated": self.objective.term("aggregated", aggregated, labels),
                "fmreg": self.objective.term("fmreg", feature_map_regularisation(local.ps3, context.ps3, boxes)),
            }
            loss = sum(parts.values())
            self._backward(opt, loss, last=i == len(chunks) - 1)
            total += loss.detach()
            for name, value in parts.items():
                sums[name] += float(value.detach()) / len(chunks)
        return total / len(chunks), sums

    def _stage3(self, images: torch.Tensor, batch: dict[str, Any], opt: Any) -> tuple[torch.Tensor, dict[str, float]]:
        chunks = self._scene_chunks(batch)
        cached: list[torch.Tensor] | None = []
        with torch.no_grad():
            context = self.model.encode_global(images)
            canvas = L2GCanvas.like(context)
            budget = LOCAL_CACHE_BYTES
            for b, j, k in chunks:
                patches, _, boxes = self._chunk(batch, b, j, k)
                local = self.model.encode_local(patches, boxes, context)
                canvas.add(local, boxes)
                if cached is not None:
                    budget -= local.ps3.numel() * local.ps3.element_size()
                    cached = cached + [local.ps3] if budget >= 0 else None
        refined = self.model.encode_global_l2g(images, canvas)
        global_loss = self.objective.term("global", refined.logits, batch["label"])
        total_agg = 0.0
        for i, (b, j, k) in enumerate(chunks):
            patches, labels, boxes = self._chunk(batch, b, j, k)
            if cached is not None:
                local_ps3 = cached[i]
            else:
                with torch.no_grad():
                    local_ps3 = self.model.encode_local(patches, boxes, context).ps3
            agg_loss = self.objective.term("aggregated", self.model.aggregate(local_ps3, refined.ps3, boxes), labels)
            last = i == len(chunks) - 1
            # The global loss joins the last backward, so that one reaches every trained
            # parameter (DDP reduces there).
            loss = agg_loss + global_loss if last else agg_loss
            self._backward(opt, loss, last=last, retain_graph=not last)
            total_agg += float(agg_loss.detach()) / len(chunks)
        global_value = float(global_loss.detach())
        return torch.tensor(global_value + total_agg, device=images.device), {"global": global_value, "aggregated": total_agg}

    # ------------------------------------------------------------- validation
    def on_train_epoch_end(self) -> None:
        self._close_epoch()

    def _at_epoch_end(self) -> bool:
        """Whether the epoch's last training batch has run (Lightning's epoch loop says)."""
        try:
            return bool(self.trainer.fit_loop.epoch_loop.batch_progress.is_last_batch)
        except (AttributeError, RuntimeError):  # no trainer, or a Lightning without it: as at an epoch's end
            return True

    def _close_epoch(self) -> None:
        """The finished epoch's mean loss into ``loss_history`` (once)."""
        if self._epoch_losses:  # weighted by batch size, as Lightning's train/loss_epoch
            losses, sizes = zip(*self._epoch_losses)
            self.loss_history.append(float(np.average(losses, weights=sizes)))
            self._epoch_losses = []

    def train_seconds(self) -> float:
        """Seconds the stage has trained, a resumed run's earlier processes included."""
        running = 0.0 if self._fit_started is None else time.perf_counter() - self._fit_started
        return self._seconds_before + running

    def on_validation_epoch_start(self) -> None:
        self._averaged.enter_context(self.averaged())
        n = self.scheme.n_classes
        self.val_confusion = torch.zeros((n, n + 1), dtype=torch.long, device=self.device)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        images = scale_input(batch["image"], self.input_range)
        n = self.scheme.n_classes
        if self.stage == 1:
            pred = self.model.encode_global(images).logits.argmax(1)
            self.val_confusion += confusion_tensor(batch["label"], pred, n)
            return
        context = self.model.encode_global(images)
        chunks = self._scene_chunks(batch)
        global_ps3 = context.ps3
        if self.stage == 3:
            canvas = L2GCanvas.like(context)
            for b, j, k in chunks:
                patches, _, boxes = self._chunk(batch, b, j, k)
                canvas.add(self.model.encode_local(patches, boxes, context), boxes)
            global_ps3 = self.model.encode_global_l2g(images, canvas).ps3
        for b in range(images.shape[0]):
            logits = []
            for bb, j, k in chunks:
                if bb != b:
                    continue
                patches, _, boxes = self._chunk(batch, b, j, k)
                local = self.model.encode_local(patches, boxes, context)
                logits.append(self.model.aggregate(local.ps3, global_ps3, boxes).float())
            truth = batch["scene_label"][b]
            merged = merge_patch_logits(torch.cat(logits), batch["boxes"][b], batch["scene_size"][b], truth.shape)
            self.val_confusion += confusion_tensor(truth, merged.argmax(0), n)

    def on_validation_epoch_end(self) -> None:
        self._averaged.close()  # the network's own weights back for training
        # float64: exact for counts far beyond float32's 2**24, and reducible on gloo and NCCL
        confusion = self.trainer.strategy.reduce(self.val_confusion.double(), reduce_op="sum").round().long()
        scores = SegmentationScores(confusion.cpu().numpy(), self.scheme)
        miou = scores.miou if not math.isnan(scores.miou) else 0.0
        # The confusion is already summed over processes: every rank logs the same value.
        self.log("val/miou", miou, prog_bar=True, sync_dist=True)
        accuracy = scores.pixel_accuracy if not math.isnan(scores.pixel_accuracy) else 0.0
        self.log("val/pixel_accuracy", accuracy, sync_dist=True)
        self.last_val_scores = scores


class SceneDataModule(pl.LightningDataModule):
    """Training and validation loaders over a dataset's split.

    Args:
        collection: the dataset's scenes.
        split: which scenes train and validate.
        settings: sizes, batch, workers.
        stage: the training stage (stages 2 and 3 read the patches).
        train_shares: the training scenes' class shares (:func:`~glgeo.datasets.class_shares`,
            in ``split.train`` order), if the run already has them; read here otherwise.
    """

    def __init__(
        self, collection: SceneCollection, split: Split, settings: DataSettings, stage: int,
        train_shares: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.collection = collection
        self.split = split
        self.settings = settings
        self.stage = stage
        self.train_shares = train_shares

    def _spec(self, train: bool) -> SampleSpec:
        s = self.settings
        return SampleSpec(
            global_size=s.global_size,
            patch_size=s.patch_size,
            with_patches=self.stage >= 2,
            with_scene_label=not train and self.stage >= 2,
            augment=train and s.augment,
            bands=s.bands,
            scale=s.scale,
            crop_jitter=s.crop_jitter if train else 0.0,
            mosaic=s.mosaic if train else 0.0,
        )

    def _sampler(self, names: Sequence[str]) -> torch.utils.data.Sampler | None:
        if self.settings.balance <= 0:
            return None
        shares = self.train_shares
        if shares is None or list(names) != list(self.split.train):
            shares = class_shares(self.collection.subset(names))
        weights = balanced_weights(shares, self.settings.balance)
        return torch.utils.data.WeightedRandomSampler(torch.from_numpy(weights), num_samples=len(names), replacement=True)

    def _loader(self, names: Sequence[str], train: bool) -> torch.utils.data.DataLoader:
        s = self.settings
        sampler = None
        if self.collection.kind == "geo":
            # scenes drawn by torchgeo's samplers (random for training, a grid for validation)
            dataset, sampler = self.collection.loader_parts(train, self._spec(train))
        else:
            dataset = GLNetSceneDataset(self.collection.subset(names), self._spec(train))
        if train and self.collection.kind != "geo":
            sampler = self._sampler(names)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=s.batch_size if train else 1,
            shuffle=train and sampler is None,
            sampler=sampler,
            num_workers=s.workers,
            collate_fn=collate_scenes,
            drop_last=False,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader(self.split.train, train=True)

    def val_dataloader(self) -> torch.utils.data.DataLoader:
        return self._loader(self.split.val, train=False)


class GlgeoCheckpoints(Callback):
    """Writes glgeo checkpoints: ``last.pt`` every epoch, ``best.pt`` on a better val mIoU.

    Args:
        folder: the stage folder.
        save: writes one checkpoint file given a path and metadata.
        has_val: whether validation runs (without it, ``best.pt`` follows ``last.pt``).
    """

    def __init__(self, folder: Path, save: Any, has_val: bool) -> None:
        self.folder = folder
        self.save = save
        self.has_val = has_val
        self.best_miou: float | None = None
        #: The Ctrl-C (or SIGTERM) Lightning caught, if any: it exits instead of raising it.
        self.interruption: KeyboardInterrupt | None = None

    def on_exception(self, trainer: Any, pl_module: GLNetTask, exception: BaseException) -> None:
        if isinstance(exception, KeyboardInterrupt):
            self.interruption = exception

    def state_dict(self) -> dict[str, Any]:
        return {"best_miou": self.best_miou}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_miou = state_dict.get("best_miou")

    def on_validation_end(self, trainer: Any, pl_module: GLNetTask) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        scores = getattr(pl_module, "last_val_scores", None)
        if scores is None:
            return
        miou = scores.miou if not math.isnan(scores.miou) else -math.inf
        if self.best_miou is None or miou > self.best_miou:
            self.best_miou = miou
            self.save(self.folder / "best.pt", pl_module, {"epoch": trainer.current_epoch, "val": scores.to_dict()})
            log.info("stage %d epoch %d: val mIoU %.4f (best so far)", pl_module.stage, trainer.current_epoch, miou)

    def on_train_epoch_end(self, trainer: Any, pl_module: GLNetTask) -> None:
        # Lightning's state after every finished epoch, for resume (its ModelCheckpoint's
        # last.ckpt follows only its top-k saves: an interrupted run went back to the best
        # epoch, or to nothing without validation). Every process takes part; the first writes.
        lightning = self.folder / "lightning"
        if trainer.is_global_zero:
            lightning.mkdir(parents=True, exist_ok=True)
        part = lightning / ".last.ckpt.part"
        trainer.save_checkpoint(part)
        if not trainer.is_global_zero:
            return
        os.replace(part, lightning / "last.ckpt")
        extra: dict[str, Any] = {"epoch": trainer.current_epoch}
        scores = getattr(pl_module, "last_val_scores", None)
        if scores is not None:
            extra["val"] = scores.to_dict()
        self.save(self.folder / "last.pt", pl_module, extra)
        if not self.has_val:
            _copy_atomically(self.folder / "last.pt", self.folder / "best.pt")


# --------------------------------------------------------------------------- the run


#: glgeo's precision names (those of ``glgeo segment`` and ``glgeo evaluate``) in Lightning's words.
LIGHTNING_PRECISION = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}


def training_precision(precision: str, accelerator: str) -> str:
    """The precision to train at, in glgeo's names (``fp32``, ``bf16``, ``fp16``).

    ``auto`` is decided by :func:`glgeo.device.resolve_precision` for the device the
    accelerator trains on (bf16 mixed precision on CUDA GPUs that support it, else fp16;
    bf16 on CPUs with native bf16, fp32 on other CPUs); Lightning runs it as
    :data:`LIGHTNING_PRECISION` says.

    Raises:
        InputError: an unknown precision, or fp16 off CUDA.
    """
    cuda = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return resolve_precision(precision, torch.device("cuda" if cuda else "cpu"))  # type: ignore[arg-type]


def _strategy(name: str) -> Any:
    if name in ("ddp", "ddp_spawn"):
        from lightning.pytorch.strategies import DDPStrategy

        # Frozen branches are not part of DDP (only trainable parameters are registered),
        # and every trainable parameter takes part in each step's synchronised backward.
        return DDPStrategy(find_unused_parameters=False, start_method="spawn" if name == "ddp_spawn" else "popen")
    return name


def _lightning_logs_through_root() -> None:
    """Lightning's console lines once, at the application's level.

    Lightning gives its ``lightning`` logger a console handler of its own (at INFO) that
    also propagates to the root's: where the application has configured logging (the CLI),
    each line printed twice, and ``-q`` did not silence them. With root handlers there, its
    console handlers are removed and its level follows the root's.
    """
    root = logging.getLogger()
    if not root.handlers:
        return
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        lightning_log = logging.getLogger(name)
        for handler in list(lightning_log.handlers):
            if type(handler) is logging.StreamHandler:
                lightning_log.removeHandler(handler)
        lightning_log.propagate = True
        lightning_log.setLevel(root.level)


def _loggers(folder: Path) -> list[Any]:
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    # Lightning's CSV writer replaces an existing file: a resumed stage logs beside it.
    version, k = "csv", 1
    while (folder / "logs" / version / "metrics.csv").exists():
        version, k = f"csv-{k}", k + 1
    loggers: list[Any] = [CSVLogger(folder, name="logs", version=version)]
    try:
        loggers.append(TensorBoardLogger(folder, name="logs", version="tensorboard", default_hp_metric=False))
    except ModuleNotFoundError:  # optional: the CSV is the run's record (said with -v, not warned every run)
        log.info("logging to %s; for TensorBoard logs too: pip install tensorboard", folder / "logs" / version)
    return loggers


def _check_classes(model: GLNet, scheme: ClassScheme, source: str) -> None:
    if model.config.n_classes != scheme.n_classes:
        raise CheckpointError(
            f"{source} predicts {model.config.n_classes} classes but the dataset's scheme {scheme.name!r} has "
            f"{scheme.n_classes}; start from a checkpoint trained with this scheme, or from scratch (stage 1)"
        )


def _initial_model(
    stage: int, settings: TrainSettings, scheme: ClassScheme, first: bool
) -> tuple[GLNet, dict[str, str | None]]:
    """The model a stage starts from, and where its weights came from: ``{"init": checkpoint}``
    or ``{"init": None, "backbone_weights": source or None}`` (None: random)."""
    init = settings.init if first else None
    if init is None and stage > 1:
        init = str(settings.out / f"stage{stage - 1}" / "best.pt")
        if not Path(init).is_file():
            raise CheckpointError(
                f"stage {stage} starts from stage {stage - 1}'s checkpoint, but {init} does not exist; "
                f"train stage {stage - 1} first or pass init=CHECKPOINT"
            )
    if init is None:
        model = build_model(
            settings.backbone, scheme.n_classes, settings.mode, settings.pyramid_channels, settings.segmentation_channels
        )
        if settings.backbone_weights is not None:
            _load_backbone_weights(model, settings.backbone_weights)
        bw = settings.backbone_weights
        return model, {"init": None, "backbone_weights": None if bw is None else str(bw)}
    ck = load_checkpoint(init)
    _check_classes(ck.model, scheme, f"checkpoint {init}")
    if first and list(ck.scheme.names) != list(scheme.names):
        log.warning(
            "checkpoint %s predicts %s (scheme %r), the dataset's scheme %r has %s: each of its classes continues as"
            " the dataset's class of the same id (%s); to keep only its features, start from its backbones with"
            " backbone_weights=%s instead of init=%s", init, ", ".join(ck.scheme.names), ck.scheme.name, scheme.name,
            ", ".join(scheme.names), ", ".join(f"{a} -> {b}" for a, b in zip(ck.scheme.names, scheme.names) if a != b),
            init, init,
        )
    model = ck.model
    if model.config.mode != settings.mode:
        model = model.with_mode(settings.mode)
    if stage == 3:
        model.start_stage3()
    model.train()
    return model, {"init": str(init), "backbone_weights": None}


class _StderrProgressBar(TQDMProgressBar):
    """Lightning's progress bar drawn on stderr, as glgeo's other bars are: its own goes to
    stdout, where a run's summary lines (and a redirect of them to a file) are."""

    def init_sanity_tqdm(self):
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_sanity_tqdm()

    def init_train_tqdm(self):
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_train_tqdm()

    def init_validation_tqdm(self):
        with contextlib.redirect_stdout(sys.stderr):
            return super().init_validation_tqdm()


def _warn_if_init_differs(init: str | Path, data: DataSettings, model_gsd: float | None) -> None:
    """Warn when a model fine-tuned from ``init`` sees images unlike those it learned from:
    other global or patch sizes, or a ground resolution more than a quarter apart."""
    ck = load_checkpoint(init)
    sizes = [f"{name} {theirs} px, here {ours}" for name, theirs, ours in
             (("global images of", ck.global_size, data.global_size), ("patches of", ck.patch_size, data.patch_size))
             if theirs != ours]
    if sizes:
        log.warning("%s learned from %s: fine-tuned on other sizes it starts from features of other scales "
                    "(global_size=%d, patch_size=%d keep its own)", init, "; ".join(sizes), ck.global_size, ck.patch_size)
    if ck.gsd is not None and model_gsd is not None and max(ck.gsd, model_gsd) / min(ck.gsd, model_gsd) > 1.25:
        log.warning("%s learned from imagery of %.3g m per pixel; here it is trained at %.3g m: it starts from "
                    "features of other sizes on the ground (scale= sets the resolution training reads at)",
                    init, ck.gsd, model_gsd)


def _load_backbone_weights(model: GLNet, weights: str | Path) -> None:
    """A fresh model's backbones from a torchvision ImageNet file or a glgeo checkpoint."""
    path = Path(weights)
    if path.is_file():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # torch raises many types for a bad file
            raise CheckpointError(f"cannot read backbone weights {str(path)!r}: {exc}") from None
        torchvision = not (isinstance(payload, dict) and payload.get("format") == CHECKPOINT_FORMAT)
        del payload
        if torchvision:
            for branch in (model.global_branch, model.local_branch, model.global_l2g):
                if branch is not None:
                    branch.backbone.load_pretrained(path)
            return
    transfer_backbones(model, load_checkpoint(weights).model, str(weights))


def transfer_backbones(model: GLNet, source: GLNet, name: str = "the source checkpoint") -> None:
    """Copy ``source``'s backbones into ``model``'s, branch by branch (global -> global,
    local -> local, L->G global -> L->G global, or the global one where ``source`` has
    none); the heads stay as they are. Transfer learning from another glgeo model: a model
    of another class scheme, or of imagery close to the new task's.

    Raises:
        CheckpointError: the backbones differ, or ``source`` lacks a branch ``model`` has.
    """
    if source.config.backbone != model.config.backbone:
        raise CheckpointError(
            f"{name} has {source.config.backbone} backbones and this run builds {model.config.backbone}; "
            f"build a {source.config.backbone} model, or start from weights of a {model.config.backbone} one"
        )
    pairs = [
        (model.global_branch, source.global_branch),
        (model.local_branch, source.local_branch),
        (model.global_l2g, source.global_l2g if source.global_l2g is not None else source.global_branch),
    ]
    for target, origin in pairs:
        if target is None:
            continue
        if origin is None:
            raise CheckpointError(f"{name} is a global-only model with no local backbone to give; start from a g2l or bidirectional one")
        target.backbone.load_state_dict(origin.backbone.state_dict())


def _check_run_folder(out: Path, stages: Sequence[int], resume: bool) -> list[Path]:
    """Create the run folder, or refuse one that is a file, cannot be written, already
    holds one of these stages (without ``resume``) or does not exist (with ``resume``).

    Returns:
        The folders it made, ``out`` first, then each parent it made.
    """
    if out.exists() and not out.is_dir():
        raise OutputError(f"the run folder {str(out)!r} is a file, not a folder; choose another out folder")
    if resume and not out.exists():  # a mistyped run folder would silently start the whole run again
        raise OutputError(
            f"resume=True found no run to resume: the run folder {str(out)!r} does not exist; check the out folder's"
            " name, or drop resume=True to start a new run there"
        )
    # Made top-down, each folder recorded only when this run's mkdir made it: a path through
    # a folder that does not exist yet ('new/../existing/run') names folders that do.
    created: list[Path] = []
    for folder in [*reversed(out.parents), out]:
        try:
            folder.mkdir()
        except FileExistsError:
            continue
        except OSError as exc:
            _remove_empty(created[::-1])
            raise OutputError(
                f"cannot create the run folder {str(out)!r} ({exc.strerror or exc}); choose another out folder"
            ) from None
        created.append(folder)
    created.reverse()  # children first
    if not out.is_dir():
        raise OutputError(f"cannot create the run folder {str(out)!r}; choose another out folder")
    if not os.access(out, os.W_OK | os.X_OK):  # also says no for root on a read-only file system
        raise unwritable_folder_error(out)
    for stage in stages:
        folder = out / f"stage{stage}"
        if folder.exists() and any(folder.iterdir()) and not resume:
            raise OutputError(f"{folder} already holds a training stage; pass resume=True to continue it, or choose another out folder")
    return created


def _remove_empty(folders: Sequence[Path]) -> bool:
    """Remove these folders, each in turn (children first), while they are empty; returns
    whether all went (one that holds something is left as it is, and so are its parents)."""
    for folder in folders:
        try:
            folder.rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            return False
    return True


def _remove_run_folder_if_nothing_saved(out: Path, created: Sequence[Path]) -> bool:
    """Remove the run folder a failed or interrupted run made (``created``: the folders it
    made, children first) when it saved no epoch there: the same command then starts
    afresh, and no half-made run is left behind. A folder that was there before is kept,
    and so is anything this run did not write; returns whether the run folder went."""
    if not created:
        return False
    for stage in (1, 2, 3):
        _remove_if_nothing_saved(out / f"stage{stage}")
    if any((out / name).exists() for name in ("stage1", "stage2", "stage3", "model.pt")):
        return False
    (out / "split.json").unlink(missing_ok=True)
    return _remove_empty(created)


def _write_json(path: Path, content: Any) -> None:
    """Write a JSON file atomically (an interrupted run leaves the previous one or none)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(content, indent=1))


def _copy_atomically(source: Path, target: Path) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def _stage_done(folder: Path) -> bool:
    return (folder / "done.json").is_file()


def prepare_data(data: DataSettings) -> tuple[Any, Any]:
    """Find the dataset, check every pair and make the split.

    For kind ``geo``: the imagery and labels intersected in torchgeo
    (:class:`glgeo.geodata.GeoScenes`) and their split by area
    (:class:`glgeo.geodata.GeoSplit`).

    Raises:
        DatasetError: layout, mask or pair problems; imagery and labels that do not fit.
        InputError: no training scenes.
    """
    if data.kind == "geo":
        from .geodata import GeoScenes

        scenes = GeoScenes(data.geo, bands=data.bands, scale=data.scale)
        return scenes, scenes.split
    collection = open_dataset(data.kind, data.root, data.scheme)
    split = make_split(
        data.kind, collection.names, split_file=data.split_file, val_cities=data.val_cities, seed=data.split_seed,
        holdout_share=data.holdout_share, holdout_scenes=data.holdout_scenes,
    )
    if not split.train:
        raise InputError("the split leaves no scene to train on; check split_file / val_cities")
    used = collection.subset([*split.train, *split.val])
    used.check()
    used.check_bands(data.bands)
    return collection, split


def train(data: DataSettings, settings: TrainSettings) -> TrainResult:
    """Train GLNet in the paper's stages; see the module doc for the run folder.

    Raises:
        OutputError: the run folder already holds this stage and ``resume`` is off, or
            does not exist and ``resume`` is on.
        DatasetError, CheckpointError, InputError: bad data, checkpoints or settings.
    """
    stages = settings.stages
    out = settings.out
    # DDP re-runs the command in its worker processes: only the first one checks and writes.
    main_process = rank_zero_only.rank == 0
    _check_accelerator(settings)
    precision = training_precision(settings.precision, settings.accelerator)
    _check_weight_sources(settings)
    created: list[Path] = []
    if main_process:  # before the dataset is read: an out folder that cannot be is said at once
        created = _check_run_folder(out, stages, settings.resume)
    try:
        return _train_in(out, stages, precision, data, settings)
    except BaseException as exc:
        # a run that saved no epoch leaves no run folder it made behind (bad labels, a
        # failure in the first epoch, Ctrl-C before an epoch was saved)
        if main_process and _remove_run_folder_if_nothing_saved(out, created):
            if isinstance(exc, Interruption):
                raise Interruption(
                    f"Interrupted before any epoch was saved; the run folder {out} it had made was removed. Run the"
                    " same command to start again.", exc.cause,
                ) from None
        raise


def _train_in(out: Path, stages: Sequence[int], precision: str, data: DataSettings, settings: TrainSettings) -> TrainResult:
    """:func:`train` once its run folder is checked (and made)."""
    main_process = rank_zero_only.rank == 0
    collection, split = prepare_data(data)
    if main_process:
        recorded = out / "split.json"
        # a stage already trained in this folder (resumed, or a later stage run into it)
        trained = any((out / f"stage{n}").is_dir() and any((out / f"stage{n}").iterdir()) for n in (1, 2, 3))
        if (settings.resume or trained) and recorded.is_file():
            before = json.loads(recorded.read_text())
            if before != json.loads(json.dumps(split.to_dict())):
                doing = "resuming" if settings.resume else f"stage {settings.stage}"
                raise InputError(
                    f"the run in {out} was started with another split ({recorded}): {doing} with this one would"
                    " train on scenes it held out; use the same split settings (split_file, the split's seed and"
                    " shares), or another out folder (init from this run's best.pt)"
                )
        _write_json(recorded, split.to_dict())
        if settings.resume:
            _check_resumed_settings(out, stages, data, settings)
    log.info("dataset %s: %d train / %d val scenes", data.kind, len(split.train), len(split.val))
    if data.kind != "geo" and 1 < data.batch_size and len(split.train) <= data.batch_size:
        log.warning(
            "%d training scene(s) at a batch size of %d: one optimizer step per epoch; a smaller "
            "batch size (--batch-size) takes more steps in the same time (docs/train.md)",
            len(split.train), data.batch_size,
        )
    # the training scenes' class shares (masks read once per run), for class-balanced
    # sampling and the class-weighted loss
    needed = data.kind != "geo" and (data.balance > 0 or settings.loss_balance > 0)
    shares = class_shares(collection.subset(split.train)) if needed else None
    if shares is not None and main_process:
        _warn_absent_classes(shares, collection.scheme)
    results: list[StageResult] = []
    for position, stage in enumerate(stages):
        folder = out / f"stage{stage}"
        if settings.resume and _stage_done(folder):
            info = json.loads((folder / "done.json").read_text())
            # the files of this stage folder, wherever the run was started or moved since
            best, last = (folder / Path(info[key]).name for key in ("best", "last"))
            results.append(StageResult(**{**info, "best": best, "last": last}))
            if info.get("epochs") is not None and settings.epochs[stage - 1] > info["epochs"]:
                log.warning(
                    "stage %d of the run in %s already finished its %d epochs: skipped, so epochs=%d does not apply to "
                    "it; to train it further, start a new run from it (init=%s)",
                    stage, out, info["epochs"], settings.epochs[stage - 1], best,
                )
            else:
                log.info("stage %d already finished: skipped", stage)
            continue
        try:
            results.append(_run_stage(stage, position == 0, collection, split, data, settings, precision, shares))
        except KeyboardInterrupt as exc:
            if main_process:  # nothing of the stage saved: no folder that a plain rerun would be refused for
                _remove_if_nothing_saved(folder)
            raise Interruption(_interrupted(out, stage, results, settings.resume), exc) from None
        except Exception:
            if main_process:
                _remove_if_nothing_saved(folder)
            raise
    model_path = out / "model.pt"
    if main_process:
        _copy_atomically(results[-1].best, model_path)
    return TrainResult(out=out, model=model_path, split=split, stages=tuple(results))


def _check_resumed_settings(out: Path, stages: Sequence[int], data: DataSettings, settings: TrainSettings) -> None:
    """Refuse a resume whose architecture or reading scale differs from what the stage being
    resumed was trained with (its ``last.pt``): the weights would not fit (a traceback), or
    the later epochs would read scenes at another resolution than the recorded one.

    Raises:
        InputError: the first unfinished stage's ``last.pt`` records other settings.
    """
    for stage in stages:
        folder = out / f"stage{stage}"
        if _stage_done(folder):
            continue
        last = folder / "last.pt"
        if not last.is_file():
            return
        ck = load_checkpoint(last)
        config, training = ck.model.config, ck.metadata.get("training") or {}
        was: dict[str, Any] = {"scale": training.get("scene_scale", 1.0)}
        now: dict[str, Any] = {"scale": data.scale}
        before, labels = training.get("labels"), _labels_identity(data)
        if before and labels:  # runs before 7 December 2026 recorded none
            was["labels"], now["labels"] = before["path"], labels["path"]
            if before["path"] == labels["path"] and before != labels:
                log.warning("the labels %s changed since stage %d of the run in %s began (their size or time stamp): "
                            "its epochs before and after learnt and were validated on different labels",
                            labels["path"], stage, out)
        if stage == 1 and settings.init is None:  # built from the settings (else from a checkpoint)
            was |= {"backbone": config.backbone, "pyramid_channels": config.pyramid_channels,
                    "segmentation_channels": config.segmentation_channels}
            now |= {"backbone": settings.backbone, "pyramid_channels": settings.pyramid_channels,
                    "segmentation_channels": settings.segmentation_channels}
        changed = [f"{k}={now[k]} (the run's: {was[k]})" for k in was if was[k] != now[k]]
        if changed:
            raise InputError(
                f"stage {stage} of the run in {out} was trained with other settings: {', '.join(changed)}; resume"
                " with the run's own settings, or start a new out folder"
            )
        return


def _labels_identity(data: DataSettings) -> dict[str, Any] | None:
    """The labels file of imagery-and-labels training (path, size, time stamp, field), or
    ``None`` for a dataset (whose masks its split names)."""
    if data.geo is None:
        return None
    from .provenance import scene_stamp

    return {**json.loads(scene_stamp(data.geo.labels)), "field": data.geo.label_field}


def _warn_absent_classes(shares: np.ndarray, scheme: ClassScheme) -> None:
    """Say which scored classes no training scene holds (``shares``: one row per scene, as
    read for balancing): the model never learns them, and their loss weight is 1."""
    absent = [scheme.names[i] for i in scheme.scored_ids if not shares[:, i].any()]
    if absent:
        log.warning(
            "no training scene shows %s in its mask (read at 64 x 64 px for balancing): the model cannot learn %s;"
            " add scenes that hold %s, or expect %s never to be predicted", ", ".join(absent),
            *(["it"] * 3 if len(absent) == 1 else ["them"] * 3),
        )


def _check_accelerator(settings: TrainSettings) -> None:
    """Refuse, before anything is read or written, an accelerator that is not here, GPU
    ids for the CPU, or more GPUs than there are (Lightning raised its own exceptions
    after the stage folder was made); warn of more CPU processes than cores.

    Raises:
        InputError: ``accelerator`` gpu or cuda without a usable CUDA GPU; ``devices`` a list
            of ids with the CPU, GPU ids or a GPU count that this machine does not have,
            no process on the CPU, or neither a count nor ids.
    """
    accelerator = str(settings.accelerator).lower()
    gpu_here = torch.cuda.is_available()
    if accelerator in ("gpu", "cuda") and not gpu_here:
        raise InputError(f"accelerator={accelerator!r} asked for but no CUDA GPU is usable here; use accelerator='cpu'")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not gpu_here)
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and gpu_here)
    devices = settings.devices
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    elif isinstance(devices, str) and "," in devices:
        try:
            devices = [int(v) for v in devices.split(",") if v.strip()]
        except ValueError:
            pass  # said below
    ids = isinstance(devices, (list, tuple))
    if isinstance(devices, str) and devices != "auto":
        raise InputError(f"devices={devices!r} is not a count or GPU ids: give devices=auto, a count (2) or ids (0,1)")
    if on_cpu and ids:
        text = ",".join(map(str, devices))
        raise InputError(f"devices={text} names GPU ids, but the run is on the CPU: give a count of processes"
                         " (devices=1) or leave it auto")
    if on_cpu and isinstance(devices, int):
        where = f"accelerator={accelerator!r}" if accelerator == "cpu" else "no CUDA GPU is usable here"
        cores = _cpu_cores()
        if devices < 1:
            raise InputError(f"devices={devices}: on the CPU ({where}) give a count of training processes, 1 or more,"
                             " or leave devices=auto")
        if devices > cores:  # it runs (a test of several processes, say), each process with less than a core
            log.warning(
                "devices=%d runs %d training processes on the CPU (%s) with %d CPU core%s: each gets less than a core;"
                " give devices=%d or fewer to train faster", devices, devices, where, cores, "s" if cores != 1 else "", cores,
            )
    if on_gpu and gpu_here:
        count = torch.cuda.device_count()
        here = f"{count} CUDA GPU{'s are' if count != 1 else ' is'} usable here"
        if ids:
            absent = [i for i in devices if not 0 <= i < count]
            if absent:
                raise InputError(
                    f"devices={','.join(map(str, devices))} names GPU {', '.join(map(str, absent))}, but {here}"
                    f" (ids 0 to {count - 1}); give ids among them, a count, or leave devices=auto"
                )
        elif isinstance(devices, int) and (devices == 0 or devices < -1):
            raise InputError(f"devices={devices}: give a count of GPUs, 1 or more (-1: all of them), or leave devices=auto")
        elif isinstance(devices, int) and devices > count:
            raise InputError(
                f"devices={devices} asks for {devices} GPUs, but {here}; give devices={count} or fewer, or leave"
                " devices=auto"
            )


def _cpu_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _check_weight_sources(settings: TrainSettings) -> None:
    """Refuse, before anything is read or made, an ``init`` or ``backbone_weights`` that is
    neither a file nor a zoo model (a file that is not a checkpoint is found when it is read).

    Raises:
        CheckpointError: the option and the zoo models.
    """
    for name in ("init", "backbone_weights"):
        source = getattr(settings, name)
        if source is not None:
            try:
                resolve_checkpoint(source)
            except CheckpointError as exc:
                raise CheckpointError(f"{name}={str(source)!r}: {exc}") from None


def _remove_if_nothing_saved(folder: Path) -> None:
    """A stage that failed before saving any epoch leaves no folder behind: a rerun with the
    mistake mended then starts afresh instead of being told the folder holds a stage."""
    saved = [folder / "best.pt", folder / "last.pt", folder / "lightning" / "last.ckpt", folder / "done.json"]
    if folder.is_dir() and not any(p.exists() for p in saved):
        shutil.rmtree(folder, ignore_errors=True)


def _interrupted(out: Path, stage: int, finished: Sequence[StageResult], resumed: bool = False) -> str:
    """What an interrupted run leaves: the stages finished, the last epoch saved, how to go on."""
    done = "; ".join(f"stage {r.stage} finished ({r.best})" for r in finished) or "no stage finished"
    last = out / f"stage{stage}" / "lightning" / "last.ckpt"
    if not last.parent.parent.exists() and not finished and not resumed:  # its stage folder is gone: nothing to resume
        return (f"Interrupted in stage {stage}: no epoch of it was saved, and no stage finished. Run the same command "
                "to start again.")
    saved = f"its last finished epoch is saved in {last}" if last.is_file() else "no epoch of it was saved"
    return (
        f"Interrupted in stage {stage}: {done}; {saved}. Run the same command with resume=True to go on from there"
        " (model.pt is written when the last stage finishes)."
    )


def _class_weights(
    shares: np.ndarray | None, scheme: ClassScheme, data: DataSettings, settings: TrainSettings
) -> list[float] | None:
    """The loss's class weights (``loss_balance``) from the training scenes' class shares
    (:func:`~glgeo.datasets.class_shares`, one row per scene)."""
    if settings.loss_balance <= 0:
        return None
    if data.kind == "geo" or shares is None:
        raise InputError(
            "a class-weighted loss (loss_balance) needs dataset inputs (kind deepglobe, inria or folder): "
            "with imagery and labels, balance the classes by the areas you label"
        )
    weights = class_loss_weights(shares.sum(axis=0), settings.loss_balance)
    log.info("class weights of the loss: %s", ", ".join(f"{n} {w:.2f}" for n, w in zip(scheme.names, weights)))
    return weights


def _run_stage(
    stage: int,
    first: bool,
    collection: SceneCollection,
    split: Split,
    data: DataSettings,
    settings: TrainSettings,
    precision: str,
    shares: np.ndarray | None = None,
) -> StageResult:
    folder = settings.out / f"stage{stage}"
    folder.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(settings.seed + stage, workers=True, verbose=False)
    scheme = collection.scheme
    class_weights = _class_weights(shares, scheme, data, settings)
    model, started_from = _initial_model(stage, settings, scheme, first)
    task = GLNetTask(
        model,
        stage,
        scheme,
        lr=settings.lr[stage - 1],
        weight_decay=settings.weight_decay,
        poly_power=settings.poly_power,
        focal_gamma=settings.focal_gamma,
        fmreg_weight=settings.fmreg_weight,
        sub_batch=data.sub_batch,
        input_range=data.input_range,
        color_jitter=data.color_jitter,
        blur_jitter=data.blur_jitter,
        class_weights=class_weights,
        lovasz=settings.lovasz,
        cut_consistency=settings.cut_consistency if stage == 1 else 0.0,
        # with --mosaic, that share of the cuts straddle the batch's other views
        mosaic_cuts=data.mosaic,
        ema=settings.ema,
    )
    has_val = bool(split.val)
    # the training scenes' resolution (not the held-out ones')
    training_scenes = collection if data.kind == "geo" else collection.subset(split.train)
    source_gsd = data.gsd if data.gsd is not None else training_scenes.gsd
    model_gsd = None if source_gsd is None else source_gsd / data.scale
    footprint = data.geo.scene_size if data.kind == "geo" else context_footprint(collection, split.train, data.scale)
    # what the global branch's pixels were on the ground (a global-only model needs scenes
    # of that extent; glgeo segment warns otherwise)
    global_gsd = None if model_gsd is None else model_gsd * footprint / data.global_size
    if first and settings.init is not None:
        _warn_if_init_differs(settings.init, data, model_gsd)
    metadata = {
        **settings.metadata,
        "training": {
            "stage": stage,
            "dataset": data.kind,
            "train_scenes": len(split.train),
            "val_scenes": len(split.val),
            "held_out_scenes": len(getattr(split, "test", ())),
            "epochs": settings.epochs[stage - 1],
            "lr": settings.lr[stage - 1],
            "poly_power": settings.poly_power,
            "weight_decay": settings.weight_decay,
            "seed": settings.seed,
            # the weights the stage started from: a checkpoint ("init"), or a fresh model with
            # backbones from "backbone_weights" (both None: random initialisation)
            **started_from,
            "batch_size": data.batch_size,
            # the polygons or label raster trained on (a resume with others is refused)
            "labels": _labels_identity(data),
            "scene_scale": data.scale,
            # the bands fed, in order, where given (glgeo segment feeds scenes the same ones);
            # None: each image's bands labelled red, green and blue, as glgeo segment chooses them
            "bands": list(data.bands) if data.bands is not None else None,
            # the resolution the model saw, which glgeo segment matches scenes to
            "gsd_m": model_gsd,
            "global_gsd_m": global_gsd,
            # the size of the views it learned from, which glgeo segment cuts large scenes to
            "footprint_px": footprint,
            "focal_gamma": settings.focal_gamma,
            "loss_balance": settings.loss_balance,
            # the weight of the Lovász-softmax term beside the focal loss (0: none)
            "lovasz": settings.lovasz,
            # the weight of the feature-map regularisation (stage 2's L2 between the branches)
            "fmreg": settings.fmreg_weight if "fmreg" in STAGE_TERMS[stage] else 0.0,
            "cut_consistency": settings.cut_consistency if stage == 1 else 0.0,
            # the decay of the weights' moving average its checkpoints hold (0: the weights themselves)
            "ema": settings.ema,
            # the loss weight of each class (None: all 1)
            "class_weights": None if class_weights is None else dict(zip(scheme.names, class_weights)),
            "precision": precision,
            "augmentation": {
                "flips_rotations": data.augment,
                "color_jitter": data.color_jitter,
                "crop_jitter": data.crop_jitter,
                "blur_jitter": data.blur_jitter,
                "mosaic": data.mosaic,
                "balance": data.balance,
            },
        },
    }
    # the scenes (for geo: the areas) trained and validated on, so that an evaluation on
    # them says its scores are not a validation
    metadata["training"]["split"] = split.to_dict() if data.kind == "geo" else {
        "kind": data.kind, "root": str(data.root), **split.to_dict()}

    def save(path: Path, module: GLNetTask, extra: dict[str, Any]) -> None:
        was_training = module.model.training
        with module.averaged():  # with --ema, the averaged weights
            save_checkpoint(
                path,
                module.model,
                scheme,
                input_scaling=InputScaling(*data.input_range),
                global_size=data.global_size,
                patch_size=data.patch_size,
                focal_gamma=settings.focal_gamma,
                metadata={**metadata, **extra},
            )
        module.model.train(was_training)

    glgeo_ckpt = GlgeoCheckpoints(folder, save, has_val)
    _lightning_logs_through_root()
    trainer = pl.Trainer(
        accelerator=settings.accelerator,
        devices=settings.devices,
        num_nodes=settings.num_nodes,
        strategy=_strategy(settings.strategy),
        precision=LIGHTNING_PRECISION[precision],
        max_epochs=settings.epochs[stage - 1],
        limit_train_batches=settings.limit_train_batches,
        limit_val_batches=settings.limit_val_batches if has_val else 0,
        num_sanity_val_steps=0,
        callbacks=[glgeo_ckpt, *([_StderrProgressBar()] if settings.progress_bar else [])],
        enable_checkpointing=False,  # glgeo_ckpt writes best.pt, last.pt and Lightning's last.ckpt
        logger=_loggers(folder),
        enable_progress_bar=settings.progress_bar,
        enable_model_summary=False,
        log_every_n_steps=1,
        default_root_dir=folder,
    )
    resume_from = folder / "lightning" / "last.ckpt"
    ckpt_path = str(resume_from) if settings.resume and resume_from.is_file() else None
    if ckpt_path:
        log.info("stage %d: resuming from %s", stage, ckpt_path)
    with warnings.catch_warnings():
        # Frozen branches are in eval mode on purpose (their BatchNorm statistics stay fixed).
        warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
        # Lightning's own use of a torch API torch has deprecated: nothing for a user to do
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        # a resumed stage writes its checkpoints where the interrupted run did, as it should
        if ckpt_path:
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
        try:
            trainer.fit(
                task, datamodule=SceneDataModule(collection, split, data, stage, shares), ckpt_path=ckpt_path
            )
        except SystemExit:
            # Lightning answers Ctrl-C by tearing down and calling sys.exit(1): raise it again
            if glgeo_ckpt.interruption is not None or trainer.interrupted:
                raise glgeo_ckpt.interruption or KeyboardInterrupt() from None
            raise
    result = StageResult(
        stage=stage,
        best=folder / "best.pt",
        last=folder / "last.pt",
        best_miou=glgeo_ckpt.best_miou if glgeo_ckpt.best_miou is not None and math.isfinite(glgeo_ckpt.best_miou) else None,
        epochs=trainer.current_epoch,
        seconds=task.train_seconds(),
        first_loss=task.loss_history[0] if task.loss_history else None,
        last_loss=task.loss_history[-1] if task.loss_history else None,
    )
    if trainer.is_global_zero:
        info = {**asdict(result), "best": str(result.best), "last": str(result.last)}
        _write_json(folder / "done.json", info)
    return result
