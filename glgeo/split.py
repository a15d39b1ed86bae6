"""One scene over many processes: blocks of context windows, segmented apart, assembled into
the raster :func:`glgeo.segment` writes in one process, pixel for pixel.

A scene larger than the model's context footprint is cut into context windows
(:func:`glgeo.tiling.window_grid`); :func:`plan_split` groups them into *blocks*
(``rows x cols`` windows; by default strips of window rows, the scene's full width). Each
block owns a rectangle of the scene (its *box*) and :func:`write_block` computes every
context window that touches it, blends them with the engine's own blender on a grid of
just those windows (:func:`glgeo.tiling.sub_grid`) and writes the box's final class ids
(and scores) to a block file. A pixel's blended logits depend only on the windows covering
it and the order they are added in, and a block adds every window covering its box in
the whole scene's order, so its pixels are bitwise those of the one-process run, float16
carry of the window overlaps included. The price: the row (column) of windows at each
boundary between blocks is computed by both blocks, a fraction ``1/rows`` (``1/cols``)
more work per split axis (``SplitPlan.overhead``; measured in ``docs/batch.md``).
Exchanging the overlap margins instead would save that work but needs the
float32/float16 partial sums per window row, ``(classes + 1) x 4`` bytes per margin pixel,
and a second blending pass in the assembler.

A model run on a coarser working grid (``scale`` below 1) puts its working pixels back on
the scene's grid by bilinear interpolation (:class:`glgeo.blend.ToSceneGrid`), which reads
one working pixel beyond a box: the boxes are chosen so that this pixel is still covered
only by the block's windows (a block boundary lies one working pixel above the first row
of the next window row), and the block hands its box to ``ToSceneGrid``.

:func:`assemble` streams the block files, band by band, into the same writer as
:func:`glgeo.segment` (:class:`glgeo.writer.ClassRasterWriter`: a staged GTiff, then one
COG conversion, sidecars). Scheduling the blocks (Dask, retries, resuming) is
:mod:`glgeo.batch.split`'s.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import re
import secrets
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from .aoi import region_in_pixels
from .areas import AreaTally, PixelAreas
from .atomic import check_raster_complete
from .blend import WORKING_SCORE_DTYPE, RowBand, ToSceneGrid, first_working_pixel
from .errors import CheckpointError, InputError, InternalError, OutputError
from .inference import InferenceSettings, InferenceStats, StreamingSegmenter, context_windows
from .io import (
    SceneInfo, SceneReader, check_global_resampling, inspect_scene, read_error_detail, working_grid,
)
from .resolution import Scale, coarseness, run_scale
from .tiling import PatchGrid

log = logging.getLogger(__name__)

#: Window rows per block when not told: about 25 % of duplicated windows (see the module doc).
DEFAULT_BLOCK_ROWS = 4

#: Rows per strip of a block file (whole strips are written, each compressed once).
_STRIP_ROWS = 64


@dataclass(frozen=True)
class Block:
    """One block of a split scene.

    Attributes:
        index: position in the plan (row-major).
        row: block row.
        col: block column.
        window_rows: ``(start, stop)`` of the context-window rows it computes.
        window_cols: ``(start, stop)`` of the context-window columns it computes.
        box: ``(top, left, bottom, right)`` scene pixels it writes (boxes tile the scene).
        reads: ``(top, left, bottom, right)`` working pixels its box is made from (on a
            coarser working grid; else the box itself).
    """

    index: int
    row: int
    col: int
    window_rows: tuple[int, int]
    window_cols: tuple[int, int]
    box: tuple[int, int, int, int]
    reads: tuple[int, int, int, int]

    @property
    def name(self) -> str:
        """``block-RRR-CCC``: its file's stem."""
        return f"block-{self.row:03d}-{self.col:03d}"

    @property
    def windows(self) -> int:
        """Context windows it computes."""
        return (self.window_rows[1] - self.window_rows[0]) * (self.window_cols[1] - self.window_cols[0])

    @property
    def height(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def width(self) -> int:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class SplitPlan:
    """A scene cut into blocks.

    Attributes:
        scene: ``(rows, cols)`` of the scene.
        working: ``(rows, cols)`` of the grid the model runs on.
        windows: ``(rows, cols)`` of the scene's context windows.
        blocks: the blocks, row-major.
    """

    scene: tuple[int, int]
    working: tuple[int, int]
    windows: tuple[int, int]
    blocks: tuple[Block, ...]

    @property
    def block_rows(self) -> int:
        return 1 + max(b.row for b in self.blocks)

    @property
    def block_cols(self) -> int:
        return 1 + max(b.col for b in self.blocks)

    @property
    def windows_computed(self) -> int:
        """Context windows the blocks compute, those at block boundaries twice."""
        return sum(b.windows for b in self.blocks)

    @property
    def overhead(self) -> float:
        """Windows computed per window of the scene (1: none computed twice)."""
        return self.windows_computed / (self.windows[0] * self.windows[1])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _axis_blocks(starts: tuple[int, ...], size: int, working: int, scene: int, per_block: int):
    """Per block along one axis: ``(window start, window stop, scene start, scene stop,
    working start, working stop)``."""
    n = len(starts)
    groups = math.ceil(n / per_block)
    sizes = [n // groups + (1 if i < n % groups else 0) for i in range(groups)]
    first = np.cumsum([0] + sizes)[:-1]
    low = first_working_pixel(working, scene)
    # a boundary one working pixel above the next window row: the pixel below a box's last
    # one (bilinear's second tap) is then covered by no window of the next row
    scene_cuts = [0] + [int(np.searchsorted(low, starts[g] - 1)) for g in first[1:]] + [scene]
    scene_cuts = sorted(set(scene_cuts))  # tiny footprints can make neighbours meet
    out = []
    for top, bottom in zip(scene_cuts, scene_cuts[1:]):
        reads = (int(low[top]), min(int(low[bottom - 1]) + 2, working))
        covering = [i for i, s in enumerate(starts) if s < reads[1] and s + size > reads[0]]
        out.append((covering[0], covering[-1] + 1, top, bottom, *reads))
    return out


def plan_split(
    windows: PatchGrid, scene: tuple[int, int], rows_per_block: int = DEFAULT_BLOCK_ROWS, cols_per_block: int | None = None
) -> SplitPlan:
    """Group a scene's context windows into blocks.

    Args:
        windows: the scene's context windows, on the working grid
            (:func:`glgeo.inference.context_windows`).
        scene: ``(rows, cols)`` of the scene (the working grid's when read at full
            resolution).
        rows_per_block: context-window rows per block (the last blocks may have fewer, the
            rows spread evenly).
        cols_per_block: context-window columns per block; ``None``: all (strips of the
            scene's full width).

    Raises:
        InputError: fewer than one window per block.
    """
    if rows_per_block < 1 or (cols_per_block is not None and cols_per_block < 1):
        raise InputError(f"a block needs at least one window row and column, got {rows_per_block} x {cols_per_block}")
    working = (windows.scene_height, windows.scene_width)
    rows = _axis_blocks(windows.row_starts, windows.patch_height, working[0], scene[0], rows_per_block)
    cols = _axis_blocks(windows.col_starts, windows.patch_width, working[1], scene[1], cols_per_block or windows.n_cols)
    blocks = []
    for i, (r0, r1, top, bottom, rtop, rbottom) in enumerate(rows):
        for j, (c0, c1, left, right, rleft, rright) in enumerate(cols):
            blocks.append(Block(len(blocks), i, j, (r0, r1), (c0, c1), (top, left, bottom, right), (rtop, rleft, rbottom, rright)))
    return SplitPlan(scene, working, (windows.n_rows, windows.n_cols), tuple(blocks))


# --------------------------------------------------------------------- the scene's setup


@dataclass(frozen=True)
class SplitScene:
    """A scene prepared for splitting, as :func:`glgeo.segment` prepares it.

    Attributes:
        info: the scene (its area of interest as a region, if any).
        scale: the fraction of its resolution the model reads it at (``(rows, cols)``
            where each axis is read at its own).
        settings: the inference settings (mode resolved).
        plan: its blocks.
        windows: its context windows on the working grid (to plan other blocks).
    """

    info: SceneInfo
    scale: Scale
    settings: InferenceSettings
    plan: SplitPlan
    windows: PatchGrid


def prepare_scene(
    scene: str | os.PathLike,
    checkpoint: Any,
    *,
    bands: tuple[int, ...] | None = None,
    settings: InferenceSettings = InferenceSettings(),
    scheme: str | None = None,
    aoi: Any = None,
    bounds: tuple[float, float, float, float] | None = None,
    rows_per_block: int = DEFAULT_BLOCK_ROWS,
    cols_per_block: int | None = None,
) -> SplitScene:
    """Check a scene and a model as :func:`glgeo.segment` does and plan the blocks.

    Raises:
        SceneError: the scene is missing or unreadable.
        InputError: bad bands or settings, a model/scheme mismatch.
        UnknownNameError: ``scheme`` names no class scheme glgeo knows.
        CheckpointError: the model's classes do not match its scheme.
    """
    from .segmentation import MODEL_BANDS, check_model_scheme, model_bands, warn_of_the_scene

    info = inspect_scene(scene, bands or model_bands(checkpoint), needed=MODEL_BANDS)
    region = region_in_pixels(info, aoi=aoi, bounds=bounds)
    if region is not None:
        info = replace(info, has_mask=True, region=region)
    check_model_scheme(checkpoint, scheme)
    if checkpoint.scheme.n_classes != checkpoint.model.config.n_classes:
        raise CheckpointError(
            f"model predicts {checkpoint.model.config.n_classes} classes but its scheme "
            f"{checkpoint.scheme.name!r} has {checkpoint.scheme.n_classes}"
        )
    check_global_resampling(info, settings.global_resampling)  # before any block, not in each
    scale = run_scale(checkpoint, info, settings.scale, settings.gsd)
    warn_of_the_scene(info, checkpoint, settings, scale)
    if settings.mode is None:
        settings = replace(settings, mode=checkpoint.mode)
    grid = working_grid(info, scale)
    footprint = checkpoint.footprint if settings.footprint is None else (settings.footprint or None)
    windows = context_windows(grid.height, grid.width, footprint, settings.window_overlap)
    plan = plan_split(windows, (info.height, info.width), rows_per_block, cols_per_block)
    return SplitScene(info, scale, settings, plan, windows)


# ------------------------------------------------------------------------ block files


#: A block file's metadata item: how its block was computed (mode, precision, device), for
#: the summary and provenance of a run that keeps every block from an earlier run.
BLOCK_RUN_TAG = "GLGEO_BLOCK_RUN"


def block_run(path: Path) -> dict[str, str]:
    """How the block in ``path`` was computed (``mode``, ``precision``, ``device``); empty for
    a block file written before glgeo recorded it."""
    import json

    with rasterio.open(path) as src:
        try:
            run = json.loads(src.tags().get(BLOCK_RUN_TAG, "{}"))
        except ValueError:
            return {}
    return {k: str(v) for k, v in run.items() if k in ("mode", "precision", "device")} if isinstance(run, dict) else {}


def block_path(folder: Path, block: Block) -> Path:
    """Where a finished block's file lies."""
    return folder / f"{block.name}.tif"


def remove_block_partials(folder: Path, block: Block) -> int:
    """Remove what an interrupted attempt at ``block`` left (``.block-RRR-CCC.*.part.tif``)."""
    pattern = re.compile(rf"^\.{re.escape(block.name)}\.[0-9a-f]+\.part\.tif$")
    removed = 0
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if pattern.match(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


class _BlockFile:
    """A block's class ids (band 1) and scores (bands 2...), written in whole strips to a
    temporary GTiff and renamed when complete."""

    def __init__(self, final: Path, block: Block, n_scores: int) -> None:
        self.final = final
        self.block = block
        self.path = final.with_name(f".{block.name}.{secrets.token_hex(4)}.part.tif")
        self.count = 1 + n_scores
        rows = min(_STRIP_ROWS, block.height)
        profile = dict(driver="GTiff", width=block.width, height=block.height, count=self.count, dtype="uint8",
                       blockysize=rows, compress="DEFLATE", zlevel=1, bigtiff="IF_SAFER")
        with warnings.catch_warnings():  # block files are plain pixel arrays
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            self.dst = rasterio.open(self.path, "w", **profile)
        self._buf = np.empty((self.count, rows, block.width), dtype=np.uint8)
        self._filled = 0
        self._row = 0  # block row of the buffer's first row

    def add(self, band: RowBand) -> None:
        """Add the next rows of the box (scene rows, the box's columns)."""
        top = self.block.box[0]
        if band.row_off != top + self._row + self._filled:
            raise InternalError(f"block rows out of order: expected scene row {top + self._row + self._filled}, got {band.row_off}")
        if self.count > 1 and band.scores is None:
            raise InternalError("a block with scores got a band without")
        pos = 0
        while pos < band.height:
            strip = min(self._buf.shape[1], self.block.height - self._row)
            take = min(band.height - pos, strip - self._filled)
            self._buf[0, self._filled : self._filled + take] = band.classes[pos : pos + take]
            if self.count > 1:
                self._buf[1:, self._filled : self._filled + take] = band.scores[:, pos : pos + take]
            self._filled += take
            pos += take
            if self._filled == strip:
                self.dst.write(self._buf[:, :strip], window=Window(0, self._row, self.block.width, strip))
                self._row += strip
                self._filled = 0

    def commit(self) -> None:
        self.dst.close()
        if self._row != self.block.height:
            raise InternalError(f"{self.block.name}: {self._row} of {self.block.height} rows written")
        check_raster_complete(self.path, self.final)  # a full disk: GDAL does not raise
        os.replace(self.path, self.final)

    def discard(self) -> None:
        self.dst.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def _crop(band: RowBand, rows: tuple[int, int], cols: tuple[int, int]) -> RowBand | None:
    """The part of ``band`` (row_off and columns already in the target's pixels) in
    ``[rows) x [cols)``, its row_off unchanged in meaning; ``None`` if empty."""
    top, bottom = max(band.row_off, rows[0]), min(band.row_off + band.height, rows[1])
    if bottom <= top:
        return None
    r = slice(top - band.row_off, bottom - band.row_off)
    c = slice(cols[0], cols[1])
    scores = None if band.scores is None else band.scores[:, r, c]
    return RowBand(top, band.classes[r, c], scores)


def write_block(
    split: SplitScene,
    block: Block,
    checkpoint: Any,
    folder: Path,
    *,
    probabilities: bool = False,
    settings: InferenceSettings | None = None,
    tta: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> InferenceStats:
    """Segment one block into its file in ``folder`` (written under a temporary name,
    renamed when complete).

    Args:
        split: the prepared scene.
        block: one of its plan's blocks.
        checkpoint: the loaded model.
        folder: the blocks' folder.
        probabilities: also keep the per-class scores.
        settings: the settings to run with (device, threads of this worker); default the
            scene's.
        tta: test-time augmentation (:func:`glgeo.segment`'s ``tta``).
        progress: ``progress(done, total)`` patch steps.

    Returns:
        What the engine did.
    """
    info, settings = split.info, settings or split.settings
    network = checkpoint.model
    if tta:
        from .tta import FlipRotateTTA

        network = FlipRotateTTA(network)
    engine = StreamingSegmenter(
        network, settings, patch_size=checkpoint.patch_size, global_size=checkpoint.global_size,
        scaling=(checkpoint.input_scaling.min, checkpoint.input_scaling.max), footprint=checkpoint.footprint,
        coarseness=coarseness(checkpoint, info.gsd if info.gsd is not None else settings.gsd, split.scale),
    )  # fmt: skip
    top, left, bottom, right = block.box
    rtop, rleft, rbottom, rright = block.reads
    n_scores = checkpoint.scheme.n_classes if probabilities else 0
    with rasterio.Env(GDAL_CACHEMAX=settings.gdal_cache_mb * 2**20):
        out = _BlockFile(block_path(folder, block), block, n_scores)
        try:
            with SceneReader(info, scale=split.scale, nodata_fill=settings.nodata_fill,
                             global_resampling=settings.global_resampling) as reader:
                grid = reader.info
                if (grid.height, grid.width) != split.plan.working:
                    raise InternalError(f"{block.name}: the scene or the model changed since the split was planned")
                with_scores = probabilities
                score_dtype = "uint8"
                sink: Callable[[RowBand], None] = out.add
                if grid is not info:  # as glgeo.segment: scores interpolated onto the scene's grid
                    score_dtype = WORKING_SCORE_DTYPE
                    sink = ToSceneGrid(
                        (grid.height, grid.width), (info.height, info.width), sink,
                        reader.read_source_valid if reader.source_may_be_invalid else None,
                        interpolation=settings.logit_upsampling, scores=probabilities, box=block.box,
                        score_dtype=score_dtype,
                    )  # fmt: skip
                    with_scores = probabilities or settings.logit_upsampling == "bilinear"
                    rows, cols = (rtop, rbottom), (rleft, rright)
                else:
                    rows, cols = (top, bottom), (left, right)
                windows = context_windows(grid.height, grid.width, engine.footprint, settings.window_overlap)
                origin = (windows.row_starts[block.window_rows[0]], windows.col_starts[block.window_cols[0]])
                target = sink

                def block_sink(band: RowBand) -> None:
                    # block pixels -> working pixels; keep the rows and columns the box needs
                    placed = RowBand(band.row_off + origin[0], band.classes, band.scores)
                    part = _crop(placed, rows, (cols[0] - origin[1], cols[1] - origin[1]))
                    if part is not None:
                        target(part)

                whole = len(windows) == 1
                stats = engine.run(
                    reader, sink if whole else block_sink, scores=with_scores,
                    progress=progress, block=None if whole else (range(*block.window_rows), range(*block.window_cols)),
                    score_dtype=score_dtype,
                )
            import json

            out.dst.update_tags(**{BLOCK_RUN_TAG: json.dumps(
                {"mode": stats.mode, "precision": stats.precision, "device": stats.device, "stretch": stats.stretch})})
            out.commit()
        except BaseException:
            out.discard()
            raise
    return stats


# ------------------------------------------------------------------------- assembling


def iter_scene_bands(plan: SplitPlan, folder: Path, rows: int = 256) -> Iterator[RowBand]:
    """The scene's final rows, top to bottom, read from the finished block files
    (``rows`` at a time across the scene's width)."""
    for block_row in range(plan.block_rows):
        blocks = [b for b in plan.blocks if b.row == block_row]
        sources = []
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                for b in blocks:
                    with _block_read(block_path(folder, b)):
                        sources.append(rasterio.open(block_path(folder, b)))
            top, bottom = blocks[0].box[0], blocks[0].box[2]
            for start in range(top, bottom, rows):
                n = min(rows, bottom - start)
                parts = []
                for b, src in zip(blocks, sources):
                    with _block_read(block_path(folder, b)):
                        parts.append(src.read(window=Window(0, start - top, src.width, n)))
                data = np.concatenate(parts, axis=2)
                yield RowBand(start, data[0], data[1:] if data.shape[0] > 1 else None)
        finally:
            for src in sources:
                src.close()


@contextlib.contextmanager
def _block_read(path: Path) -> Iterator[None]:
    """A finished block file that cannot be read (damaged since it was written) as an error
    that says how to have it computed again, not a traceback on every rerun."""
    try:
        yield
    except rasterio.errors.RasterioIOError as exc:
        detail = read_error_detail(exc)
        raise OutputError(
            f"the finished block {str(path)!r} cannot be read ({detail}); delete it and run the same command again:"
            " that block is computed again"
        ) from None


@dataclass
class AssemblyResult:
    """What :func:`assemble` wrote: pixels and areas per class, seconds and files."""

    tally: AreaTally
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)

    @property
    def counts(self) -> np.ndarray:
        """Pixels per class id (256 entries, nodata at :data:`~glgeo.schemes.NODATA_ID`)."""
        return self.tally.counts


def assemble(
    split: SplitScene,
    folder: Path,
    out: Path,
    scheme: Any,
    *,
    scores_out: Path | None = None,
    output_options: Any = None,
    tags: dict[str, str] | None = None,
) -> AssemblyResult:
    """Write the class raster (and scores) from the finished block files, as
    :func:`glgeo.segment` writes it (same writer, same COG conversion and sidecars).

    Raises:
        OutputError: a block file is missing, or the output cannot be written.
    """
    from .writer import ClassRasterWriter, OutputOptions

    missing = [b.name for b in split.plan.blocks if not block_path(folder, b).is_file()]
    if missing:
        raise OutputError(f"{len(missing)} blocks are not finished ({', '.join(missing[:3])}...); run the split again")
    started = time.perf_counter()
    info = split.info
    pixel_areas = PixelAreas(info.crs, info.transform, info.width, info.height)
    pixel_areas.report(log, str(info.path))
    tally = AreaTally(pixel_areas)  # as glgeo.segment counts
    with rasterio.Env(GDAL_CACHEMAX=split.settings.gdal_cache_mb * 2**20), ClassRasterWriter(
        out, split.info, scheme, scores_out, output_options or OutputOptions()
    ) as writer:
        for band in iter_scene_bands(split.plan, folder):
            tally.add(band.classes, band.row_off)
            writer.write(band)
        if tags:
            writer.set_tags(tags)
        outputs = writer.commit()
    return AssemblyResult(tally, time.perf_counter() - started, outputs)
