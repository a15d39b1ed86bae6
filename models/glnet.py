"""GLNet: collaborative global-local network (Chen et al., CVPR 2019).

A GLNet is made of named parts, each present only in the modes that use it:

===================  =========================================  ======================
part                 what it is                                 modes
===================  =========================================  ======================
``global_branch``    backbone + plain FPN head on the            global, g2l,
                     downsampled scene (training stage 1)        bidirectional
``local_branch``     backbone + FPN head on full-res patches;    local (plain head),
                     shared head (G -> L) except in ``local``    g2l, bidirectional
``global_l2g``       backbone + shared FPN head on the           bidirectional
                     downsampled scene taking merged local
                     features (L -> G, training stage 3)
``aggregation``      3x3 conv over [local ps3 ; cropped global   g2l, bidirectional
                     ps3] -> classes: the model's prediction
===================  =========================================  ======================

The released code kept the global features and per-patch collections in module attributes.
Here that state is explicit: :meth:`GLNet.encode_global` returns the global context,
:meth:`GLNet.encode_local` takes it, an :class:`~glgeo.models.sharing.L2GCanvas` collects
local features, so one model serves training, batched inference and streaming inference
over scenes of any size.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from glgeo.errors import InputError
from glgeo.modes import MODES, Mode

from .backbones import build_backbone, check_backbone_name
from .heads import BranchFeatures, FPNHead, init_head_conv, resize_like
from .sharing import L2GCanvas, PatchBoxes, crop_global, crop_global_features, feature_map_regularisation

Stage = Literal[1, 2, 3]

#: Runtime modes each trained mode can run (a bidirectional model still holds the stage-1
#: global branch, so it can also run G -> L alone, or the global branch alone).
_RUNNABLE: dict[str, tuple[str, ...]] = {
    "global": ("global",),
    "local": ("local",),
    "g2l": ("global", "g2l"),
    "bidirectional": ("global", "g2l", "bidirectional"),
}


@dataclass(frozen=True)
class GLNetConfig:
    """Everything needed to build a GLNet (stored in every glgeo checkpoint).

    Args:
        backbone: registered backbone name (``resnet18``, ``resnet34``, ``resnet50`` ...).
        n_classes: number of output classes.
        mode: which parts the model has (see the module docstring).
        pyramid_channels: FPN width (paper: 256).
        segmentation_channels: width of each ps2 level (paper: 128).
        l2g_normalization: how L -> G canvases are divided by patch coverage:
            ``"footprint"`` counts, on each canvas grid, the footprints actually added
            there (exact: constant local features give a constant canvas);
            ``"released"`` resizes a full-resolution count bilinearly, as the released
            code did (set for imported released checkpoints, to reproduce their outputs).
    """

    backbone: str = "resnet50"
    n_classes: int = 7
    mode: Mode = "g2l"
    pyramid_channels: int = 256
    segmentation_channels: int = 128
    l2g_normalization: Literal["footprint", "released"] = "footprint"

    def __post_init__(self) -> None:
        check_backbone_name(self.backbone)
        if self.mode not in MODES:
            raise InputError(f"unknown GLNet mode {self.mode!r}; choose from: {', '.join(MODES)}")
        if self.n_classes < 2:
            raise InputError(f"n_classes must be at least 2, got {self.n_classes}")
        if self.pyramid_channels < 1 or self.segmentation_channels < 1:
            raise InputError("head widths must be positive")
        if self.l2g_normalization not in ("footprint", "released"):
            raise InputError(f"l2g_normalization must be 'footprint' or 'released', got {self.l2g_normalization!r}")

    def to_dict(self) -> dict:
        """Plain-dict form, for checkpoints."""
        return asdict(self)


@dataclass
class GLNetOutput:
    """Outputs of :meth:`GLNet.forward` (logits at 1/4 of the input size).

    Attributes:
        aggregated: the prediction for each patch (``None`` in global/local modes).
        local: the local branch's own logits per patch (``None`` in global mode).
        global_: the global branch's logits for the whole downsampled scene (``None`` in
            local mode); in bidirectional mode, those of the L -> G branch.
        fmreg: feature-map regularisation term, mean squared difference between local
            ps3 and the cropped global ps3 (gradients reach the local branch only).
    """

    aggregated: Tensor | None
    local: Tensor | None
    global_: Tensor | None
    fmreg: Tensor | None


class Branch(nn.Module):
    """One branch: a backbone and its FPN head."""

    def __init__(self, config: GLNetConfig, shared: bool) -> None:
        super().__init__()
        self.backbone = build_backbone(config.backbone)
        self.head = FPNHead(
            self.backbone.out_channels,
            config.n_classes,
            config.pyramid_channels,
            config.segmentation_channels,
            shared=shared,
        )

    def forward(self, x: Tensor, ext: list[Tensor] | None = None) -> BranchFeatures:
        return self.head(self.backbone(x), ext)


class GLNet(nn.Module):
    """Collaborative global-local network.

    Args:
        config: architecture (backbone, classes, mode, head widths).

    Example:
        >>> model = GLNet(GLNetConfig("resnet18", n_classes=2, mode="g2l"))
        >>> boxes = PatchBoxes.from_pixels([0, 0], [0, 64], 128, 128, 128, 192)
        >>> out = model(torch.rand(1, 3, 128, 128), torch.rand(2, 3, 128, 128), boxes)
        >>> out.aggregated.shape
        torch.Size([2, 2, 32, 32])
    """

    def __init__(self, config: GLNetConfig) -> None:
        super().__init__()
        self.config = config
        mode = config.mode
        self.global_branch = Branch(config, shared=False) if mode != "local" else None
        self.local_branch = Branch(config, shared=mode != "local") if mode != "global" else None
        self.global_l2g = Branch(config, shared=True) if mode == "bidirectional" else None
        ps3 = 4 * config.segmentation_channels
        self.aggregation = nn.Conv2d(2 * ps3, config.n_classes, 3, padding=1) if mode in ("g2l", "bidirectional") else None
        if self.aggregation is not None:
            init_head_conv(self.aggregation, zero_bias=False)

    # ------------------------------------------------------------------ parts
    def supported_modes(self) -> tuple[str, ...]:
        """Runtime modes this model can run."""
        return _RUNNABLE[self.config.mode]

    def check_mode(self, mode: str | None) -> str:
        """Validate a runtime mode (``None`` means the model's own)."""
        mode = mode or self.config.mode
        if mode not in self.supported_modes():
            raise InputError(
                f"this {self.config.mode} model cannot run mode {mode!r}; it can run: "
                f"{', '.join(self.supported_modes())}"
            )
        return mode

    def encode_global(self, image: Tensor) -> BranchFeatures:
        """Stage-1 global branch on downsampled scenes ``(B, 3, g, g)``."""
        if self.global_branch is None:
            raise InputError("a local-only GLNet has no global branch")
        return self.global_branch(image)

    def encode_local(self, patches: Tensor, boxes: PatchBoxes | None, context: BranchFeatures | None) -> BranchFeatures:
        """Local branch on full-resolution patches ``(N, 3, p, p)``.

        Args:
            patches: the patches.
            boxes: where each patch lies in its scene (needed with a context).
            context: the stage-1 global features of the patches' scenes (G -> L); ``None``
                for a local-only model.
        """
        if self.local_branch is None:
            raise InputError("a global-only GLNet has no local branch")
        if self.local_branch.head.shared:
            if context is None or boxes is None:
                raise InputError("this model's local branch needs the global context and patch boxes (G -> L)")
            if len(boxes) != patches.shape[0]:
                raise InputError(f"{patches.shape[0]} patches but {len(boxes)} boxes")
            return self.encode_local_crops(patches, crop_global_features(context, boxes))
        return self.local_branch(patches)

    def encode_local_crops(self, patches: Tensor, ext: list[Tensor]) -> BranchFeatures:
        """The G -> L local branch on patches whose 16 ext features are already cut from the
        global context (:func:`~glgeo.models.sharing.crop_global_features`), one per patch."""
        # The global features are constants for the local branch: in the paper's schedule
        # the global branch is frozen whenever the local branch trains, and fmreg must
        # update the local branch only.
        return self.local_branch(patches, [f.detach() for f in ext])

    def g2l_logits(self, patches: Tensor, boxes: PatchBoxes, context: BranchFeatures) -> Tensor:
        """The G -> L prediction for patches (logits at 1/4 of their size): the local branch
        with their crops of the global context, then the aggregation."""
        return self.aggregate(self.encode_local(patches, boxes, context).ps3, context.ps3, boxes)

    def encode_global_l2g(self, image: Tensor, canvas: L2GCanvas) -> BranchFeatures:
        """Stage-3 global branch with the merged local features of every patch (L -> G)."""
        if self.global_l2g is None:
            raise InputError("only a bidirectional GLNet has an L->G global branch")
        return self.global_l2g(image, canvas.normalized(self.config.l2g_normalization))

    def aggregate(self, local_ps3: Tensor, global_ps3: Tensor, boxes: PatchBoxes) -> Tensor:
        """The prediction: aggregation conv over [local ps3 ; cropped, resized global ps3]."""
        return self.aggregate_crops(local_ps3, crop_global(global_ps3, boxes))

    def aggregate_crops(self, local_ps3: Tensor, global_crops: Tensor) -> Tensor:
        """:meth:`aggregate` with the global ps3 already cut at each patch's box (any size:
        resized to the local features')."""
        if self.aggregation is None:
            raise InputError(f"a {self.config.mode} GLNet has no aggregation layer")
        g = resize_like(global_crops, local_ps3.shape[-2:])
        return self.aggregation(torch.cat([local_ps3, g.to(local_ps3.dtype)], dim=1))

    def aggregate_local(self, local_ps3: Tensor) -> Tensor:
        """The local share of :meth:`aggregate`: the aggregation conv over the local ps3
        channels, plus its bias.

        The conv is linear and zero-padded, so ``aggregate(L, G, boxes)`` equals
        ``aggregate_local(L) + aggregate_global(G, boxes, L.shape[-2:])``. Bidirectional
        inference keeps this share (``n_classes`` channels per patch) between its two passes
        instead of the local features (``4 x segmentation_channels``, 512 by default).
        """
        weight, conv = self._aggregation_weights()
        return F.conv2d(local_ps3, weight[:, : local_ps3.shape[1]], conv.bias, padding=conv.padding)

    def aggregate_global(self, global_ps3: Tensor, boxes: PatchBoxes, size: tuple[int, int] | torch.Size) -> Tensor:
        """The global share of :meth:`aggregate` (no bias): the aggregation conv over each
        patch's crop of ``global_ps3``, resized to the local feature ``size``."""
        weight, conv = self._aggregation_weights()
        g = resize_like(crop_global(global_ps3, boxes), tuple(size))
        return F.conv2d(g, weight[:, weight.shape[1] - g.shape[1] :], None, padding=conv.padding)

    def _aggregation_weights(self) -> tuple[Tensor, nn.Conv2d]:
        if self.aggregation is None:
            raise InputError(f"a {self.config.mode} GLNet has no aggregation layer")
        return self.aggregation.weight, self.aggregation

    # ---------------------------------------------------------------- forward
    def forward(self, global_image: Tensor | None, patches: Tensor | None, boxes: PatchBoxes | None, mode: str | None = None) -> GLNetOutput:
        """All outputs for a batch of scenes and (all) their patches, as in training.

        Args:
            global_image: downsampled scenes ``(B, 3, g, g)`` (unused in local mode).
            patches: patches ``(N, 3, p, p)`` (unused in global mode). In bidirectional
                mode these must be every patch of the scenes, since the L -> G canvas
                needs all of them.
            boxes: patch positions (``scene_index`` refers to ``global_image``'s batch).
            mode: runtime mode, default the model's own.
        """
        mode = self.check_mode(mode)
        if mode == "global":
            return GLNetOutput(None, None, self.encode_global(global_image).logits, None)
        if mode == "local":
            return GLNetOutput(None, self.encode_local(patches, None, None).logits, None, None)
        context = self.encode_global(global_image)
        local = self.encode_local(patches, boxes, context)
        if mode == "g2l":
            global_ps3, global_logits = context.ps3, context.logits
        else:
            canvas = L2GCanvas.like(context)
            canvas.add(local, boxes)
            refined = self.encode_global_l2g(global_image, canvas)
            global_ps3, global_logits = refined.ps3, refined.logits
        aggregated = self.aggregate(local.ps3, global_ps3, boxes)
        fmreg = feature_map_regularisation(local.ps3, context.ps3, boxes)
        return GLNetOutput(aggregated, local.logits, global_logits, fmreg)

    # ----------------------------------------------------------------- stages
    def stage_modules(self, stage: Stage) -> list[nn.Module]:
        """The parts trained in a stage of the paper's schedule."""
        parts: dict[int, list[nn.Module | None]] = {
            1: [self.global_branch],
            2: [self.local_branch, self.aggregation],
            3: [self.global_l2g, self.aggregation],
        }
        if stage not in parts:
            raise InputError(f"training stage must be 1, 2 or 3, got {stage}")
        modules = [m for m in parts[stage] if m is not None]
        needed = {1: ("global", "g2l", "bidirectional"), 2: ("local", "g2l", "bidirectional"), 3: ("bidirectional",)}
        if self.config.mode not in needed[stage]:
            raise InputError(f"stage {stage} does not apply to a {self.config.mode} model")
        return modules

    def stage_parameters(self, stage: Stage) -> Iterator[nn.Parameter]:
        """Parameters the optimizer updates in ``stage``."""
        for module in self.stage_modules(stage):
            yield from module.parameters()

    def set_stage(self, stage: Stage) -> None:
        """Freeze every part not trained in ``stage`` (no gradients, BatchNorm in eval mode).

        Call after ``model.train()``: frozen parts are put back in eval mode here, and
        :meth:`train` keeps them there.
        """
        trained = {id(p) for p in self.stage_parameters(stage)}
        for p in self.parameters():
            p.requires_grad_(id(p) in trained)
        self._stage = stage
        self.train(self.training)

    def train(self, mode: bool = True) -> "GLNet":
        if mode and getattr(self, "inference_form", False):
            raise RuntimeError(
                "this GLNet is an inference copy (BatchNorms folded, weights cast): train the model it was copied from"
            )
        super().train(mode)
        stage = getattr(self, "_stage", None)
        if mode and stage is not None:
            trained = {id(m) for m in self.stage_modules(stage)}
            for child in (self.global_branch, self.local_branch, self.global_l2g, self.aggregation):
                if child is not None and id(child) not in trained:
                    child.eval()
        return self

    def start_stage3(self) -> None:
        """Initialise the L -> G branch from the stage-1 global branch, as the released
        code did (backbone and classifier copied; the doubled convs start fresh)."""
        if self.global_l2g is None or self.global_branch is None:
            raise InputError("stage 3 needs a bidirectional model")
        self.global_l2g.backbone.load_state_dict(self.global_branch.backbone.state_dict())
        self.global_l2g.head.classifier.load_state_dict(self.global_branch.head.classifier.state_dict())

    def with_mode(self, mode: Mode) -> "GLNet":
        """A new model of another mode sharing this one's trained parts (for the next
        training stage: global -> g2l -> bidirectional)."""
        new = GLNet(GLNetConfig(**{**self.config.to_dict(), "mode": mode}))
        for name in ("global_branch", "local_branch", "global_l2g", "aggregation"):
            mine, theirs = getattr(self, name), getattr(new, name)
            if mine is None or theirs is None:
                continue
            if isinstance(mine, Branch) and mine.head.shared != theirs.head.shared:
                raise InputError(f"cannot turn a {self.config.mode} model into a {mode} model")
            theirs.load_state_dict(copy.deepcopy(mine.state_dict()))
        return new


def build_model(
    backbone: str = "resnet50",
    n_classes: int = 7,
    mode: Mode = "g2l",
    pyramid_channels: int = 256,
    segmentation_channels: int = 128,
) -> GLNet:
    """Build a randomly initialised GLNet (like timm's ``create_model``).

    Unknown backbones or modes raise an error listing the valid names.
    """
    return GLNet(GLNetConfig(backbone, n_classes, mode, pyramid_channels, segmentation_channels))
