"""Writing class rasters: window by window to a tiled GTiff, then a Cloud Optimized GeoTIFF.

The class raster is single-band on exactly the input's grid (size, CRS, transform), with
the scheme's colour table embedded and QGIS/GDAL sidecars (``.qml`` default style,
``.aux.xml`` category names and attribute table) from :func:`glgeo.styles.write_raster_sidecars`,
and ``.qmd`` QGIS layer metadata (:func:`glgeo.styles.write_raster_metadata`).
GeoTIFFs and COGs are packed into :func:`~glgeo.schemes.class_raster_bits` bits per pixel
(GDAL's NBITS: 3 for DeepGlobe, 2 for Inria) with nodata the largest value those bits hold
(:func:`~glgeo.schemes.class_raster_nodata`: 7, 3), so that the colour table, which has one
entry per value, lists the classes plus nodata; other formats are 8-bit with nodata 255.
In memory, nodata is :data:`~glgeo.schemes.NODATA_ID` (255) whatever the file holds:
:meth:`ClassRasterWriter.write` maps it, and readers map the file's declared nodata back.

Rows arrive in bands as the blender finalises them. They are gathered into whole rows of
output tiles (a ``block x width`` buffer) and written to a temporary tiled, compressed
GTiff, so each tile is compressed once and memory holds one row of tiles. When the last row is in, the GTiff is
copied to a COG (GDAL's COG driver ``CreateCopy`` streams from the GTiff; only creating a
COG dataset directly would buffer the whole raster) with MODE overviews for classes and
AVERAGE overviews for scores. Every file of the output (tif and sidecars) is written under
a temporary name in the output's folder and renamed when complete, sidecars first and the
tif last, so "the tif exists" means "the output is complete"; a failure removes them all.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

import numpy as np
import rasterio
import rasterio.shutil
from rasterio._err import CPLE_BaseError  # what GDAL's own failures raise (rasterio has no public name for it)
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from .atomic import check_raster_complete, disk_space, remove_quietly, unwritable_folder_error
from .blend import RowBand
from .errors import InputError, OutputError
from .io import SceneInfo
from .schemes import NODATA_ID, ClassScheme, class_raster_bits, class_raster_nodata

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputOptions:
    """How output rasters are laid out.

    Attributes:
        block_size: tile side of the GTiff and COG.
        compress: GDAL compression of the COG.
        cog: convert a ``.tif`` to a Cloud Optimized GeoTIFF with overviews (else keep
            the tiled GTiff).
        class_overviews: resampling of the class raster's overviews (``MODE`` keeps real
            class ids; ``NEAREST`` is faster).
        score_overviews: resampling of the score raster's overviews.
        format: the GDAL driver (``COG``, ``GTiff``, ``PNG``, ``HFA``); ``None``: from the
            output's extension (``.tif``: COG, or GTiff without ``cog``; ``.png``: PNG;
            ``.img``: HFA). See :func:`output_driver`.
        creation_options: GDAL creation options of the final file (``{"COMPRESS": "ZSTD"}``),
            over glgeo's defaults; keys are case-insensitive. ``NBITS`` sets the bits per
            pixel of a GeoTIFF/COG class raster (its nodata is then ``2**NBITS - 1``;
            ``NBITS=8``: 255) and is not applied to the score raster, which needs 8.
    """

    block_size: int = 512
    compress: str = "DEFLATE"
    cog: bool = True
    class_overviews: Literal["MODE", "NEAREST"] = "MODE"
    score_overviews: Literal["AVERAGE", "NEAREST", "MODE"] = "AVERAGE"
    format: str | None = None
    creation_options: Mapping[str, str] | tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if self.block_size < 16 or self.block_size % 16:
            raise InputError(f"block_size must be a multiple of 16, got {self.block_size}")
        items = self.creation_options.items() if isinstance(self.creation_options, Mapping) else self.creation_options
        try:
            options = tuple((str(k).upper(), str(v)) for k, v in items)
        except (TypeError, ValueError):
            raise InputError(
                f"creation_options must map GDAL option names to values, got {self.creation_options!r}"
            ) from None
        if any(not k or "=" in k for k, _ in options):
            raise InputError(f"creation_options names an empty or malformed option: {dict(options)}")
        object.__setattr__(self, "creation_options", options)


#: Drivers glgeo writes rasters with, and what they are called.
WRITABLE_FORMATS = {
    "COG": "Cloud Optimized GeoTIFF (.tif)",
    "GTiff": "GeoTIFF (.tif)",
    "PNG": "PNG (.png, georeferencing in its .aux.xml)",
    "HFA": "Erdas Imagine (.img)",
}

#: Extension -> driver, for outputs named without ``format``.
_EXTENSION_FORMATS = {".tif": "GTiff", ".tiff": "GTiff", ".png": "PNG", ".img": "HFA"}

#: Lossy drivers: their compression changes class ids.
_LOSSY = {"JPEG": ".jpg", "WEBP": ".webp", "JP2OPENJPEG": ".jp2"}


def output_driver(path: str | os.PathLike, options: OutputOptions = OutputOptions(), bands: int = 1) -> str:
    """The GDAL driver an output raster is written with: ``options.format``, else its extension.

    Args:
        path: the output file.
        options: the output options (``format``, ``cog``).
        bands: bands of the raster (PNG holds at most 4).

    Raises:
        InputError: the format is unknown, lossy (JPEG would change class ids), cannot hold
            the raster, or the extension names no format glgeo writes.
    """
    out = Path(path)
    choices = "; ".join(f"{name}: {text}" for name, text in WRITABLE_FORMATS.items())
    if options.format is not None:
        by_name = {name.upper(): name for name in WRITABLE_FORMATS}
        driver = by_name.get(str(options.format).upper())
        if driver is None:
            lossy = " (lossy: its compression would change class ids)" if str(options.format).upper() in _LOSSY else ""
            raise InputError(f"format={options.format!r} is not one glgeo writes{lossy}; choose from {choices}")
        named = _EXTENSION_FORMATS.get(out.suffix.lower())
        if named is not None and named != driver and {named, driver} != {"GTiff", "COG"}:
            raise InputError(
                f"format={options.format!r} does not match the extension of {str(out)!r} ({named}):"
                " name the file after its format, or leave the format to the extension"
            )
    else:
        suffix = out.suffix.lower()
        driver = _EXTENSION_FORMATS.get(suffix)
        if driver is None:
            if suffix in _LOSSY.values() or suffix == ".jpeg":
                reason = f"{suffix} is a lossy format: its compression would change class ids"
            elif suffix:
                reason = f"glgeo writes no {suffix} rasters"
            else:
                reason = "it has no extension"
            raise InputError(
                f"output {str(out)!r}: {reason}; name it .tif (or .png, .img), or give its format (format=NAME: {choices})"
            )
    if driver == "GTiff" and options.cog and options.format is None:
        driver = "COG"
    if driver == "PNG" and bands > 4:
        raise InputError(f"output {str(out)!r}: a PNG holds at most 4 bands, this raster has {bands}; write it as .tif")
    _check_creation_options(driver, options)
    return driver


class _GdalComplaints(logging.Handler):
    """Collects what GDAL says of creation options (rasterio logs GDAL's warnings)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.said: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if "creation option" in text or "value not recognised" in text:
            self.said.append(text.split(" in ", 1)[-1].rstrip(". "))


def _check_creation_options(driver: str, options: OutputOptions, bits: int = 8) -> None:
    """See :func:`_gdal_refuses`: tried once per driver, options and bits in a process."""
    if any(k != "NBITS" for k, _ in options.creation_options):
        _gdal_refuses(driver, options.creation_options, bits)


@functools.lru_cache(maxsize=32)
def _gdal_refuses(driver: str, creation_options: tuple[tuple[str, str], ...], bits: int) -> None:
    """Refuse, before any work, creation options ``driver`` does not know or values it does
    not take: GDAL only warns of them and writes the file without (``COMPRESS=NOPE`` wrote
    it uncompressed), or fails once the raster is computed (``PREDICTOR=2`` with a class
    raster packed in 2 bits). Tried on a tiny in-memory raster of ``bits`` per pixel.
    ``NBITS`` itself is checked apart (:func:`class_raster_file_bits`)."""
    user = {k: v for k, v in creation_options if k != "NBITS"}
    if bits < 8:
        user["NBITS"] = str(bits)
    source, target = f"/vsimem/glgeo-co-{secrets.token_hex(4)}.tif", f"/vsimem/glgeo-co-{secrets.token_hex(4)}"
    complaints = _GdalComplaints()
    gdal_log = logging.getLogger("rasterio._env")
    # heard whatever level a caller set for rasterio, and said only in the error below
    level, propagate = gdal_log.level, gdal_log.propagate
    gdal_log.setLevel(logging.WARNING)
    gdal_log.propagate = False
    gdal_log.addHandler(complaints)
    try:
        with rasterio.open(source, "w", driver="GTiff", width=16, height=16, count=1, dtype="uint8") as dst:
            dst.write(np.zeros((1, 16, 16), dtype=np.uint8))
        rasterio.shutil.copy(source, target, driver=driver, **user)
    except (RasterioIOError, rasterio.errors.RasterioError, CPLE_BaseError) as exc:
        complaints.said.append(str(exc).split(": ", 1)[-1].rstrip(". "))  # without the temporary file's name
    finally:
        gdal_log.removeHandler(complaints)
        gdal_log.setLevel(level)
        gdal_log.propagate = propagate
        for path in (source, target):
            with contextlib.suppress(Exception):
                rasterio.shutil.delete(path)
    if complaints.said:
        given = " ".join(f"{k}={v}" for k, v in user.items() if k != "NBITS" or bits == 8)
        packed = f" (the class raster is packed in {bits} bits: creation_options NBITS=8 writes whole bytes)" if bits < 8 else ""
        raise InputError(
            f"creation_options {given}: GDAL's {driver} driver says: {'; '.join(dict.fromkeys(complaints.said))}{packed};"
            f" see https://gdal.org/drivers/raster/{driver.lower()}.html for its options"
        )


#: Drivers whose class rasters are packed into :func:`~glgeo.schemes.class_raster_bits` bits.
PACKED_FORMATS = ("COG", "GTiff")

#: Below this much free space in the output's folder, a class or score raster being written
#: stops with an error at its next row of tiles (:meth:`_StagedRaster._stop_if_the_disk_is_full`).
FULL_DISK_STOP_BYTES = 1 << 20

#: The band scale of a score raster: its uint8 values are softmax scores x 255, so GDAL
#: and QGIS (which apply a band's scale) read scores of 0 to 1.
SCORE_SCALE = 1 / 255


def class_raster_file_bits(driver: str, scheme: ClassScheme, options: OutputOptions = OutputOptions()) -> int:
    """Bits per pixel of a class raster written with ``driver``: ``NBITS`` of the creation
    options if given, else :func:`~glgeo.schemes.class_raster_bits` for GeoTIFF and COG,
    and 8 for the other formats. Its nodata is :func:`~glgeo.schemes.class_raster_nodata`.

    Raises:
        InputError: ``NBITS`` is not a number of bits, cannot hold the classes plus nodata,
            or is below 8 for a format other than GeoTIFF/COG.
    """
    given = dict(options.creation_options).get("NBITS")
    if given is None:
        return class_raster_bits(scheme) if driver in PACKED_FORMATS else 8
    try:
        bits = int(given)
    except ValueError:
        bits = 0
    fewest = scheme.n_classes.bit_length()  # ids 0..n-1 plus nodata n or above
    if not 1 <= bits <= 8:
        choices = f"{fewest}-8" if driver in PACKED_FORMATS else "8"
        raise InputError(f"NBITS={given} (creation option) is not a number of bits; use {choices}")
    if driver not in PACKED_FORMATS and bits != 8:
        raise InputError(
            f"NBITS={given} (creation option): glgeo packs class ids into fewer bits in GeoTIFF and COG"
            f" only; {driver} class rasters are 8-bit: leave NBITS out"
        )
    if class_raster_nodata(bits) < scheme.n_classes:
        raise InputError(
            f"NBITS={given} (creation option) cannot hold the {scheme.n_classes} classes of {scheme.name!r}"
            f" plus nodata; use NBITS={fewest} or more, or leave it out"
        )
    return bits


def sidecar_paths(tif: Path) -> list[Path]:
    """Sidecars GDAL and QGIS read beside ``tif``: ``<stem>.qml``, ``<stem>.qmd`` and
    ``<name>.aux.xml``."""
    return [tif.with_suffix(".qml"), tif.with_suffix(".qmd"), tif.with_name(tif.name + ".aux.xml")]


class _StagedRaster:
    """A raster written to a temporary GTiff one whole row of tiles at a time.

    Incoming rows fill a buffer of one tile row (``count x block x width`` uint8), which is
    written when full: each tile is compressed once, and memory holds one row of tiles.
    """

    def __init__(self, path: Path, profile: dict, block: int, mask: bool, name: Path | None = None) -> None:
        self.path = path
        self.name = name if name is not None else path  # the output it becomes, for errors
        self.block = block
        self.count = int(profile["count"])
        self.width = int(profile["width"])
        self.height = int(profile["height"])
        self.dst = rasterio.open(path, "w", **profile)
        rows = min(block, self.height)
        self._buf = np.empty((self.count, rows, self.width), dtype=np.uint8)
        self._mask = np.empty((rows, self.width), dtype=np.uint8) if mask else None
        self._row_off = 0  # raster row of the buffer's first row
        self._filled = 0  # rows in the buffer

    def add(self, row_off: int, data: np.ndarray, valid: np.ndarray | None) -> None:
        if row_off != self.rows_received:
            raise OutputError(f"rows must arrive in order: expected row {self.rows_received}, got {row_off}")
        n = data.shape[-2]
        if row_off + n > self.height:
            raise OutputError(f"rows {row_off}..{row_off + n} run past the raster's {self.height} rows")
        pos = 0
        while pos < n:
            tile_rows = min(self.block, self.height - self._row_off)
            take = min(n - pos, tile_rows - self._filled)
            self._buf[:, self._filled : self._filled + take] = data[..., pos : pos + take, :]
            if self._mask is not None:
                if valid is None:
                    raise OutputError("this raster has a mask: give the valid pixels")
                self._mask[self._filled : self._filled + take] = np.where(valid[pos : pos + take], 255, 0)
            self._filled += take
            pos += take
            if self._filled == tile_rows:
                window = Window(0, self._row_off, self.width, tile_rows)
                self.dst.write(self._buf[:, :tile_rows], window=window)
                if self._mask is not None:
                    self.dst.write_mask(self._mask[:tile_rows], window=window)
                self._row_off += tile_rows
                self._filled = 0
                self._stop_if_the_disk_is_full()

    @property
    def rows_received(self) -> int:
        """Rows handed in so far (on disk or buffered to complete a row of tiles)."""
        return self._row_off + self._filled

    def _stop_if_the_disk_is_full(self) -> None:
        """GDAL says nothing when a block it writes does not fit (the check before the
        rename finds it); a disk that fills while a large scene runs is said at the next row
        of tiles instead of after the whole scene is computed."""
        note, full = disk_space(self.path.parent, full_below=FULL_DISK_STOP_BYTES)
        if full:
            raise OutputError(
                f"writing {str(self.name)!r} stopped at row {self.rows_received} of {self.height}: {note}; "
                "free some space or choose another folder, then run again"
            )

    def close(self) -> None:
        self.dst.close()


def _temp_path(final: Path, token: str, tag: str) -> Path:
    return final.with_name(f".{final.stem}.{token}.{tag}{final.suffix}")


class ClassRasterWriter:
    """Writes the class raster (and optionally per-class scores) of one scene.

    Use as a context manager: :meth:`write` each :class:`~glgeo.blend.RowBand` top to
    bottom, then :meth:`commit`. Leaving the block without committing (an error, Ctrl-C)
    removes every temporary file and leaves existing outputs untouched.

    Args:
        out: the class raster's path (``.tif``).
        info: the input scene (its grid is copied).
        scheme: class names and colours.
        scores_out: path of the per-class uint8 score raster, or ``None``.
        options: layout of the outputs.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        info: SceneInfo,
        scheme: ClassScheme,
        scores_out: str | os.PathLike | None = None,
        options: OutputOptions = OutputOptions(),
    ) -> None:
        self.out = Path(out)
        self.scores_out = Path(scores_out) if scores_out is not None else None
        self.info = info
        self.scheme = scheme
        self.options = options
        self.driver = output_driver(self.out, options)
        self.scores_driver = (
            output_driver(self.scores_out, options, bands=scheme.n_classes) if self.scores_out is not None else None
        )
        #: bits per pixel of the class raster, and the nodata value it holds
        self.bits = class_raster_file_bits(self.driver, scheme, options)
        if self.bits < 8:  # options the driver takes at 8 bits may not work packed
            _check_creation_options(self.driver, options, self.bits)
        self.nodata = class_raster_nodata(self.bits)
        self._to_file = np.arange(256, dtype=np.uint8)  # in-memory ids -> file values
        self._to_file[NODATA_ID] = self.nodata
        self._token = secrets.token_hex(4)
        self._classes: _StagedRaster | None = None
        self._scores: _StagedRaster | None = None
        self._temps: list[Path] = []
        self._tags: dict[str, str] = {}
        self._committed = False

    # ---------------------------------------------------------------- profile
    def _profile(self, count: int) -> dict:
        block = self.options.block_size
        profile = {
            "driver": "GTiff",
            "width": self.info.width,
            "height": self.info.height,
            "count": count,
            "dtype": "uint8",
            "tiled": True,
            "blockxsize": block,
            "blockysize": block,
            "compress": "DEFLATE",
            "zlevel": 1,  # a staging file: fast; the COG gets the real compression
            "bigtiff": "IF_SAFER",
        }
        if self.info.crs is not None:
            profile["crs"] = self.info.crs
        if self.info.has_transform:  # also a world file's, or a geotransform without CRS
            profile["transform"] = self.info.transform
        elif self.info.gcps is not None:  # placed by ground control points only: the same ones
            profile["gcps"], gcp_crs = self.info.gcps
            if gcp_crs is not None:
                profile["crs"] = gcp_crs
        if self.info.rpcs is not None:  # gdalwarp -rpc places the map as the scene
            profile["rpcs"] = self.info.rpcs
        return profile

    def _temp(self, final: Path, tag: str) -> Path:
        path = _temp_path(final, self._token, tag)
        self._temps.append(path)
        return path

    def __enter__(self) -> "ClassRasterWriter":
        try:
            profile = {**self._profile(1), "nodata": self.nodata, "photometric": "PALETTE"}
            if self.bits < 8:
                profile["nbits"] = self.bits
            self._classes = _StagedRaster(self._temp(self.out, "stage"), profile, self.options.block_size, mask=False,
                                          name=self.out)
            self._classes.dst.write_colormap(1, self.scheme.colormap(self.bits))
            self._classes.dst.set_band_description(1, "class")
            from .styles import SCHEME_TAG

            # the scheme travels inside the tif too (glgeo vectorize reads it), not only in the .aux.xml
            self._classes.dst.update_tags(**{SCHEME_TAG: json.dumps(self.scheme.to_dict())})
            if self.scores_out is not None:
                profile = self._profile(self.scheme.n_classes)
                self._scores = _StagedRaster(
                    self._temp(self.scores_out, "stage"), profile, self.options.block_size, mask=True,
                    name=self.scores_out,
                )
                for i, name in enumerate(self.scheme.names, start=1):
                    self._scores.dst.set_band_description(i, f"score {name}")
                self._scores.dst.update_tags(scale="softmax score x 255")
                # GDAL's band scale: QGIS (identify, raster calculator, statistics) reads scores of 0-1
                self._scores.dst.scales = [SCORE_SCALE] * self.scheme.n_classes
                self._scores.dst.offsets = [0.0] * self.scheme.n_classes
        except BaseException as exc:  # Ctrl-C too: no stage file may stay behind
            self._abandon()
            if isinstance(exc, (RasterioIOError, OSError)):
                raise self._creation_error(exc) from None
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._committed:
            self._close_staged()
        else:
            self._abandon()

    def _creation_error(self, exc: Exception) -> OutputError:
        folder = self.out.parent if str(self.out.parent) else Path(".")
        if not os.access(folder, os.W_OK | os.X_OK):
            return unwritable_folder_error(folder)
        return OutputError(f"cannot create output beside {str(self.out)!r}: {exc}")

    # ------------------------------------------------------------------ write
    def write(self, band: RowBand) -> None:
        """Write a band of final rows (top to bottom); nodata (:data:`NODATA_ID`) becomes the
        file's nodata value."""
        if self._classes is None:
            raise OutputError("the writer is not open; use it inside a `with` block")
        classes = band.classes if self.nodata == NODATA_ID else self._to_file[band.classes]
        self._classes.add(band.row_off, classes[None], None)
        if self._scores is not None:
            if band.scores is None:
                raise OutputError("this writer makes a score raster but the band carries no scores")
            self._scores.add(band.row_off, band.scores, band.valid)

    def set_tags(self, tags: dict[str, str]) -> None:
        """Add metadata items (provenance) to every output, before :meth:`commit` (the class
        raster's ``.qmd`` repeats them for QGIS)."""
        self._tags.update(tags)
        for raster in (self._classes, self._scores):
            if raster is not None:
                raster.dst.update_tags(**tags)

    @property
    def rows_received(self) -> int:
        """Rows handed in so far."""
        return 0 if self._classes is None else self._classes.rows_received

    def commit(self) -> list[Path]:
        """Finish the outputs (COG conversion, sidecars) and rename them into place.

        Returns:
            The final paths written (tifs and sidecars).

        Raises:
            OutputError: rows are missing, or a file cannot be written or renamed.
        """
        if self._classes is None:
            raise OutputError("the writer is not open; use it inside a `with` block")
        if self._classes.rows_received != self.info.height:
            raise OutputError(
                f"only {self._classes.rows_received} of {self.info.height} rows were written; the output is incomplete"
            )
        staged = [(self._classes, self.out, self.options.class_overviews, True, self.driver, self.bits)]
        if self._scores is not None and self.scores_out is not None:
            staged.append((self._scores, self.scores_out, self.options.score_overviews, False, self.scores_driver, 8))
        self._close_staged()
        for raster, final, *_ in staged:  # GDAL does not raise when writing a cached block fails
            check_raster_complete(raster.path, final)
        renames: list[tuple[Path, Path]] = []
        from .styles import provenance_metadata, write_raster_metadata, write_raster_sidecars, write_scores_style

        scene = self.info.title or Path(str(self.info.path)).name
        try:
            for raster, final, overviews, classes, driver, bits in staged:  # classes: True, scores: False
                ready = self._finish(raster.path, final, overviews, driver, bits)
                if ready != raster.path:
                    sparse = dict(self.options.creation_options).get("SPARSE_OK", "").upper() in ("TRUE", "YES", "ON", "1")
                    check_raster_complete(ready, final, sparse_ok=sparse)
                if classes:
                    write_raster_sidecars(ready, self.scheme, nodata=self.nodata)
                    what = f"The class of each pixel of {scene}"
                    qmd = provenance_metadata(self.scheme, self._tags, final.stem, what, self.nodata)
                else:  # the scores: one band per class, drawn by the first that is not a background
                    write_scores_style(ready, self.scheme)
                    what = (f"The score of each class at each pixel of {scene} (softmax x 255), one band per class "
                            "in the order of the classes; no data is the internal mask")
                    qmd = provenance_metadata(self.scheme, self._tags, final.stem, what)
                write_raster_metadata(ready, qmd)
                # sidecars of the temporary tif -> sidecars of the final tif
                prefix = ready.stem
                for item in sorted(ready.parent.glob(f"{prefix}*")):
                    if item != ready:
                        self._temps.append(item)
                        renames.append((item, final.with_name(final.stem + item.name[len(prefix) :])))
                renames.append((ready, final))
        except OutputError:
            raise
        except (RasterioIOError, OSError) as exc:
            note, full = disk_space(self.out.parent)
            raise OutputError(f"writing {str(self.out)!r} failed: {exc}{'; ' + note if full else ''}") from None
        # sidecars first, each tif last: a tif under its final name is complete
        done: list[Path] = []
        try:
            for _, final, *_ in staged:
                for old in sidecar_paths(final):
                    if old not in {dst for _, dst in renames}:
                        with contextlib.suppress(FileNotFoundError):
                            old.unlink()
            for src, dst in renames:
                os.replace(src, dst)
                done.append(dst)
        except OSError as exc:
            remove_quietly(done)  # a failure leaves no output, as before the commit
            raise OutputError(f"cannot put the finished {str(self.out)!r} in place ({exc.strerror or exc}); "
                              "check the output folder's permissions") from None
        self._committed = True
        self._cleanup()
        return [dst for _, dst in renames]

    def _finish(self, staged: Path, final: Path, overviews: str, driver: str, bits: int) -> Path:
        """Copy the staged GTiff (``bits`` per pixel) to the output's format (COG, PNG, ...)
        beside ``final``."""
        user = dict(self.options.creation_options)
        user.pop("NBITS", None)  # the class raster's bits are ``bits``; scores keep 8
        if driver == "GTiff" and not user:
            return staged  # already a tiled, compressed GTiff
        if driver == "COG":
            defaults = {
                "COMPRESS": self.options.compress,
                "BLOCKSIZE": str(self.options.block_size),
                "OVERVIEW_RESAMPLING": overviews,
                "BIGTIFF": "IF_SAFER",
            }
            log.info("converting %s to a Cloud Optimized GeoTIFF", final.name)
        elif driver == "GTiff":
            block = str(self.options.block_size)
            defaults = {"TILED": "YES", "BLOCKXSIZE": block, "BLOCKYSIZE": block, "COMPRESS": "DEFLATE", "BIGTIFF": "IF_SAFER"}
        else:
            defaults = {}
        if bits < 8:  # PACKED_FORMATS only
            defaults["NBITS"] = str(bits)
        copy = self._temp(final, "copy")
        try:
            rasterio.shutil.copy(staged, copy, driver=driver, **{**defaults, **user})
        except (RasterioIOError, rasterio.errors.RasterioError, CPLE_BaseError) as exc:
            note, full = disk_space(final.parent)
            raise OutputError(f"GDAL's {driver} driver cannot write {str(final)!r}: {exc}"
                              f"{'; ' + note + ': free some space or choose another folder' if full else ''}") from None
        with contextlib.suppress(FileNotFoundError):
            staged.unlink()
        return copy

    def _close_staged(self) -> None:
        for raster in (self._classes, self._scores):
            if raster is not None:
                raster.close()

    def _abandon(self) -> None:
        """Close and remove every temporary file; raises nothing, so that the error (or
        Ctrl-C) that got here is the one reported."""
        for raster in (self._classes, self._scores):
            if raster is not None:
                try:
                    raster.close()
                except Exception as exc:  # noqa: BLE001 - the file is removed next anyway
                    log.debug("closing %s: %s", raster.path, exc)
        self._cleanup()

    def _cleanup(self) -> None:
        remove_quietly(item for path in self._temps for item in [path, *sidecar_paths(path)])
