"""The streaming GLNet inference engine.

One scene goes through GLNet as the paper and the released code do it, without ever holding
the scene, its patches or a full-size score canvas in memory.

A scene larger than the model's *context footprint* (the size of the images it was trained
on, on its working grid) is cut into overlapping context windows of that size
(:func:`glgeo.tiling.window_grid`), so the global branch sees every part of a large scene at
the scale it was trained at instead of one image squeezed ever coarser; a scene no larger
than the footprint is one window, as in the paper. For each window, in row-major order:

0. where its patches and global image lie (:class:`WindowLayout`): with the default
   ``grid_anchor="world"`` on a lattice fixed to the map (the scene's transform,
   :func:`glgeo.resolution.map_origin`): patches every 32 px of the working grid
   (:func:`glgeo.tiling.anchored_axis`), the global image on whole cells of its own, so a
   cut or a tile of a raster computes the ground it shares with it on the same cells; the
   grid reaches less than a step past the window (over the scene, or its mirror image
   beyond the scene's edge), or stops short of a side it shares widely with a neighbour
   where that saves a patch row (the window's taper then falls to 0 before it);
1. one decimated read of the window (anchored: of its lattice box) -> the global branch
   (``encode_global``): with the default ``global_view="fixed"`` at one ground resolution
   for every window (:meth:`StreamingSegmenter.global_shape`), extended by its mirror
   image by ``global_margin`` px, the margin then cut off the features
   (:func:`glgeo.models.heads.crop_margin`); ``squeeze`` stretches it to a square as the
   released code;
2. the window's patch grid (:mod:`glgeo.tiling`) read in batches (:mod:`glgeo.io`, the next
   batch read in a background thread while the network runs on this one; in a scene of
   several windows one such thread reads every window's global image and batches in turn,
   :meth:`StreamingSegmenter._window_reads`); patches with no valid pixel are not
   computed, nor are windows with none;
3. per mode:

   * ``global``: each patch's crop of the global logits;
   * ``local``: the local branch alone;
   * ``g2l``: local branch with G -> L context (sampled at each patch's exact place, or
     cut at whole cells as the released code: ``context_crop``), then the aggregation conv;
   * ``bidirectional``: pass 1 runs the local branch on every patch of the window, merges
     its features into the L -> G canvases and keeps the patch's local share of the
     aggregation conv (``n_classes`` channels at 1/4 resolution;
     :meth:`GLNet.aggregate_local`) in an anonymous temporary file; the stage-3 global
     branch runs on the canvases; pass 2 adds each patch's global share, from the refined
     global features, to its kept local share (``l2g_reuse``: ``memory`` keeps the shares
     in RAM, ``recompute`` runs the local branch again instead);
   * coarse-to-fine (``coarse_to_fine=True``, binary g2l/bidirectional models): the global
     branch's coarse foreground gives the relaxed foreground box; only patches touching it
     go through the local branch, every other valid pixel is background (class 0);

   With ``edge_margin``, where a window meets the scene's edge its patch grid reaches that
   far beyond it (:func:`glgeo.tiling.edge_margins`): those patches see the scene mirrored at its
   edge (:meth:`glgeo.io.SceneReader.read_patches`) and their G -> L crops the window's
   global features mirrored alike (:class:`~glgeo.models.PatchBoxes` with ``beyond``), so
   the scene's outer pixels lie inside a patch, not on its zero-padded edge; only pixels
   inside the scene are kept;

4. patch logits upsampled to the patch's pixels and blended (:mod:`glgeo.blend`, tapered
   weights by default): a single window's straight into the row-band blender, which hands
   final row bands to a sink (the writer) at once; with several windows, into a
   window-sized buffer whose normalised logits the row-band blender then blends across
   windows the same way.

Every stage is timed (:class:`Timings`): the performance knobs live in
:class:`InferenceSettings` and nowhere else.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Iterator, Literal, Mapping

import numpy as np
import torch
import torch.nn.functional as F

from .blend import BLEND_RULES, BlendRule, RowBand, RowBandBlender, WindowAccumulator
from .device import Precision, autocast, default_batch_size, resolve_device, resolve_precision
from .errors import InputError, InternalError, OutputError
from .io import GLOBAL_RESAMPLINGS, NODATA_FILLS, NodataFill, PatchBatch, SceneReader, StretchSpec
from .modes import Mode
from .progress import ProgressCallback
from .provenance import context_rule
from .resolution import Scale, axis_scales, describe_scale, map_origin
from .tiling import (
    ANCHOR_OFFSET,
    ANCHOR_STEP,
    DEFAULT_MIN_OVERLAP,
    PatchGrid,
    PatchWindow,
    anchored_axis,
    axis_overlaps,
    ceded_sides,
    edge_margins,
    sub_grid,
    tile_weights,
    window_grid,
    window_share,
)
from .tiling import taper as taper_weights

log = logging.getLogger(__name__)


#: How a context window becomes its global image (:attr:`InferenceSettings.global_view`).
GLOBAL_VIEWS: tuple[str, ...] = ("fixed", "squeeze")
#: How a patch's G->L context is cut (:attr:`InferenceSettings.context_crop`).
CONTEXT_CROPS: tuple[str, ...] = ("exact", "cells")
#: Where patch grids and global images start (:attr:`InferenceSettings.grid_anchor`).
GRID_ANCHORS: tuple[str, ...] = ("world", "scene")
#: The ``fixed`` global view's global size over the checkpoint's: its training showed the
#: global branch views 1 to ``1 / (1 - crop_jitter)`` times finer than the checkpoint's
#: global size over its footprint (1 to 1.43 for the zoo models); chosen on the default
#: model's validation scenes (docs/segment.md).
GLOBAL_ZOOM = 1.2
#: An anchored global image's pixel is a whole number of working-grid pixels when that
#: moves the ``fixed`` view's resolution by at most this share (:attr:`StreamingSegmenter.global_step`).
GLOBAL_STEP_TOLERANCE = 0.1
#: Global margins are multiples of this (the backbones' output stride, as the lattice's
#: step), so every feature map's margin is whole cells.
GLOBAL_MARGIN_STEP = ANCHOR_STEP


def default_global_margin(global_size: int) -> int:
    """The global margin for a ``global_size`` px global image: a multiple of
    :data:`GLOBAL_MARGIN_STEP` near a tenth of it, at least one (32 px for the zoo models'
    307). Chosen on the default model's validation scenes (``benchmarks/global_margin.py``:
    32 px scored as well as the 64 px used before, kept the classes under cuts as well, and
    cost less)."""
    return GLOBAL_MARGIN_STEP * max(1, round(global_size / 10 / GLOBAL_MARGIN_STEP))


@dataclass(frozen=True)
class InferenceSettings:
    """Everything that tunes a run without changing its result (except ``mode``,
    ``coarse_to_fine``, ``stretch``, ``scale`` and the patch geometry, which are the user's
    choice).

    Attributes:
        patch_size: local patch side in pixels; ``None``: the checkpoint's.
        min_overlap: smallest overlap between neighbouring patches (paper: 50 px).
        global_size: side of the global branch's image; ``None``: the checkpoint's.
        scale: read the scene at this fraction of its resolution (or ``(rows, cols)``, one
            for each axis), a coarser working grid the patch grid and sizes refer to (the
            output stays on the scene's grid, see :func:`glgeo.segment`); ``None``:
            :func:`glgeo.resolution.reading_scale` (the model's GSD, with square pixels on
            the ground; the checkpoint's
            :attr:`~glgeo.models.checkpoint.Checkpoint.scene_scale` where either resolution
            is unknown).
        batch_size: patches per network call; ``None``: sized to the device
            (:func:`glgeo.device.default_batch_size`: 2 on a CPU, by free memory on CUDA).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``auto`` (bf16/fp16 autocast on CUDA, bf16 on CPUs with native bf16, else fp32), ``fp32``, ``bf16``
            or ``fp16``.
        channels_last: run convolutions in channels-last memory layout (faster on CPUs
            and tensor cores).
        fold_batchnorm: fold the backbones' BatchNorms into their convs (exact up to
            rounding; one op less per conv).
        mode: GLNet mode; ``None``: the checkpoint's.
        coarse_to_fine: compute the local branch only inside the relaxed foreground box
            of the global branch's prediction (binary models).
        c2f_ratio: foreground:background ratio the coarse-to-fine box is relaxed to.
        l2g_reuse: how bidirectional pass 2 gets each patch's local contribution:
            ``disk`` (pass 1's local share of the aggregation conv, kept in an anonymous
            temporary file under ``TMPDIR``: memory flat at any scene size, about
            ``n_classes x (patch/4)^2 x 2`` bytes of disk per patch), ``memory`` (the same
            shares in RAM: memory grows with the scene) or ``recompute`` (the local branch
            runs again: no storage, one more local pass).
        prefetch: batches read ahead in a background thread (0: read inline); in a scene
            of several context windows the thread also reads the windows' global images.
        logit_upsampling: how patch logits (1/4 resolution) reach the patch's pixels (in
            ``global`` mode: how each pixel reads the window's global logits at its exact
            place, ``nearest`` taking the cell its centre falls in), and how a coarser
            working grid's scores reach the scene's pixels (``scale``).
        blend: how overlapping patches and context windows are combined
            (:mod:`glgeo.blend`): ``taper`` (weights falling towards each tile's edges,
            normalised: no seams) or ``sum`` (the released code's plain sum).
        footprint: the context footprint in px of the working grid: scenes larger than
            this are cut into overlapping context windows, each with its own global view;
            ``None``: the checkpoint's (:attr:`~glgeo.models.checkpoint.Checkpoint.footprint`);
            0: the whole scene is one window, as in the released code.
        window_overlap: smallest overlap between context windows in px; ``None``:
            :func:`glgeo.tiling.window_overlap` (an eighth of the footprint).
        global_view: how a context window becomes its global image. ``fixed``: at one
            ground resolution for every window, the footprint over the global size (a
            window smaller than the footprint, such as a whole small scene or a strip's,
            gets a smaller image instead of being stretched to the full size), the global
            size being the checkpoint's times :data:`GLOBAL_ZOOM` unless ``global_size``
            says; ``squeeze``: every window stretched to a ``global_size`` square, as the
            released code. ``fixed`` needs a footprint (else ``squeeze``).
        global_margin: with the ``fixed`` view in ``global`` and ``g2l`` modes, the global
            image is extended by this many px on each side, the window mirrored at its
            edges, before the global branch, and the margin cut off its features: the
            window's edge is then not the edge of the branch's convolutions, and a place's
            global features depend less on where the window ends. A multiple of 32 (the
            backbone's output stride); ``None``: :func:`default_global_margin`; 0: none.
        context_crop: how each patch's G->L context is cut from its window's global
            features: ``exact`` (sampled bilinearly at the patch's exact place) or ``cells``
            (cut at whole feature cells, as the released code: it moves by up to half a
            cell as the patch grid moves).
        grid_anchor: where patch grids and global images start. ``world``: on a lattice
            fixed to the scene's map coordinates (:func:`glgeo.resolution.map_origin`):
            patches every 32 px of the working grid (:func:`glgeo.tiling.anchored_axis`),
            global images every 32 of their own pixels, each a whole number of
            working-grid pixels (the fixed view's ground resolution rounded to it, where
            that moves it by at most :data:`GLOBAL_STEP_TOLERANCE`; else only the patches
            are anchored, as for scenes much coarser than the model's imagery and for
            models whose view is not near whole pixels, such as inria-buildings), so a
            place's features are computed on the same cells wherever the scene, or a cut of
            it, begins; grids reach less than a lattice step past the window, over the
            scene where it goes on and its mirror image beyond its edge. ``scene``: at each
            window's first pixel, as the released code. ``None``: ``world`` with the
            ``fixed`` view in ``global`` and ``g2l`` modes without coarse-to-fine (for
            patches of at least 64 px, and windows at least a patch and a lattice step
            wide), else ``scene``. A plain image's map is its own
            pixels, so only georeferenced cuts (or a plain image's transform) carry their
            place.
        edge_margin: how far, in px of the working grid, patch grids reach beyond the
            scene's edge over the scene mirrored there (:func:`glgeo.tiling.edge_margins`),
            so that no scene pixel lies on a patch's zero-padded edge; less than half a patch
            (larger values are clipped). 0: no mirrored margin (a grid on the map's lattice still
            reaches 0-31 px past the edge; on the scene's own grid the edge is a patch's).
            For ``g2l`` and ``local`` modes with the ``taper`` blend and without
            coarse-to-fine (``global`` mode reads no patch pixels). Measured in
            docs/segment.md: not the default, as it did not help every model.
        nodata_fill: what the network sees where the scene has no data: the valid pixels
            of the global image or patch mirrored across the nearest edge of the nodata
            region (``mirror``, :mod:`glgeo.nodata`), each band's mean over them (``mean``),
            or 0 (``zero``, the released code's black, which a model reads as dark ground).
            Measured in docs/segment.md (``benchmarks/nodata.py``).
        global_resampling: how the global image is made from the scene's full-resolution
            pixels: GDAL's antialiased bilinear read in floating point (``gdal``, the
            default), or PIL's bilinear resize of the 8-bit image, bit for bit, two passes
            each rounded to 8 bits (``pil``: the released code's global image, as Pillow
            computed it before version 13; :mod:`glgeo.pil_resize`). They differ by up to
            one grey level, more beside no data, which PIL's resize sees as black (GDAL's
            leaves it out). ``pil`` needs an 8-bit scene.
        gsd: metres per pixel of a scene whose file does not say (a plain JPEG or PNG);
            used as a georeferenced scene's is, for the reading scale
            (:func:`glgeo.resolution.reading_scale`) and the ``fixed`` global view's ground
            resolution (:func:`glgeo.resolution.coarseness`). Ignored where the file says.
        stretch: 16-bit/float input stretch (see :mod:`glgeo.io`).
        gdal_cache_mb: GDAL block cache in MB, fixed so memory does not grow with the
            scene (GDAL's default is 5 % of the RAM); about one patch row of blocks
            is enough.
        torch_threads: CPU threads for torch (``None``: torch's default).
        compile: compile the local branch with ``torch.compile`` (inductor). Off by
            default: compiling takes longer than it saves except on scenes of several
            hundred megapixels (figures in ``docs/performance.md``).
    """

    patch_size: int | None = None
    min_overlap: int = DEFAULT_MIN_OVERLAP
    global_size: int | None = None
    scale: Scale | None = None
    batch_size: int | None = None
    device: str = "auto"
    precision: Precision = "auto"
    channels_last: bool = True
    fold_batchnorm: bool = True
    mode: Mode | None = None
    coarse_to_fine: bool = False
    c2f_ratio: float = 1.0
    l2g_reuse: Literal["disk", "memory", "recompute"] = "disk"
    prefetch: int = 1
    logit_upsampling: Literal["bilinear", "nearest"] = "bilinear"
    blend: BlendRule = "taper"
    footprint: int | None = None
    window_overlap: int | None = None
    global_view: Literal["fixed", "squeeze"] = "fixed"
    global_margin: int | None = None
    context_crop: Literal["exact", "cells"] = "exact"
    grid_anchor: Literal["world", "scene"] | None = None
    edge_margin: int = 0
    nodata_fill: NodataFill = "mirror"
    global_resampling: Literal["gdal", "pil"] = "gdal"
    gsd: float | None = None
    stretch: StretchSpec = "auto"
    gdal_cache_mb: int = 64
    torch_threads: int | None = None
    compile: bool = False

    def __post_init__(self) -> None:
        if self.patch_size is not None and self.patch_size < 8:
            raise InputError(f"patch size must be at least 8 px, got patch_size={self.patch_size}")
        if self.global_size is not None and self.global_size < 8:
            raise InputError(f"global size must be at least 8 px, got global_size={self.global_size}")
        if self.scale is not None and not all(0 < s <= 1 for s in axis_scales(self.scale)):
            raise InputError(f"scale must be in (0, 1], got scale={describe_scale(self.scale)}")
        if self.batch_size is not None and self.batch_size < 1:
            raise InputError(f"batch size must be at least 1, got batch_size={self.batch_size}")
        if self.min_overlap < 0:
            raise InputError(f"overlap must be 0 or more pixels, got min_overlap={self.min_overlap}")
        if self.prefetch < 0:
            raise InputError(f"prefetch must be 0 or more batches, got prefetch={self.prefetch}")
        if self.l2g_reuse not in ("disk", "memory", "recompute"):
            raise InputError(f"l2g_reuse must be disk, memory or recompute, got {self.l2g_reuse!r}")
        if self.logit_upsampling not in ("bilinear", "nearest"):
            raise InputError(f"logit upsampling must be bilinear or nearest, got {self.logit_upsampling!r}")
        if self.blend not in BLEND_RULES:
            raise InputError(f"blend must be one of {', '.join(BLEND_RULES)}, got {self.blend!r}")
        if self.footprint is not None and self.footprint != 0 and self.footprint < 8:
            raise InputError(f"the context footprint must be 0 (whole scene) or at least 8 px, got footprint={self.footprint}")
        if self.nodata_fill not in NODATA_FILLS:
            raise InputError(f"nodata_fill must be one of {', '.join(NODATA_FILLS)}, got {self.nodata_fill!r}")
        if self.edge_margin < 0:
            raise InputError(f"edge_margin must be 0 or more pixels, got {self.edge_margin}")
        if self.global_resampling not in GLOBAL_RESAMPLINGS:
            raise InputError(
                f"global_resampling must be one of {', '.join(GLOBAL_RESAMPLINGS)}, got {self.global_resampling!r}"
            )
        if self.global_view not in GLOBAL_VIEWS:
            raise InputError(f"global_view must be one of {', '.join(GLOBAL_VIEWS)}, got {self.global_view!r}")
        if self.context_crop not in CONTEXT_CROPS:
            raise InputError(f"context_crop must be one of {', '.join(CONTEXT_CROPS)}, got {self.context_crop!r}")
        if self.global_margin is not None and (self.global_margin < 0 or self.global_margin % GLOBAL_MARGIN_STEP):
            raise InputError(
                f"the global margin must be 0 or a multiple of {GLOBAL_MARGIN_STEP} px, got {self.global_margin}"
            )
        if self.grid_anchor is not None and self.grid_anchor not in GRID_ANCHORS:
            raise InputError(f"grid_anchor must be one of {', '.join(GRID_ANCHORS)}, got {self.grid_anchor!r}")
        if self.window_overlap is not None and self.window_overlap < 0:
            raise InputError(f"window_overlap must be 0 or more pixels, got {self.window_overlap}")
        if self.gsd is not None and not self.gsd > 0:
            raise InputError(f"the scene's ground sample distance must be positive, got gsd={self.gsd}")
        if self.c2f_ratio <= 0:
            raise InputError(f"the coarse-to-fine ratio must be positive, got c2f_ratio={self.c2f_ratio}")
        if self.gdal_cache_mb < 8:
            raise InputError("give GDAL at least 8 MB of block cache")

    @classmethod
    def released(cls, **settings: Any) -> "InferenceSettings":
        """The released GLNet code's computation (``glgeo segment --released``): the
        :data:`RELEASED_SETTINGS`, with ``settings`` (device, batch size, mode...) for the
        rest. One of the released settings given another value is an :class:`InputError`."""
        clashes = [f"{name}={value!r}, not {settings[name]!r}" for name, value in RELEASED_SETTINGS.items()
                   if name in settings and settings[name] != value]
        if clashes:
            raise InputError(
                f"the released computation sets {'; '.join(clashes)}: drop "
                f"{'it' if len(clashes) == 1 else 'them'}, or compute as glgeo does"
            )
        return cls(**{**settings, **RELEASED_SETTINGS})


#: What :meth:`InferenceSettings.released` sets: the whole scene one window squeezed into one
#: global image by PIL's resize, patches on the scene's own grid with no mirrored margin,
#: nodata seen as black, plain sums of logits upsampled nearest, in fp32.
RELEASED_SETTINGS: Mapping[str, Any] = MappingProxyType({
    "blend": "sum", "logit_upsampling": "nearest", "precision": "fp32", "footprint": 0, "nodata_fill": "zero",
    "edge_margin": 0, "global_view": "squeeze", "global_margin": 0, "context_crop": "cells", "grid_anchor": "scene",
    "global_resampling": "pil",
})


@dataclass
class Timings:
    """Seconds spent in each part of a run.

    ``read`` is the background reader's busy time (it overlaps ``network`` when
    prefetching); ``read_wait`` is what the network loop waited for it. ``global_read``
    is the global images' reads (in the background reader too when it reads ahead across
    context windows).
    """

    global_read: float = 0.0
    global_network: float = 0.0
    read: float = 0.0
    read_wait: float = 0.0
    network: float = 0.0
    blend: float = 0.0
    write: float = 0.0
    total: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


@dataclass
class InferenceStats:
    """What a run did.

    Attributes:
        mode: the GLNet mode run.
        device: the torch device.
        precision: fp32, bf16 or fp16.
        patches: patches in all context windows' grids.
        batch_size: patches per network call.
        computed: patches that went through the local branch (per pass).
        skipped_nodata: patches with no valid pixel, not computed.
        skipped_c2f: patches outside the coarse-to-fine box, not computed.
        l2g_reuse: bidirectional: how pass 2 got the local contributions (``disk``,
            ``memory`` or ``recompute``).
        kept_bytes: bidirectional: bytes of local shares kept between the passes.
        c2f_box: the coarse-to-fine box ``(top, left, bottom, right)`` in scene pixels.
        stretch: how input values were scaled.
        blender_bytes: memory held by the blender's buffers.
        windows: context windows the scene was cut into (1: the whole scene).
        footprint: the context footprint used, in working-grid px.
        blend: the blend rule (``taper`` or ``sum``).
        skipped_windows: context windows with no valid pixel, not computed.
        context: how the global views and G->L contexts were made and where the grids
            start, as the engine resolved the settings (:func:`glgeo.provenance.context_rule`).
        timings: seconds per stage.
    """

    mode: str
    device: str
    precision: str
    patches: int
    batch_size: int = 0
    computed: int = 0
    skipped_nodata: int = 0
    skipped_c2f: int = 0
    l2g_reuse: str | None = None
    kept_bytes: int = 0
    c2f_box: tuple[int, int, int, int] | None = None
    stretch: str = ""
    blender_bytes: int = 0
    windows: int = 1
    footprint: int = 0
    blend: str = "taper"
    skipped_windows: int = 0
    context: str = ""
    timings: Timings = field(default_factory=Timings)
    #: per context window ``(row, col)`` of the scene's window grid, what it counted:
    #: ``(patches, computed, skipped_nodata, skipped_c2f, skipped_windows)`` (a scene split
    #: into blocks computes the windows at block edges twice, and counts each once).
    window_counts: dict = field(default_factory=dict)


class _Clock:
    """Adds elapsed seconds to a Timings field (syncing CUDA so GPU work is counted)."""

    def __init__(self, timings: Timings, name: str, device: torch.device | None = None) -> None:
        self.timings, self.name, self.device = timings, name, device

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self.device is not None and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        setattr(self.timings, self.name, getattr(self.timings, self.name) + time.perf_counter() - self.start)


def context_windows(height: int, width: int, footprint: int | None, overlap: int | None = None) -> PatchGrid:
    """The context windows of a ``height x width`` working grid for a ``footprint`` px
    model (``None``: the whole scene is one window); ``overlap``: the settings'
    ``window_overlap``."""
    return window_grid(height, width, footprint or max(height, width, 8), overlap)


class StreamingSegmenter:
    """Runs a GLNet over one scene, streaming final rows to a sink.

    Args:
        model: the network (a :class:`glgeo.models.GLNet`, or anything with its inference
            methods: ``check_mode``, ``encode_global``, ``encode_local``, ``aggregate``,
            ``g2l_logits``, ``encode_global_l2g`` and a ``config.n_classes``, such as
            :class:`glgeo.tta.FlipRotateTTA`).
        settings: the run's settings.
        patch_size: the patch size when ``settings.patch_size`` is ``None``.
        global_size: the checkpoint's global size (the run's is ``settings.global_size``,
            or this one, times :data:`GLOBAL_ZOOM` with the ``fixed`` global view).
        scaling: the checkpoint's input scaling ``(min, max)``.
        footprint: the context footprint when ``settings.footprint`` is ``None``
            (``None``: the whole scene is one window).
        coarseness: how many times coarser the working grid's pixels are than the
            model's (:func:`glgeo.resolution.coarseness`: above 1 for scenes coarser than
            the model's imagery, which are read as they are); the ``fixed`` global view
            keeps its ground resolution by it.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        settings: InferenceSettings,
        patch_size: int,
        global_size: int,
        scaling: tuple[float, float] = (0.0, 255.0),
        footprint: int | None = None,
        coarseness: float = 1.0,
    ) -> None:
        self.settings = settings
        self.device = resolve_device(settings.device)
        self.precision = resolve_precision(settings.precision, self.device)
        self._fp32_said = False  # the fp32 recomputation of non-finite values is said once
        self._fp32_model: torch.nn.Module | None = None  # made for it, when first needed
        self.mode = model.check_mode(settings.mode)
        self.n_classes = int(model.config.n_classes)
        self.patch_size = settings.patch_size or patch_size
        self.batch_size = settings.batch_size or default_batch_size(self.device, self.patch_size)
        self.footprint = footprint if settings.footprint is None else (settings.footprint or None)
        #: ``fixed`` or ``squeeze`` (:attr:`InferenceSettings.global_view`); ``squeeze`` without a footprint
        self.global_view = settings.global_view if self.footprint else "squeeze"
        zoom = GLOBAL_ZOOM if self.global_view == "fixed" else 1.0
        #: global image side of a full context window
        self.global_size = settings.global_size or round(global_size * zoom)
        self.coarseness = max(1.0, float(coarseness))
        if self.global_view == "fixed" and self.mode in ("global", "g2l"):
            margin = default_global_margin(self.global_size) if settings.global_margin is None else settings.global_margin
        elif settings.global_margin:
            raise InputError(
                "a global margin needs the fixed global view and mode global or g2l; drop --global-margin for this run"
            )
        else:
            margin = 0
        #: mirrored margin around each global image, px of the global image
        self.global_margin = margin
        anchorable = (
            self.global_view == "fixed" and self.mode in ("global", "g2l") and not settings.coarse_to_fine
            and self.patch_size >= 2 * ANCHOR_STEP and self.patch_size - settings.min_overlap >= ANCHOR_STEP
        )  # fmt: skip
        if settings.grid_anchor == "world" and not anchorable:
            raise InputError(
                "a grid anchored to the map needs the fixed global view, mode global or g2l, no coarse-to-fine and "
                f"patches of at least {2 * ANCHOR_STEP} px stepping {ANCHOR_STEP} px; use grid_anchor='scene' for this run"
            )
        #: ``world`` or ``scene`` (:attr:`InferenceSettings.grid_anchor`), resolved
        self.grid_anchor = (settings.grid_anchor or "world") if anchorable else "scene"
        #: working-grid px per global-image px of an anchored global view: the fixed view's
        #: ground resolution rounded to whole pixels (2 for the default model: 306 px for
        #: its 612 px footprint), so the global image's cells fall on the lattice too; 0
        #: where that would move the resolution by more than :data:`GLOBAL_STEP_TOLERANCE`
        #: (a scene much coarser than the model's imagery, or a model whose view is not near
        #: whole pixels: inria-buildings' 1.67): only the patches are anchored
        self.global_step = 0
        if anchorable:
            exact = self.footprint / (self.global_size * self.coarseness)
            if exact >= 1 and abs(round(exact) - exact) <= GLOBAL_STEP_TOLERANCE * exact:
                self.global_step = round(exact)
        self.scaling = scaling
        if settings.coarse_to_fine:
            if self.n_classes != 2:
                raise InputError(
                    f"coarse-to-fine needs a binary model (background/foreground); this one has {self.n_classes} classes"
                )
            if self.mode not in ("g2l", "bidirectional"):
                raise InputError(f"coarse-to-fine needs mode g2l or bidirectional, not {self.mode}")
        if settings.edge_margin and not (
            self.mode in ("g2l", "local") and settings.blend == "taper" and not settings.coarse_to_fine
        ):
            raise InputError(
                "edge_margin needs mode g2l or local, the taper blend and no coarse-to-fine; "
                "drop --edge-margin for this run"
            )
        #: mirrored margin beyond the scene's edge, px of the working grid (less than half a patch)
        self.edge_margin = min(settings.edge_margin, (self.patch_size - 1) // 2)
        if settings.torch_threads:
            torch.set_num_threads(settings.torch_threads)
        from glgeo.models.deploy import inference_copy

        # A copy, BatchNorms folded, weights stored once in the run's precision on the run's
        # device: the caller's model is left as it was.
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[self.precision]
        self._dtype = dtype or torch.float32
        self.model = inference_copy(
            model, dtype, self.device, channels_last=settings.channels_last, fold_batchnorm=settings.fold_batchnorm
        )
        if settings.compile and getattr(self.model, "local_branch", None) is not None:
            import torch._dynamo as dynamo

            # the shared heads see every pyramid level's shape: one graph each
            dynamo.config.recompile_limit = max(dynamo.config.recompile_limit, 64)
            self.model.local_branch = torch.compile(self.model.local_branch, dynamic=False)

    # --------------------------------------------------------------- helpers
    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(array).to(self.device, non_blocking=True)
        return t.contiguous(memory_format=torch.channels_last) if self.settings.channels_last and t.ndim == 4 else t

    def _to_patch_pixels(self, logits: torch.Tensor, grid: PatchGrid) -> torch.Tensor:
        """Logits upsampled to the patch's pixels, float32, left on the device (the blender's)."""
        size = (grid.patch_height, grid.patch_width)
        logits = logits.float()
        if tuple(logits.shape[-2:]) != size:
            if self.settings.logit_upsampling == "bilinear":
                logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
            else:
                logits = F.interpolate(logits, size=size, mode="nearest")
        return logits.contiguous()

    def global_shape(self, height: int, width: int) -> tuple[int, int]:
        """The global image's ``(rows, cols)`` for a ``height x width`` window (working grid
        px): ``global_size`` square (``squeeze``), or the window at the footprint's ground
        resolution, ``global_size / footprint`` image px per model px, never larger than a
        full window's and at least :data:`GLOBAL_MARGIN_STEP` px (``fixed``)."""
        if self.global_view == "squeeze":
            return self.global_size, self.global_size
        per_px = self.global_size / self.footprint * self.coarseness
        return tuple(min(self.global_size, max(GLOBAL_MARGIN_STEP, round(side * per_px))) for side in (height, width))

    def _encode_global(self, image: torch.Tensor):
        """The global branch on a global image; with a global margin, on the image extended
        by its mirror image (``global_margin`` px, fewer on an image too small to mirror
        that far), the margin then cut off every feature map."""
        from glgeo.models.heads import crop_margin

        margin = min(self.global_margin, GLOBAL_MARGIN_STEP * ((min(image.shape[-2:]) - 1) // GLOBAL_MARGIN_STEP))
        if margin <= 0:
            return self.model.encode_global(image)
        padded = F.pad(image, (margin, margin, margin, margin), mode="reflect")
        if self.settings.channels_last:
            padded = padded.contiguous(memory_format=torch.channels_last)
        return crop_margin(self.model.encode_global(padded), margin, tuple(padded.shape[-2:]))

    # ------------------------------------------------------------------- run
    def run(
        self,
        reader: SceneReader,
        sink: Callable[[RowBand], None],
        scores: bool = False,
        progress: ProgressCallback | None = None,
        block: tuple[range, range] | None = None,
        score_dtype: str = "uint8",
    ) -> InferenceStats:
        """Segment the reader's scene, calling ``sink`` with each final row band.

        A scene no larger than the context footprint is one window: the global branch sees
        the whole scene and its patches are blended straight into the scene's rows. A
        larger scene is cut into overlapping context windows (:func:`glgeo.tiling.window_grid`),
        each with its own global image and patch grid; each window's patches are blended in
        a window-sized buffer and the windows' normalised logits blended into the scene's
        rows, both with the settings' rule.

        Args:
            reader: an open :class:`~glgeo.io.SceneReader`.
            sink: receives :class:`~glgeo.blend.RowBand` objects top to bottom.
            scores: also compute per-class scores.
            progress: called with (patch steps done, in all); bidirectional runs count
                every patch twice, one step per pass.
            block: only the context windows in these window rows and columns (a block of
                a scene split over several processes, :mod:`glgeo.split`): ``sink`` then
                gets the rows of the block's windows, their columns only, in pixels counted
                from the block's first window (:func:`glgeo.tiling.sub_grid`). Pixels that
                every window covering them is in the block get exactly the whole scene's
                values. Ignored for a scene that is one window.
            score_dtype: the scores' type (:data:`glgeo.blend.SCORE_SCALES`): ``uint8``
                (softmax x 255, as written) or, for :class:`~glgeo.blend.ToSceneGrid` to
                interpolate on a working grid, :data:`~glgeo.blend.WORKING_SCORE_DTYPE`.
        """
        started = time.perf_counter()
        info = reader.info
        footprint = self.footprint or max(info.height, info.width, 8)
        origin = map_origin(reader.source.transform, reader.scale) if self.grid_anchor == "world" else None
        windows, layouts = self.window_layouts(info.height, info.width, origin)
        # where windows left part of a wide overlap to each other, how far the widest blend
        # reaches (the scene's windows, not a block's: every block of a split scene says the same)
        shared = f", windows blend over at most {widest_blend(windows, layouts)} px" if any(any(w.ceded) for w in layouts) else ""
        if len(windows) == 1:
            block = None
        if block is not None:
            layouts = [layouts[r * windows.n_cols + c] for r in block[0] for c in block[1]]
        chosen = [layout.window for layout in layouts]
        patches = sum(len(layout.grid) for layout in layouts)
        # the windows are alike (a scene smaller than the footprint is one): all on the lattice or none
        anchored = origin is not None and all(self._on_lattice(w) for w in chosen)
        stats = InferenceStats(
            self.mode, str(self.device), self.precision, patches, self.batch_size,
            windows=len(chosen), footprint=footprint, blend=self.settings.blend,
            context=context_rule(self.settings, self, anchored=anchored) + shared,
        )  # fmt: skip
        timings = stats.timings
        passes = 2 if self.mode == "bidirectional" else 1
        progress_total = patches * passes
        steps = [0]

        def tick(n: int) -> None:
            steps[0] += n
            if progress is not None:
                progress(steps[0], progress_total)

        def timed_sink(band: RowBand) -> None:
            with _Clock(timings, "write"):
                sink(band)

        taper = self.settings.blend == "taper"
        with torch.inference_mode():
            if len(windows) == 1:
                # patches straight into the scene's rows (a bounded buffer of patch rows); with
                # edge margins or an anchored grid the blender's rows and columns reach beyond
                # the scene's
                layout = layouts[0]
                margins = layout.margins
                emit = _inside(timed_sink, margins, info.height, info.width) if any(margins) else timed_sink
                blender = RowBandBlender(
                    layout.grid, self.n_classes, emit, scores=scores, fill_class=0, device=self.device,
                    score_dtype=score_dtype,
                )  # fmt: skip
                stats.blender_bytes = blender.nbytes
                run = _WindowRun(layout, blender.add, taper, self.settings.context_crop == "exact")
                self._run_window(run, reader, stats, tick, whole_scene=True)
                if not blender.done:
                    raise InternalError(f"{blender.patches_added} of {len(layout.grid)} patches blended")
            else:
                self._run_windows(windows, layouts, reader, timed_sink, scores, stats, tick, block, score_dtype)
        timings.total = time.perf_counter() - started
        return stats

    def window_layouts(
        self, height: int, width: int, origin: tuple[int, int] | None = None
    ) -> tuple[PatchGrid, list["WindowLayout"]]:
        """A ``height x width`` working grid's context windows and where each one's patches
        and global image lie, in the windows' order.

        Args:
            height: the working grid's rows.
            width: its columns.
            origin: the working grid's :func:`~glgeo.resolution.map_origin` (patches on the
                map's lattice; ``(0, 0)`` for a plain image), or ``None``: the scene's own
                grid (``grid_anchor="scene"``).
        """
        windows = context_windows(height, width, self.footprint, self.settings.window_overlap)
        overlaps = axis_overlaps(windows.row_starts, windows.patch_height), axis_overlaps(windows.col_starts, windows.patch_width)
        return windows, [self._layout(w, height, width, origin, (overlaps[0][w.row], overlaps[1][w.col])) for w in windows]

    def _on_lattice(self, window: PatchWindow) -> bool:
        """Whether an anchored run lays this window's grid on the map's lattice: not for a
        window within a lattice step of a patch (one patch across it, where the lattice
        would need two), which gets the scene's own grid."""
        return min(window.height, window.width) >= self.patch_size + ANCHOR_STEP

    def _layout(
        self, window: PatchWindow, height: int, width: int, origin: tuple[int, int] | None,
        overlaps: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0)),
    ) -> "WindowLayout":
        """Where a context window's patches and global image lie (see :class:`WindowLayout`).

        Args:
            window: the context window, in the working grid's pixels.
            height: the working grid's rows.
            width: its columns.
            origin: the working grid's :func:`~glgeo.resolution.map_origin`; ``None``: the
                scene's own grid (``grid_anchor="scene"``).
            overlaps: what the window shares with its neighbours, ``((above, below),
                (before, after))`` px (:func:`glgeo.tiling.axis_overlaps` of the windows).
        """
        edges = edge_margins(window, height, width, self.edge_margin)
        lattice_grid = origin is not None and self._on_lattice(window)
        share = self.window_blend_limit
        keep = self.patch_size + (ANCHOR_STEP if lattice_grid else 0)
        cuts = ((0, 0), (0, 0)) if share is None else (
            ceded_sides(*overlaps[0], share, keep, window.height),
            ceded_sides(*overlaps[1], share, keep, window.width),
        )
        ceded = (*cuts[0], *cuts[1])
        if not lattice_grid:
            # the scene's own grid, also for a window within a lattice step of a patch (one
            # patch across it, where the lattice would need two); a ceded side (inside the
            # scene, no edge margin) is a negative margin: the grid starts inside the window
            mt, mb, ml, mr = (edge - cut for edge, cut in zip(edges, ceded))
            grid = PatchGrid.for_scene(window.height + mt + mb, window.width + ml + mr, self.patch_size, self.settings.min_overlap)
            return WindowLayout(window, (mt, mb, ml, mr), grid, ceded=ceded)
        step = self.global_step
        lattice = ANCHOR_STEP * step  # the global image's cells, in working-grid px
        axes = []
        for start, length, reach, shared, (cut0, cut1) in (  # place on the lattice, counted from a lattice point
            (origin[0] + ANCHOR_OFFSET + window.top, window.height, edges[:2], overlaps[0], cuts[0]),
            (origin[1] + ANCHOR_OFFSET + window.left, window.width, edges[2:], overlaps[1], cuts[1]),
        ):
            # a side that shares more than two lattice steps with the neighbouring window may stop
            # short of it where that saves a patch row: the neighbour predicts those pixels alone
            # (this window's taper falls to 0 before them: WindowLayout.weights)
            trim = tuple(n >= 2 * ANCHOR_STEP for n in shared)
            before, after, starts = anchored_axis(start, length, self.patch_size, self.settings.min_overlap, *reach, trim)
            ahead = (start - before) % lattice if step else 0  # the global image starts this far ahead of the grid
            extent = starts[-1] + self.patch_size
            box = step * -(-(ahead + extent) // max(step, 1))  # the global image's length
            if cut0 or cut1:
                # the patches cover what the window keeps; its global image stays the whole window's
                # (two windows that leave a wide overlap's far parts to each other still
                # share its middle: at least the share, or all of a narrower overlap)
                kept = tuple(min(n, share) >= 2 * ANCHOR_STEP for n in shared)
                b, a, s = anchored_axis(start + cut0, length - cut0 - cut1, self.patch_size, self.settings.min_overlap, *reach, kept)
                first = ahead + before + cut0 - b  # the kept grid's first px in the global image's box
                if not step or (0 <= first and first + s[-1] + self.patch_size <= box):
                    before, after, starts, ahead = b - cut0, a - cut1, s, first  # (0 without global cells)
            axes.append((before, after, starts, self.patch_size, ahead, box))
        (bt, at, rows, ph, gt, gh), (bl, al, cols, pw, gl, gw) = axes
        grid = PatchGrid(rows[-1] + ph, cols[-1] + pw, ph, pw, self.settings.min_overlap, rows, cols)
        if not step:  # the window's own global image; G->L crops past its edge see it mirrored
            return WindowLayout(window, (bt, at, bl, al), grid, ceded=ceded)
        context = PatchWindow(window.index, window.row, window.col, window.top - bt - gt, window.left - bl - gl, gh, gw)
        return WindowLayout(window, (bt, at, bl, al), grid, context, (gt, gl), ceded)

    @property
    def window_blend_limit(self) -> int | None:
        """The most px two context windows blend over (:func:`glgeo.tiling.window_share`;
        beyond it a window leaves the far part of an overlap to its neighbour,
        :func:`glgeo.tiling.ceded_sides`), or ``None``: every window computes all its
        patches. Only with the taper: the plain sum keeps the released computation;
        bidirectional mode's L->G pass gives the global branch every patch of the window;
        coarse-to-fine chooses patches from the whole window's global image."""
        if self.settings.blend != "taper" or self.mode == "bidirectional" or self.settings.coarse_to_fine:
            return None
        return window_share(self.footprint, self.settings.window_overlap) if self.footprint else None

    def _run_windows(
        self, windows: PatchGrid, layouts: list["WindowLayout"], reader: SceneReader, sink, scores, stats, tick,
        block=None, score_dtype: str = "uint8",
    ) -> None:
        """Every context window in turn (or a block's: ``layouts`` are the chosen windows'),
        blended into the scene's (block's) rows."""
        passes = 2 if self.mode == "bidirectional" else 1
        # a block's windows blend as a grid of their own: a pixel's sums see the same windows
        # in the same order as in the whole scene's grid, so they are bitwise the same
        tiles = windows if block is None else sub_grid(windows, *block)
        # the rows each row of windows weights (with the taper): a side left to the
        # neighbour is neither carried over nor held for the rows below; the plain sum
        # carries every shared row, as the released rule did
        spans = None
        if self.settings.blend == "taper":
            spans = [(tiles.patch_height, 0)] * tiles.n_rows
            for tile, layout in zip(tiles, layouts):
                first, end = layout.weighted_rows
                spans[tile.row] = (min(spans[tile.row][0], first), max(spans[tile.row][1], end))
        blender = RowBandBlender(
            tiles, self.n_classes, sink, scores=scores, fill_class=0, device=self.device, carry_dtype="float16",
            score_dtype=score_dtype, row_spans=spans,
        )
        # a window's buffer holds the window and its grid, which may reach beyond it or
        # (anchored, a side inside the scene) stop short of it
        rows = max(layout.buffer_shape[0] for layout in layouts)
        cols = max(layout.buffer_shape[1] for layout in layouts)
        window_pixels = WindowAccumulator(rows, cols, self.n_classes, self.device)
        stats.blender_bytes = blender.nbytes + window_pixels.nbytes
        with _Clock(stats.timings, "global_read"):
            stats.stretch = reader.fix_stretch(self.settings.stretch, self.scaling).reported
        taper = self.settings.blend == "taper"
        # a background thread reads every window's global image and patches in the order
        # they are computed, so the next window's reads overlap this window's networks
        # (coarse-to-fine chooses a window's patches from its global branch: read per window);
        # two items more than the batches prefetched, so the next window's nodata check and
        # global image are ready when this window ends (a deeper queue of a few MB)
        ahead = None
        if self.settings.prefetch > 0 and not self.settings.coarse_to_fine:
            ahead = reader.read_ahead(lambda worker: self._window_reads(worker, layouts, passes), self.settings.prefetch + 2)
        try:
            for tile, layout in zip(tiles, layouts):
                before = (stats.computed, stats.skipped_nodata, stats.skipped_c2f, stats.skipped_windows)
                self._blend_window(tile, layout, windows, blender, window_pixels, reader, ahead, stats, tick, taper, passes)
                after = (stats.computed, stats.skipped_nodata, stats.skipped_c2f, stats.skipped_windows)
                stats.window_counts[(layout.window.row, layout.window.col)] = (
                    len(layout.grid), *(b - a for a, b in zip(before, after)))
        finally:
            if ahead is not None:
                ahead.close()
        if not blender.done:
            raise InternalError(f"{blender.patches_added} of {len(tiles)} context windows blended")

    def _window_reads(self, reader: SceneReader, layouts: list["WindowLayout"], passes: int) -> Iterator[Any]:
        """What :meth:`_run_windows` reads, in its order (run in the read-ahead thread, on
        its own ``reader``): per window whether it holds data and, where it does, its
        global image with the seconds it took, then its patch batches and
        :data:`_WINDOW_END` once per pass."""
        for layout in layouts:
            has_data = reader.has_data(layout.window)
            yield has_data
            if not has_data:
                continue
            start = time.perf_counter()
            image = self._read_global(reader, layout)
            yield image, time.perf_counter() - start
            for _ in range(passes):
                for batch in layout.scene_batches(self.batch_size):
                    yield reader.read_patches(batch)
                yield _WINDOW_END

    def _blend_window(
        self, tile: PatchWindow, layout: "WindowLayout", windows: PatchGrid, blender: RowBandBlender,
        window_pixels: WindowAccumulator, reader: SceneReader, ahead: Iterator[Any] | None, stats: InferenceStats,
        tick, taper: bool, passes: int,
    ) -> None:
        """One context window computed (unless it holds no data) and blended into the
        scene's rows."""
        window, margins, grid = layout.window, layout.margins, layout.grid
        has_data = reader.has_data(window) if ahead is None else _wait(ahead, stats.timings)
        if not has_data:  # nodata only: nothing to compute
            stats.skipped_windows += 1
            stats.skipped_nodata += len(grid)
            tick(len(grid) * passes)
            blender.add(tile, None, np.zeros((windows.patch_height, windows.patch_width), dtype=bool))
            return
        window_pixels.reset()
        sy, sx = layout.grid_offset
        add = window_pixels.add
        if sy or sx:  # the grid starts inside the window: grid pixels -> buffer pixels

            def add(patch: PatchWindow, *args, sy=sy, sx=sx) -> None:
                window_pixels.add(replace(patch, top=patch.top + sy, left=patch.left + sx), *args)

        run = _WindowRun(layout, add, taper, self.settings.context_crop == "exact", ahead)
        self._run_window(run, reader, stats, tick)
        with _Clock(stats.timings, "blend", self.device):
            top, left = margins[0] + sy, margins[2] + sx
            inside = (slice(top, top + window.height), slice(left, left + window.width))
            logits, valid, weight = window_pixels.result(layout.weights(windows) if taper else None, inside)
            blender.add(tile, logits, valid, weight)

    def _run_window(self, run: "_WindowRun", reader: SceneReader, stats: InferenceStats, tick, whole_scene: bool = False) -> None:
        """One context window through GLNet: its global image, then its patch passes."""
        timings = stats.timings
        # 1. global branch
        if run.ahead is not None:
            gimg, seconds = _wait(run.ahead, timings)
            timings.global_read += seconds
        else:
            with _Clock(timings, "global_read"):
                gimg = self._read_global(reader, run.layout, whole_scene)
        if whole_scene:
            stats.stretch = reader.stretch.reported if reader.stretch else ""
        global_image = self._tensor(gimg[None])
        with _Clock(timings, "global_network", self.device), autocast(self.device, self.precision):
            if self.mode != "local":
                run.context = self._encode_global(global_image)
        if self.mode != "local" and not _all_finite(run.context):
            with _Clock(timings, "global_network", self.device):
                fp32 = self._in_fp32("the global branch", run, lambda: self._encode_global(global_image))
                run.context = _cast(fp32, self._dtype)

        # 2. which patches go through the local branch
        if self.settings.coarse_to_fine:
            run.wanted = self._coarse_to_fine_patches(run, stats)

        # 3. the passes
        if self.mode == "bidirectional":
            kept = self._l2g_pass(run, reader, stats, tick)
            with _Clock(timings, "global_network", self.device), autocast(self.device, self.precision):
                run.refined = self.model.encode_global_l2g(global_image, run.canvas)
            run.canvas = None
            self._final_pass(run, reader, kept, stats, tick)
        else:
            self._final_pass(run, reader, None, stats, tick)

    def _read_global(self, reader: SceneReader, layout: "WindowLayout", whole_scene: bool = False) -> np.ndarray:
        """A context window's global image (the whole scene's with ``whole_scene``)."""
        height, width = (reader.info.height, reader.info.width) if whole_scene else (layout.window.height, layout.window.width)
        box = layout.context
        if box is None:
            return reader.read_global(
                self.global_shape(height, width), self.settings.stretch, self.scaling,
                window=None if whole_scene else layout.window,
            )[0]
        # anchored: the lattice's box, a whole number of global pixels
        if reader.stretch is None:  # as the whole scene's read would fix it
            measured = isinstance(self.settings.stretch, tuple)  # needs the values for its saturation figure
            reader.fix_stretch(
                self.settings.stretch, self.scaling,
                reader.read_global_raw(self.global_shape(height, width)) if measured else None,
            )
        step = self.global_step
        return reader.read_global((box.height // step, box.width // step), self.settings.stretch, self.scaling, window=box)[0]

    def _coarse_to_fine_patches(self, run: "_WindowRun", stats: InferenceStats) -> set[int]:
        from glgeo.models.coarse_to_fine import relaxed_foreground_box, scale_box

        grid = run.grid
        coarse = run.context.logits[0].float().argmax(dim=0).cpu().numpy() == 1
        box = relaxed_foreground_box(coarse, self.settings.c2f_ratio)
        if box is None:
            log.info("coarse-to-fine: the global branch found no foreground in window %d", run.window.index)
            return set()
        top, left, bottom, right = scale_box(box, coarse.shape, (grid.scene_height, grid.scene_width))
        oy, ox = run.window.top, run.window.left
        scene_box = (top + oy, left + ox, bottom + oy, right + ox)
        stats.c2f_box = scene_box if stats.c2f_box is None else (
            min(stats.c2f_box[0], scene_box[0]), min(stats.c2f_box[1], scene_box[1]),
            max(stats.c2f_box[2], scene_box[2]), max(stats.c2f_box[3], scene_box[3]),
        )  # fmt: skip
        wanted = {w.index for w in grid if w.intersects(top, left, bottom, right)}
        log.info("coarse-to-fine: box %s, %d of %d patches go through the local branch", scene_box, len(wanted), len(grid))
        return wanted

    def _select(self, batch: PatchBatch, wanted: set[int] | None, stats: InferenceStats | None) -> list[int]:
        """Positions in the batch of the patches to compute."""
        has_data = batch.any_valid()
        chosen = []
        for i, window in enumerate(batch.windows):
            if not has_data[i]:
                if stats is not None:
                    stats.skipped_nodata += 1
            elif wanted is not None and window.index not in wanted:
                if stats is not None:
                    stats.skipped_c2f += 1
            else:
                chosen.append(i)
        return chosen

    def _iter_timed(self, run: "_WindowRun", reader: SceneReader, stats: InferenceStats) -> Iterator[PatchBatch]:
        """The window's patch batches (in scene pixels), read ahead, the waits timed."""
        timings = stats.timings
        if run.ahead is not None:  # this pass's batches, then the end of the pass
            while (batch := _wait(run.ahead, timings)) is not _WINDOW_END:
                timings.read += batch.seconds
                yield batch
            return
        wanted = run.wanted
        skip_pixels = None if wanted is None else frozenset(i for i in range(len(run.grid)) if i not in wanted)
        iterator = reader.iter_batches(run.layout.scene_batches(self.batch_size), self.settings.prefetch, skip_pixels=skip_pixels)
        while True:
            start = time.perf_counter()
            try:
                batch = next(iterator)
            except StopIteration:
                return
            timings.read_wait += time.perf_counter() - start
            timings.read += batch.seconds
            yield batch

    def _l2g_pass(self, run: "_WindowRun", reader: SceneReader, stats: InferenceStats, tick) -> "KeptShares | None":
        """Pass 1 of bidirectional inference: local features of every patch -> L->G canvas,
        and each patch's local share of the aggregation kept for pass 2."""
        from glgeo.models import L2GCanvas

        timings = stats.timings
        run.canvas = L2GCanvas.like(run.context)
        reuse = self.settings.l2g_reuse
        stats.l2g_reuse = reuse
        kept = None if reuse == "recompute" else KeptShares(on_disk=reuse == "disk")
        try:
            for batch in self._iter_timed(run, reader, stats):
                chosen = self._select(batch, run.wanted, None)
                if chosen:
                    boxes = run.boxes(batch, chosen)
                    with _Clock(timings, "network", self.device), autocast(self.device, self.precision):
                        local = self.model.encode_local(self._tensor(batch.images[chosen]), boxes, run.context)
                        run.canvas.add(local, boxes)
                        share = self.model.aggregate_local(local.ps3) if kept is not None else None
                    if kept is not None:
                        kept.put(share)
                    del local, share
                tick(len(batch.windows))
        except BaseException:
            if kept is not None:
                kept.close()
            raise
        stats.kept_bytes = max(stats.kept_bytes, kept.nbytes if kept is not None else 0)
        return kept

    def _final_pass(self, run: "_WindowRun", reader: SceneReader, kept: "KeptShares | None", stats, tick) -> None:
        timings = stats.timings
        kept_iter = iter(kept) if kept is not None else None
        try:
            for batch in self._iter_timed(run, reader, stats):
                chosen = self._select(batch, run.wanted, stats)
                logits_px: torch.Tensor | None = None
                if chosen:
                    boxes = run.boxes(batch, chosen)
                    with _Clock(timings, "network", self.device), autocast(self.device, self.precision):
                        logits = self._patch_logits(run, batch, chosen, boxes, kept_iter)
                        logits_px = self._to_patch_pixels(logits, run.grid)
                    if not _all_finite(logits_px):
                        with _Clock(timings, "network", self.device):
                            logits_px = self._in_fp32("the local branch", run, lambda: self._to_patch_pixels(
                                self._patch_logits(run, batch, chosen, boxes, kept_iter), run.grid))
                    stats.computed += len(chosen)
                with _Clock(timings, "blend", self.device):
                    position = {c: k for k, c in enumerate(chosen)}
                    valid = torch.from_numpy(batch.valid).to(self.device, non_blocking=True)
                    for i, window in enumerate(batch.windows):
                        k = position.get(i)
                        run.add(window.index, None if k is None else logits_px[k], valid[i])
                tick(len(batch.windows))
        finally:
            if kept is not None:
                kept.close()

    def _in_fp32(self, what: str, run: "_WindowRun", compute: Callable[[], Any]) -> Any:
        """``compute()`` again in fp32, after it gave non-finite values in the run's reduced
        precision: seen in bf16 on CPUs for views a few pixels wide, where a NaN score gave
        every pixel class 0 without a word. The network's weights (stored in the run's
        precision) and the window's global context are upcast for it; the result comes back
        in the run's dtype. Raises where fp32 gives non-finite values too."""
        # not glgeo's own invariant (InternalError) but what this model does with this scene
        if self.precision != "fp32" and self.mode == "bidirectional":  # its two passes are not redone
            raise InputError(
                f"{what} gave non-finite values (NaN or infinity) in {self.precision}; run this scene with precision='fp32'"
            )
        if self.precision != "fp32":
            if not self._fp32_said:
                log.info("%s gave non-finite values in %s: recomputed in fp32 where it does", what, self.precision)
                self._fp32_said = True
            if self._fp32_model is None:
                self._fp32_model = copy.deepcopy(self.model).float()
            model, context = self.model, run.context
            self.model, run.context = self._fp32_model, _cast(context, torch.float32)
            try:
                result = compute()  # outside the autocast: fp32
            finally:
                self.model, run.context = model, context
            if _all_finite(result):
                return result
        raise InputError(
            f"{what} gave non-finite values (NaN or infinity) in {'fp32' if self.precision == 'fp32' else 'fp32 too'}:"
            " the model's weights or this input break it; check the checkpoint (glgeo models) and the scene's values"
        )

    def _patch_logits(self, run: "_WindowRun", batch, chosen, boxes, kept_iter) -> torch.Tensor:
        from glgeo.models import sample_global

        mode, context = self.mode, run.context
        if mode == "global":
            # read at each patch pixel's exact place on the window's logits: overlapping
            # patches agree, so the window's map is its global logits upsampled once
            return sample_global(context.logits, boxes, self.settings.logit_upsampling)
        if mode == "local":
            return self.model.encode_local(self._tensor(batch.images[chosen]), None, None).logits
        if mode == "g2l":
            return self.model.g2l_logits(self._tensor(batch.images[chosen]), boxes, context)
        # bidirectional pass 2
        if kept_iter is not None:
            local_share = next(kept_iter).to(self.device, non_blocking=True)
            global_share = self.model.aggregate_global(run.refined.ps3, boxes, local_share.shape[-2:])
            return local_share.float() + global_share.float()
        local_ps3 = self.model.encode_local(self._tensor(batch.images[chosen]), boxes, context).ps3
        return self.model.aggregate(local_ps3, run.refined.ps3, boxes)


#: Ends a pass over a window's batches in :meth:`StreamingSegmenter._window_reads`.
_WINDOW_END = object()


def _cast(value: Any, dtype: torch.dtype) -> Any:
    """A network output (a tensor, or a dataclass of tensors and lists of tensors) with its
    floating-point tensors in ``dtype``."""
    if torch.is_tensor(value):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: _cast(getattr(value, f.name), dtype) for f in dataclasses.fields(value) if f.init})
    return value


def _all_finite(value: Any) -> bool:
    """Whether a tensor, or every tensor of a network output (its attributes, lists of
    tensors), is finite."""
    if torch.is_tensor(value):
        return bool(torch.isfinite(value).all()) if value.is_floating_point() else True
    if isinstance(value, (list, tuple)):
        return all(_all_finite(v) for v in value)
    return all(_all_finite(v) for v in vars(value).values()) if hasattr(value, "__dict__") else True


def _wait(ahead: Iterator[Any], timings: Timings) -> Any:
    """The read-ahead thread's next item, the wait counted as ``read_wait``."""
    start = time.perf_counter()
    try:
        return next(ahead)
    except StopIteration:
        raise InternalError("the read-ahead thread ended before the windows did") from None
    finally:
        timings.read_wait += time.perf_counter() - start


def _inside(emit: Callable[[RowBand], None], margins: tuple[int, int, int, int], height: int, width: int):
    """``emit`` for the bands of a grid that reaches ``margins`` beyond a ``height x width``
    scene: each band cut to the scene's rows and columns, rows counted from the scene's."""
    top, _, left, _ = margins
    cols = slice(left, left + width)

    def inside(band: RowBand) -> None:
        first, last = max(band.row_off, top), min(band.row_off + band.height, top + height)
        if last > first:
            rows = slice(first - band.row_off, last - band.row_off)
            scores = None if band.scores is None else band.scores[:, rows, cols]
            emit(RowBand(first - top, band.classes[rows, cols], scores))

    return inside


@dataclass(frozen=True)
class WindowLayout:
    """Where one context window's patches and global image lie.

    Attributes:
        window: the context window, in the working grid's pixels.
        margins: how far the patch grid reaches beyond the window, ``(top, bottom, left,
            right)`` px (edge margins, or an anchored grid's reach to its lattice; negative
            where an anchored grid stops short of a side inside the scene).
        grid: the patch grid, in its own pixels: its pixel 0 lies ``margins[0]`` rows and
            ``margins[2]`` columns before the window's first.
        context: the global image's box in the working grid's pixels (reaching beyond the
            scene where the scene ends: its mirror image), a whole number of global-image
            pixels; ``None``: the window itself (the scene's own grid).
        ahead: how far the global image's box starts before the patch grid, ``(rows, cols)``.
        ceded: px of each side, ``(top, bottom, left, right)``, left to the neighbouring
            window (:func:`glgeo.tiling.ceded_sides`; an anchored grid may stop a few px
            short of or past that: ``margins`` say where it stops).
    """

    window: PatchWindow
    margins: tuple[int, int, int, int]
    grid: PatchGrid
    context: PatchWindow | None = None
    ahead: tuple[int, int] = (0, 0)
    ceded: tuple[int, int, int, int] = (0, 0, 0, 0)

    @property
    def weighted_rows(self) -> tuple[int, int]:
        """``(first, end)``: the window's rows its weights may be above 0 in (those its grid
        covers: :meth:`weights` is 0 on the sides it stops short of)."""
        return max(0, -self.margins[0]), self.window.height - max(0, -self.margins[1])

    @property
    def weighted_cols(self) -> tuple[int, int]:
        """``(first, end)``: the window's columns its weights may be above 0 in."""
        return max(0, -self.margins[2]), self.window.width - max(0, -self.margins[3])

    @property
    def grid_offset(self) -> tuple[int, int]:
        """Where the grid's pixel 0 lies in a buffer that holds the window and its grid:
        ``(rows, cols)`` after the buffer's first, where the grid starts inside the window."""
        return max(0, -self.margins[0]), max(0, -self.margins[2])

    def weights(self, windows: PatchGrid) -> np.ndarray:
        """The window's taper among ``windows`` (:func:`glgeo.tiling.tile_weights`), 0 on the
        sides its grid stops short of."""
        return tile_weights(windows, self.window, tuple(max(0, -m) for m in self.margins))  # type: ignore[arg-type]

    def scene_batches(self, batch_size: int) -> Iterator[list[PatchWindow]]:
        """The window's patches in batches, placed in the scene's pixels for reading (beyond
        the scene's edge where the grid reaches over it)."""
        oy, ox = self.window.top - self.margins[0], self.window.left - self.margins[2]
        for batch in self.grid.batches(batch_size):
            yield [replace(w, top=w.top + oy, left=w.left + ox) for w in batch]

    @property
    def buffer_shape(self) -> tuple[int, int]:
        """``(rows, cols)`` of a buffer holding the window and its grid (:attr:`grid_offset`)."""
        top, bottom, left, right = self.margins
        return (
            max(0, top) + self.window.height + max(0, bottom),
            max(0, left) + self.window.width + max(0, right),
        )


def widest_blend(windows: PatchGrid, layouts: list[WindowLayout]) -> int:
    """The most px two neighbouring context windows both weight (their blend), over the
    scene's ``windows`` and their ``layouts`` (:meth:`StreamingSegmenter.window_layouts`)."""
    widest = 0
    for layout in layouts:
        w = layout.window
        if w.col + 1 < windows.n_cols:
            right = layouts[w.index + 1]
            widest = max(widest, w.left + layout.weighted_cols[1] - right.window.left - right.weighted_cols[0])
        if w.row + 1 < windows.n_rows:
            below = layouts[w.index + windows.n_cols]
            widest = max(widest, w.top + layout.weighted_rows[1] - below.window.top - below.weighted_rows[0])
    return widest


class _WindowRun:
    """The state of one context window's run: where it lies, its patch grid, the global
    branch's outputs, the L->G canvas between the passes, and where its patches go.

    Args:
        layout: the window, its patch grid and its global image's box
            (:class:`WindowLayout`); the grid may reach beyond the window (edge margins,
            an anchored grid): grid pixel 0 lies ``margins[0]`` rows and ``margins[2]``
            columns before the window's first.
        add: ``add(window, logits, valid, weight)`` of the blender the patches go to
            (windows in the grid's own pixels).
        taper: weight patches by :func:`glgeo.tiling.tile_weights` (else plain sums).
        exact: G->L crops at the patches' exact places (``PatchBoxes.exact``).
        ahead: the read-ahead thread's items (:meth:`StreamingSegmenter._window_reads`),
            from this window's global image on; ``None``: the window reads its own.
    """

    def __init__(
        self, layout: WindowLayout, add: Callable, taper: bool, exact: bool = False, ahead: Iterator[Any] | None = None
    ) -> None:
        self.layout = layout
        self.ahead = ahead
        self.window = layout.window
        self.exact = exact
        self.grid = grid = layout.grid
        self.margins = layout.margins
        self._add = add
        self.context = None
        self.refined = None
        self.canvas = None
        self.wanted: set[int] | None = None
        if taper:
            overlaps = axis_overlaps(grid.row_starts, grid.patch_height), axis_overlaps(grid.col_starts, grid.patch_width)
            self._row_taper = [taper_weights(grid.patch_height, *o) for o in overlaps[0]]
            self._col_taper = [taper_weights(grid.patch_width, *o) for o in overlaps[1]]
        self.taper = taper

    def boxes(self, batch: PatchBatch, chosen: list[int]):
        """The chosen patches' boxes in the window's global image (GLNet's G<->L crops):
        in the anchored box, or in the window, where edge margins reach past its edge onto
        its mirror image."""
        from glgeo.models import PatchBoxes

        windows = [self.grid[batch.windows[i].index] for i in chosen]
        box = self.layout.context
        if box is None:
            top, _, left, _ = self.margins
            top, left, height, width = -top, -left, self.window.height, self.window.width
            beyond = any(margin > 0 for margin in self.margins)  # negative: the grid starts inside
        else:
            (top, left), height, width, beyond = self.layout.ahead, box.height, box.width, False
        return PatchBoxes.from_pixels(
            [w.top + top for w in windows],
            [w.left + left for w in windows],
            self.grid.patch_height,
            self.grid.patch_width,
            height,
            width,
            beyond=beyond,
            exact=self.exact,
        )

    def add(self, index: int, logits: torch.Tensor | None, valid: torch.Tensor) -> None:
        """Blend patch ``index``'s logits (``None``: not computed) into the window (in the
        grid's pixels)."""
        window = self.grid[index]
        weight = None
        if self.taper and logits is not None:
            weight = self._row_taper[window.row][:, None] * self._col_taper[window.col][None, :]
        self._add(window, logits, valid, weight)


class KeptShares:
    """Bidirectional pass-1 results (one tensor per batch) kept in order for pass 2.

    On disk they go to an anonymous temporary file (under ``TMPDIR``; removed by the OS
    when closed, even after a crash), written as pass 1 goes and read back in the same
    order, so resident memory does not depend on the scene's size.

    Args:
        on_disk: keep them in a temporary file, else in memory.
    """

    def __init__(self, on_disk: bool = True) -> None:
        self._file = tempfile.TemporaryFile(prefix="glgeo-pass1-") if on_disk else None
        self._items: list = []  # tensors in memory, (shape, dtype) on disk
        self.nbytes = 0

    def put(self, tensor: torch.Tensor) -> None:
        """Keep one batch's tensor (copied to the CPU)."""
        tensor = tensor.detach().to("cpu").contiguous()
        self.nbytes += tensor.numel() * tensor.element_size()
        if self._file is None:
            self._items.append(tensor)
            return
        try:
            self._file.write(tensor.reshape(-1).view(torch.uint8).numpy().data)
        except OSError as exc:
            raise OutputError(
                f"cannot keep bidirectional pass-1 results in a temporary file ({exc}); free space in "
                f"{tempfile.gettempdir()}, point TMPDIR to a roomier folder, or recompute them (l2g_reuse='recompute')"
            ) from None
        self._items.append((tensor.shape, tensor.dtype))

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self._file is None:
            yield from self._items
            return
        self._file.flush()
        self._file.seek(0)
        for shape, dtype in self._items:
            buffer = bytearray(math.prod(shape) * dtype.itemsize)
            if self._file.readinto(buffer) != len(buffer):
                raise OutputError("the temporary file of bidirectional pass-1 results was truncated")
            yield torch.frombuffer(buffer, dtype=dtype).reshape(shape)

    def close(self) -> None:
        """Drop what is kept (the temporary file is deleted)."""
        self._items = []
        if self._file is not None:
            self._file.close()

