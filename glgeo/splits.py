"""Train / validation / test splits of a dataset's scenes.

* Inria: the benchmark's official validation tiles (numbers 1-5 of every city), or
  leave-cities-out (``--val-cities tyrol-w,vienna``: every tile of those cities).
* DeepGlobe: a seeded, deterministic 454/207/142 split of the 803 labelled images (the
  proportions of the GLNet paper), or the paper's own lists through a split file.
* Any dataset: a split file. Either a folder holding ``train.txt``, ``val.txt`` (or
  ``crossvali.txt``, the GLNet name) and optionally ``test.txt``, one scene per line; a
  JSON file ``{"train": [...], "val": [...], "test": [...]}``; or a text/CSV file of
  ``name,split`` lines. Entries may be file names (``855_sat.jpg``, ``austin1.tif``): they
  are reduced to scene names.

The seeded split orders scenes by a hash of ``seed:name``, so it is the same on every
machine and library version, and adding scenes does not reshuffle the others.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Literal, Sequence, get_args

from .errors import DatasetError, InputError

log = logging.getLogger(__name__)

DatasetKind = Literal["inria", "deepglobe", "folder"]
#: The dataset layouts :func:`glgeo.datasets.open_dataset` reads, each with its split rules
#: here (this module imports nothing heavy, so the command line builds its choices from it).
DATASET_KINDS: tuple[str, ...] = get_args(DatasetKind)

#: DeepGlobe's labelled images and the GLNet paper's validation and test counts.
DEEPGLOBE_TOTAL, DEEPGLOBE_VAL, DEEPGLOBE_TEST = 803, 207, 142

#: Inria's official validation tiles: numbers 1-5 of every city.
INRIA_VAL_NUMBERS = frozenset(range(1, 6))

_INRIA_NAME = re.compile(r"^(?P<city>[a-z][a-z_-]*?)(?P<number>\d+)$")
_SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                  "crossvali": "val", "test": "test"}


@dataclass(frozen=True)
class Split:
    """Scene names of each part of a split (disjoint)."""

    train: tuple[str, ...]
    val: tuple[str, ...] = ()
    test: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for part in ("train", "val", "test"):
            for name in getattr(self, part):
                if name in seen:
                    raise DatasetError(f"scene {name!r} is in both the {seen[name]} and the {part} split")
                seen[name] = part

    def part(self, name: str) -> tuple[str, ...]:
        """The names of part ``train``, ``val`` or ``test``."""
        if name not in ("train", "val", "test"):
            raise InputError(f"unknown split part {name!r}; choose from: train, val, test")
        return getattr(self, name)

    def to_dict(self) -> dict[str, list[str]]:
        """A JSON-able description (also readable as a split file)."""
        return {"train": list(self.train), "val": list(self.val), "test": list(self.test)}


def scene_name(entry: str) -> str:
    """A scene name from a split-file entry: file name and DeepGlobe suffixes removed."""
    name = Path(entry.strip()).name
    for suffix in (".tif", ".tiff", ".jpg", ".jpeg", ".png"):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    for suffix in ("_sat", "_mask"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def inria_city(name: str) -> tuple[str, int]:
    """City and tile number of an Inria tile name (``tyrol-w12`` -> ``("tyrol-w", 12)``).

    Raises:
        DatasetError: the name is not ``<city><number>``.
    """
    match = _INRIA_NAME.match(name)
    if match is None:
        raise DatasetError(f"{name!r} is not an Inria tile name (<city><number>, e.g. austin1)")
    return match["city"], int(match["number"])


def inria_official_split(names: Iterable[str]) -> Split:
    """Inria's official validation: tiles 1-5 of each city; the rest (6-36) train."""
    train, val = [], []
    for name in sorted(names):
        _, number = inria_city(name)
        (val if number in INRIA_VAL_NUMBERS else train).append(name)
    return Split(tuple(train), tuple(val))


def leave_cities_out(names: Iterable[str], val_cities: Sequence[str]) -> Split:
    """Every tile of ``val_cities`` validates; the other cities train.

    Raises:
        InputError: a city has no tiles in the dataset (the message lists those that do).
    """
    names = sorted(names)
    cities = {name: inria_city(name)[0] for name in names}
    present = sorted(set(cities.values()))
    wanted = [c.strip().lower() for c in val_cities if c.strip()]
    missing = [c for c in wanted if c not in present]
    if missing:
        raise InputError(f"no tiles of city {', '.join(missing)} in the dataset; cities present: {', '.join(present)}")
    if not wanted:
        raise InputError(f"give at least one validation city; cities present: {', '.join(present)}")
    if set(wanted) == set(present):
        raise InputError("leaving every city out leaves nothing to train on; keep at least one city for training")
    val = tuple(n for n in names if cities[n] in wanted)
    train = tuple(n for n in names if cities[n] not in wanted)
    return Split(train, val)


def _hash_order(names: Iterable[str], seed: int) -> list[str]:
    return sorted(names, key=lambda n: hashlib.sha256(f"{seed}:{n}".encode()).hexdigest())


def seeded_split(
    names: Iterable[str],
    seed: int = 0,
    val_fraction: float = DEEPGLOBE_VAL / DEEPGLOBE_TOTAL,
    test_fraction: float = DEEPGLOBE_TEST / DEEPGLOBE_TOTAL,
) -> Split:
    """A deterministic random split; by default DeepGlobe's 454/207/142 of 803.

    Counts are rounded from the fractions (at least one validation scene when there are
    two or more scenes). Each part is returned sorted by name.
    """
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise InputError(f"split fractions val={val_fraction}, test={test_fraction} must be >= 0 and sum below 1")
    ordered = _hash_order(set(names), seed)
    n = len(ordered)
    n_val = round(n * val_fraction)
    n_test = round(n * test_fraction)
    if n >= 2 and n_val == 0 and val_fraction > 0:
        n_val = 1
    n_test = min(n_test, max(0, n - n_val - 1))
    val = sorted(ordered[:n_val])
    test = sorted(ordered[n_val : n_val + n_test])
    train = sorted(ordered[n_val + n_test :])
    return Split(tuple(train), tuple(val), tuple(test))


def hold_out(split: Split, share: float = 0.0, scenes: Iterable[str] = (), seed: int = 0) -> Split:
    """Move validation scenes to the test part, so that checkpoint choice never sees them.

    Validation scores choose a run's best checkpoint; figures measured on those same
    scenes overstate what the model does elsewhere. ``hold_out`` keeps a second set apart:
    a seeded ``share`` of the validation scenes (ordered by a hash of ``seed:name``, as
    :func:`seeded_split`) plus every validation scene named in ``scenes`` go to the test
    part, to be reported with ``glgeo evaluate --part test``.

    Raises:
        InputError: ``share`` outside [0, 1), or a named scene that is not a validation scene.
    """
    if not 0 <= share < 1:
        raise InputError(f"the held-out share of the validation scenes must be in [0, 1), got {share}")
    named = list(dict.fromkeys(scenes))
    val = set(split.val)
    missing = [n for n in named if n not in val]
    if missing:
        raise InputError(
            f"held-out scene(s) {', '.join(missing[:5])} are not validation scenes of the split "
            f"(it validates on {len(split.val)} scenes)"
        )
    rest = [n for n in _hash_order(val - set(named), seed)]
    n_share = round(len(split.val) * share) - len(named)
    held = set(named) | set(rest[: max(0, n_share)])
    if split.val and len(held) >= len(split.val):
        raise InputError(f"holding out {len(held)} of {len(split.val)} validation scenes leaves none to choose checkpoints on")
    return Split(
        split.train,
        tuple(n for n in split.val if n not in held),
        tuple(split.test) + tuple(n for n in split.val if n in held),
    )


def read_split_file(path: str | Path) -> dict[str, list[str]]:
    """The lists of a split file or folder, as scene names per part (see module doc).

    Raises:
        InputError: the file is missing or not in one of the accepted forms.
    """
    path = Path(path)
    parts: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    if path.is_dir():
        found = False
        for file in sorted(path.glob("*.txt")):
            part = _SPLIT_ALIASES.get(file.stem.lower())
            if part is None:
                continue
            found = True
            parts[part] += [scene_name(x) for x in file.read_text().splitlines() if x.strip()]
        if not found:
            raise InputError(f"split folder {path} holds no train.txt / val.txt (or crossvali.txt) / test.txt lists")
        return parts
    if not path.is_file():
        raise InputError(f"split file {str(path)!r} does not exist")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"split file {path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InputError(f"split file {path} must hold an object like {{\"train\": [...], \"val\": [...]}}")
        for key, values in data.items():
            part = _SPLIT_ALIASES.get(str(key).lower())
            if part is None:
                raise InputError(f"split file {path}: unknown part {key!r}; use train, val and test")
            parts[part] += [scene_name(str(v)) for v in values]
        return parts
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in re.split(r"[,\t ]+", line.strip())]
        part = _SPLIT_ALIASES.get(fields[-1].lower()) if len(fields) == 2 else None
        if part is None:
            raise InputError(f"split file {path}, line {number}: expected 'name,split' (split: train, val or test), got {line!r}")
        parts[part].append(scene_name(fields[0]))
    return parts


def split_from_file(path: str | Path, names: Iterable[str]) -> Split:
    """A split from a split file, restricted to the scenes the dataset has.

    Entries the dataset does not hold are left out, and scenes in no list are not used
    (a sample of a benchmark is still usable with the benchmark's lists), each with a
    warning that names the first few.

    Raises:
        DatasetError: the training part is empty once restricted to the dataset.
    """
    available = set(names)
    parts = read_split_file(path)
    kept: dict[str, tuple[str, ...]] = {}
    missing: dict[str, tuple[list[str], int]] = {}
    for part, entries in parts.items():
        unique = list(dict.fromkeys(entries))
        kept[part] = tuple(e for e in unique if e in available)
        missing[part] = ([e for e in unique if e not in available], len(unique))
    if not kept["train"] and not kept["val"] and not kept["test"]:
        raise DatasetError(f"no scene of split file {path} is in the dataset; do its names match the dataset's files?")
    split = Split(kept["train"], kept["val"], kept["test"])
    for part, (absent, count) in missing.items():
        if absent:
            log.warning(
                "split file %s: %d of %d %s entries match no scene of the dataset and are left out: %s; "
                "check them against the dataset's scene names (e.g. %s)",
                path, len(absent), count, part, _first(absent), ", ".join(sorted(available)[:3]),
            )
    unused = sorted(available - set().union(*map(set, kept.values())))
    if unused:
        log.warning(
            "split file %s: %d of the dataset's %d scenes are in no list (train, val or test) and are not used: %s; "
            "add them to a list to use them", path, len(unused), len(available), _first(unused),
        )
    return split


def _first(names: Sequence[str], n: int = 5) -> str:
    """The first ``n`` names, then how many more."""
    text = ", ".join(names[:n])
    return text + (f" and {len(names) - n} more" if len(names) > n else "")


def make_split(
    kind: str,
    names: Iterable[str],
    *,
    split_file: str | Path | None = None,
    val_cities: Sequence[str] | None = None,
    seed: int = 0,
    holdout_share: float = 0.0,
    holdout_scenes: Sequence[str] = (),
) -> Split:
    """The split a training run uses, by the rules of the dataset kind.

    Args:
        kind: ``inria``, ``deepglobe`` or ``folder``.
        names: the dataset's scene names.
        split_file: lists to use as they are (any kind).
        val_cities: Inria leave-cities-out.
        seed: seed of the DeepGlobe / folder random split (and of the held-out share).
        holdout_share, holdout_scenes: validation scenes moved to the test part
            (:func:`hold_out`): never used to choose checkpoints, reported instead.

    Raises:
        InputError: ``val_cities`` with a dataset that is not Inria, or with a split file.
    """
    split = _base_split(kind, list(names), split_file, val_cities, seed)
    if holdout_share or holdout_scenes:
        split = hold_out(split, holdout_share, holdout_scenes, seed)
    return split


def _base_split(
    kind: str, names: list[str], split_file: str | Path | None, val_cities: Sequence[str] | None, seed: int
) -> Split:
    if split_file is not None and val_cities:
        raise InputError("give either split_file or val_cities, not both")
    if split_file is not None:
        return split_from_file(split_file, names)
    if val_cities:
        if kind != "inria":
            raise InputError("val_cities works with the Inria dataset only; use split_file for others")
        return leave_cities_out(names, val_cities)
    if kind == "inria":
        return inria_official_split(names)
    return seeded_split(names, seed=seed)
