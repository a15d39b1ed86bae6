"""What a batch did: one row per scene, the run's summary, and the manifest file."""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

from ..atomic import atomic_path
from ..errors import InputError, OutputError

Status = Literal["done", "skipped", "failed"]


@dataclass(frozen=True)
class SceneResult:
    """What happened to one scene: one row of the manifest.

    Attributes:
        input: the scene.
        output: its class raster.
        vector: its GeoPackage, if vectorized.
        status: ``done`` (segmented now), ``skipped`` (outputs already there) or ``failed``.
        class_areas: area per class name (in :attr:`area_unit`); for skipped scenes, read
            back from the existing class raster.
        area_unit: unit of the areas (``m2``, ``px``, ``map unit2``; ``deg2`` where a raster reaches
            where its CRS is undefined: see :class:`glgeo.areas.PixelAreas`).
        seconds: wall time of the task, including retries' last attempt only.
        worker: the Dask worker address that ran the last attempt (``in-process`` without
            Dask).
        device: the torch device that segmented it (``cuda:1``, ``cpu``; empty when the
            class raster was already there).
        error: why the scene failed (``None`` otherwise).
        partials_removed: temporary files of an interrupted earlier attempt removed first.
        warnings: what glgeo warned about while running this scene (no georeferencing,
            every pixel nodata, a scene coarser than the model...), in order, so that a batch
            of many scenes says which ones each warning was about.
    """

    input: str
    output: str
    vector: str | None
    status: Status
    class_areas: Mapping[str, float] = field(default_factory=dict)
    area_unit: str = ""
    seconds: float = 0.0
    worker: str = ""
    device: str = ""
    error: str | None = None
    partials_removed: int = 0
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able row."""
        row = dataclasses.asdict(self)
        row["class_areas"] = dict(self.class_areas)
        row["warnings"] = list(self.warnings)
        row["seconds"] = round(self.seconds, 3)
        return row


@dataclass(frozen=True)
class BlockResult:
    """What happened to one block of a split scene (:mod:`glgeo.batch.split`): one row of
    the manifest's ``blocks``.

    Attributes:
        block: its name, ``block-RRR-CCC`` (block row and column).
        box: ``(top, left, bottom, right)``: the scene pixels it wrote.
        windows: context windows it computed (those at block boundaries are computed by
            both blocks).
        status: ``done`` (computed now), ``skipped`` (finished by an earlier, interrupted
            run, or by another attempt) or ``failed``.
        seconds: wall time of the task (its last attempt).
        worker: the Dask worker that ran the last attempt (``in-process`` without Dask).
        device: the torch device that computed it.
        peak_rss_mb: the worker process's peak resident memory so far, in MiB (Linux and
            macOS; 0 elsewhere).
        error: why it failed.
        partials_removed: temporary files of an interrupted earlier attempt removed first.
        stats: what the engine did (not written to the manifest).
    """

    block: str
    box: tuple[int, int, int, int]
    windows: int
    status: Status
    seconds: float = 0.0
    worker: str = ""
    device: str = ""
    peak_rss_mb: float = 0.0
    error: str | None = None
    partials_removed: int = 0
    stats: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able row."""
        row = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "stats"}
        row["box"] = list(self.box)
        row["seconds"] = round(self.seconds, 3)
        row["peak_rss_mb"] = round(self.peak_rss_mb, 1)
        return row


@dataclass(frozen=True)
class BatchResult:
    """What a batch did.

    Attributes:
        scenes: one :class:`SceneResult` per scene, in input order.
        seconds: wall time of the run (cluster start included).
        workers: how the scenes ran (``in-process``, ``local cluster of 2 workers``, or the
            scheduler address).
        manifest: the manifest written, if any.
        vector_merge: the merged GeoPackage written, if any.
        blocks: a scene split into blocks (one scene): one row per block.
    """

    scenes: tuple[SceneResult, ...]
    seconds: float
    workers: str
    manifest: Path | None = None
    vector_merge: Path | None = None
    blocks: tuple[BlockResult, ...] = ()

    @property
    def counts(self) -> dict[str, int]:
        """Scenes per status."""
        counts = Counter(r.status for r in self.scenes)
        return {s: counts.get(s, 0) for s in ("done", "skipped", "failed")}

    @property
    def failed(self) -> tuple[SceneResult, ...]:
        """The scenes that failed."""
        return tuple(r for r in self.scenes if r.status == "failed")

    @property
    def ok(self) -> bool:
        """Whether no scene failed."""
        return not self.failed

    @property
    def scenes_per_minute(self) -> float:
        """Scenes segmented (not skipped) per minute of :attr:`seconds`."""
        return 60.0 * self.counts["done"] / self.seconds if self.seconds > 0 else 0.0

    def failure_summary(self, limit: int = 5) -> list[str]:
        """Why scenes failed: one line per distinct reason, most frequent first (two errors
        that differ only in the scene they name are one reason; its line quotes an example)."""
        examples: dict[str, tuple[str, str]] = {}
        reasons: Counter[str] = Counter()
        for r in self.failed:
            line = (r.error or "unknown error").splitlines()[0]
            key = _without_scene(line, r.input)
            reasons[key] += 1
            examples.setdefault(key, (r.input, line))
        lines = []
        for key, n in reasons.most_common(limit):
            example, line = examples[key]
            lines.append(f"{n} scene{'s' if n > 1 else ''} ({'e.g. ' if n > 1 else ''}{example}): {line}")
        if len(reasons) > limit:
            lines.append(f"... and {len(reasons) - limit} other reasons (see the manifest)")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The JSON manifest: run summary and one row per scene."""
        from glgeo import __version__

        return {
            "glgeo_version": __version__,
            "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "scenes_per_minute": round(self.scenes_per_minute, 3),
            **self.counts,
            "vector_merge": str(self.vector_merge) if self.vector_merge else None,
            "scenes": [r.to_dict() for r in self.scenes],
            **({"blocks": [b.to_dict() for b in self.blocks]} if self.blocks else {}),
        }


def write_manifest(result: BatchResult, path: str | os.PathLike, wording: Callable[[str], str] | None = None) -> Path:
    """Write the manifest atomically: JSON (run summary + rows) or CSV (one row per scene).

    The CSV has one ``area:<class>`` column per class seen in the run; a split scene's
    blocks follow its row, one row each, with ``block``, ``box``, ``windows`` and
    ``peak_rss_mb`` columns (empty on the scene's row).

    Args:
        result: the run.
        path: the manifest (``.json`` or ``.csv``).
        wording: how the rows' errors and warnings are worded (the command line's flags,
            ``--overwrite``, where glgeo's messages name ``overwrite=True``); ``None``: as
            glgeo says them (:attr:`glgeo.batch.BatchOptions.manifest_wording`).

    Raises:
        InputError: the suffix is neither ``.json`` nor ``.csv``.
        OutputError: the file cannot be written.
    """
    if wording is not None:
        result = dataclasses.replace(
            result,
            scenes=tuple(
                dataclasses.replace(r, error=None if r.error is None else wording(r.error),
                                    warnings=tuple(map(wording, r.warnings)))
                for r in result.scenes
            ),
            blocks=tuple(dataclasses.replace(b, error=None if b.error is None else wording(b.error)) for b in result.blocks),
        )
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix == ".json":
        text = json.dumps(result.to_dict(), indent=2) + "\n"
    elif suffix == ".csv":
        classes = list(dict.fromkeys(name for r in result.scenes for name in r.class_areas))
        columns = ["input", "output", "vector", "status", "seconds", "worker", "device", "error", "partials_removed",
                   "warnings", "area_unit"]
        if result.blocks:
            columns += ["block", "box", "windows", "peak_rss_mb"]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns + [f"area:{c}" for c in classes], lineterminator="\n")
        writer.writeheader()
        for r in result.scenes:
            row = {k: v for k, v in r.to_dict().items() if k in columns}
            row["warnings"] = " | ".join(r.warnings)
            row.update({f"area:{c}": r.class_areas.get(c, "") for c in classes})
            writer.writerow(row)
        for b in result.blocks:
            row = {k: v for k, v in b.to_dict().items() if k in columns}
            row.update(input=result.scenes[0].input if result.scenes else "", box=" ".join(map(str, b.box)))
            writer.writerow(row)
        text = buffer.getvalue()
    else:
        raise InputError(f"manifest {str(target)!r} must end in .json or .csv")
    try:
        with atomic_path(target) as tmp:
            tmp.write_text(text, encoding="utf-8")
    except OutputError:
        raise  # says what to do
    except OSError as exc:
        raise OutputError(f"cannot write the manifest {str(target)!r}: {exc}; check the folder exists and is writable") from None
    return target


def check_manifest_target(path: Path, overwrite: bool, inputs: Sequence[str | os.PathLike] = (),
                          folders: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse, before any scene, a manifest path that names a list of scenes given as
    input (``@list``), or, without ``overwrite``, an existing file that is no glgeo manifest
    or the manifest of another batch (its outputs in none of this batch's output
    ``folders``): a rerun rewrites its own manifest, not the user's file nor another run's.

    Raises:
        OutputError: any of these.
    """
    lists = [Path(os.fspath(i)[1:]) for i in inputs if os.fspath(i).startswith("@")]
    if any(path.absolute() == item.absolute() or (path.exists() and item.exists() and path.samefile(item))
           for item in lists):
        raise OutputError(f"manifest {str(path)!r} is a list of the scenes given; choose another name for the manifest")
    if overwrite or not path.exists():
        return
    if not _is_manifest(path):
        raise OutputError(
            f"manifest {str(path)!r} already exists and is no glgeo manifest; pass overwrite=True to replace it, or"
            " choose another name"
        )
    theirs = {Path(row["output"]).absolute().parent for row in read_manifest(path) if row.get("output")}
    ours = {Path(folder).absolute() for folder in folders}
    if theirs and ours and not theirs & ours:
        raise OutputError(
            f"manifest {str(path)!r} is another batch's (its outputs are in {str(sorted(theirs)[0])!r}); choose "
            "another name for this batch's manifest, or pass overwrite=True to replace it"
        )


def _is_manifest(path: Path) -> bool:
    """Whether ``path`` is a manifest :func:`write_manifest` wrote: a CSV whose header has
    its ``input`` and ``status`` columns, or a JSON object of scene rows that have them (an
    empty file, a header-only or one-line CSV of the user's is none)."""
    try:
        rows = read_manifest(path)
        if path.suffix.lower() == ".csv":
            with open(path, encoding="utf-8", newline="") as handle:
                header = csv.DictReader(handle).fieldnames or []
            return {"input", "status"} <= set(header)
    except (InputError, OSError, UnicodeDecodeError, csv.Error):
        return False
    return bool(rows) and all(isinstance(row, dict) and {"input", "status"} <= set(row) for row in rows)


def read_manifest(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a manifest written by :func:`write_manifest` (JSON or CSV).

    Raises:
        InputError: the file is missing or not a glgeo manifest.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read manifest {str(source)!r}: {exc.strerror or exc}") from None
    if source.suffix.lower() == ".csv":
        return list(csv.DictReader(io.StringIO(text)))
    try:
        return list(json.loads(text)["scenes"])
    except (json.JSONDecodeError, KeyError, TypeError):
        raise InputError(f"{str(source)!r} is not a glgeo batch manifest") from None


def _without_scene(line: str, scene: str) -> str:
    """An error's line with the scene's path taken out where it stands as a whole name, and
    its file name where it ends another path (its outputs')."""
    if scene:
        line = re.sub(r"(?<![\w.-])" + re.escape(scene) + r"(?![\w-])", "\0", line)
        name = os.path.basename(scene)
        if name:
            line = re.sub(r"(?<=[/\\])" + re.escape(name) + r"(?![\w-])", "\0", line)
    return line
