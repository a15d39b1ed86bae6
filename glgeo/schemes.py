"""Class schemes: the ids, names and colours of the classes a model predicts.

A scheme is data, carried inside every checkpoint (``ClassScheme.to_dict``) so that a model
file alone says what its output ids mean and how to draw them. Two schemes ship with glgeo:

* ``deepglobe``: the 7 classes of the DeepGlobe 2018 land-cover challenge, with the
  challenge's official colours; mIoU is scored over the six classes other than "unknown",
  as in the GLNet paper.
* ``inria``: background and building, as in the Inria Aerial Image Labeling benchmark,
  whose masks store buildings as 255.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .errors import InputError, UnknownNameError

RGB = tuple[int, int, int]

#: Class id that marks a pixel without data (outside the scene's footprint) in memory, and
#: in 8-bit class rasters. A class raster packed in fewer bits holds
#: :func:`class_raster_nodata` of its bits in files instead (see :func:`class_raster_bits`).
NODATA_ID = 255

#: Bits per pixel a GeoTIFF class raster may be packed into (GDAL's NBITS), fewest first.
_PACKED_BITS = (1, 2, 3, 4)


def class_raster_nodata(bits: int) -> int:
    """The nodata value of a class raster of ``bits`` bits per pixel: the largest value
    they hold, ``2**bits - 1`` (255 for 8 bits, 7 for 3 bits)."""
    if not 1 <= bits <= 8:
        raise InputError(f"a class raster has 1-8 bits per pixel, got {bits}")
    return 2**bits - 1


def class_raster_bits(scheme: "ClassScheme") -> int:
    """Bits per pixel of the scheme's class rasters in GeoTIFF and COG files.

    The fewest bits that hold the class ids 0..n-1 plus nodata (:func:`class_raster_nodata`,
    the largest value of those bits), up to 4: 3 bits for DeepGlobe's 7 classes (nodata 7),
    2 for Inria's 2 (nodata 3). A scheme of more than 15 classes gets 8 bits (nodata 255),
    like every other format. The colour table has one entry per value of those bits, so a
    class raster opened without its sidecars lists ``2**bits`` legend entries in QGIS.
    """
    for bits in _PACKED_BITS:
        if class_raster_nodata(bits) >= scheme.n_classes:
            return bits
    return 8


@dataclass(frozen=True)
class ClassInfo:
    """One class of a scheme.

    Args:
        id: integer written to the class raster (0-254).
        name: short human name, shown in QGIS legends and vector attributes.
        color: display colour as (red, green, blue), 0-255 each.
        mask_value: value that encodes this class in the dataset's published masks: an
            integer for single-band masks, an RGB triple for colour-coded masks.
    """

    id: int
    name: str
    color: RGB
    mask_value: int | RGB

    def __post_init__(self) -> None:
        if not 0 <= self.id < NODATA_ID:
            raise InputError(f"class id {self.id} is out of range: use 0-{NODATA_ID - 1}")
        if not self.name:
            raise InputError(f"class {self.id} has an empty name")
        if len(self.color) != 3 or any(not 0 <= c <= 255 for c in self.color):
            raise InputError(f"class {self.name!r} has colour {self.color}; give three values 0-255")

    @property
    def hex_color(self) -> str:
        """The colour as ``#rrggbb``."""
        return "#{:02x}{:02x}{:02x}".format(*self.color)


@dataclass(frozen=True)
class ClassScheme:
    """An ordered set of classes with contiguous ids 0..n-1.

    Args:
        name: registry name of the scheme (``deepglobe``, ``inria``...).
        classes: the classes, ordered by id.
        mask_encoding: how the dataset's masks store classes: ``"rgb"`` (one colour per
            class, 3-band masks) or ``"value"`` (one integer per class, 1-band masks).
        ignore_in_miou: ids left out of the mean IoU (DeepGlobe's "unknown").
        description: one line for listings.
    """

    name: str
    classes: tuple[ClassInfo, ...]
    mask_encoding: str = "value"
    ignore_in_miou: tuple[int, ...] = ()
    description: str = ""
    _by_name: dict[str, ClassInfo] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.classes) < 2:
            raise InputError(f"class scheme {self.name!r} needs at least two classes")
        ids = [c.id for c in self.classes]
        if ids != list(range(len(ids))):
            raise InputError(f"class scheme {self.name!r} must number its classes 0..n-1 in order, got {ids}")
        names = [c.name for c in self.classes]
        if len(set(names)) != len(names):
            raise InputError(f"class scheme {self.name!r} repeats a class name: {names}")
        if self.mask_encoding not in ("rgb", "value"):
            raise InputError(f"mask_encoding must be 'rgb' or 'value', got {self.mask_encoding!r}")
        object.__setattr__(self, "_by_name", {c.name: c for c in self.classes})

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.classes)

    @property
    def names(self) -> list[str]:
        """Class names ordered by id."""
        return [c.name for c in self.classes]

    @property
    def colors(self) -> list[RGB]:
        """Class colours ordered by id."""
        return [c.color for c in self.classes]

    @property
    def scored_ids(self) -> list[int]:
        """Ids that count in the mean IoU."""
        return [c.id for c in self.classes if c.id not in self.ignore_in_miou]

    def colormap(self, bits: int = 8) -> dict[int, tuple[int, int, int, int]]:
        """A GDAL colour table (RGBA per value) for a class raster of ``bits`` bits per pixel.

        It has exactly ``2**bits`` entries, as a TIFF palette does: the classes in their
        colours, every other value (nodata, :func:`class_raster_nodata`, among them) fully
        transparent.

        Raises:
            InputError: ``bits`` cannot hold the class ids plus nodata.
        """
        if class_raster_nodata(bits) < self.n_classes:
            raise InputError(
                f"{bits} bits cannot hold the {self.n_classes} classes of {self.name!r} plus nodata;"
                f" use {self.n_classes.bit_length()} or more"
            )
        cmap = {value: (0, 0, 0, 0) for value in range(2**bits)}
        cmap.update({c.id: (*c.color, 255) for c in self.classes})
        return cmap

    def by_name(self, name: str) -> ClassInfo:
        """The class called ``name``.

        Raises:
            UnknownNameError: no class has that name; the message lists the valid ones.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownNameError(
                f"unknown class {name!r} in scheme {self.name!r}; choose from: {', '.join(self.names)}"
            ) from None

    def ids_for(self, names_or_ids: list[str] | tuple[str, ...]) -> list[int]:
        """Class ids for a list of class names or numeric ids (as typed on a command line)."""
        ids = []
        for item in names_or_ids:
            item = str(item).strip()
            if item.isdigit() and int(item) < self.n_classes:
                ids.append(int(item))
            else:
                ids.append(self.by_name(item).id)
        return ids

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-able description (stored in checkpoints)."""
        return {
            "name": self.name,
            "description": self.description,
            "mask_encoding": self.mask_encoding,
            "ignore_in_miou": list(self.ignore_in_miou),
            "classes": [
                {
                    "id": c.id,
                    "name": c.name,
                    "color": list(c.color),
                    "mask_value": list(c.mask_value) if isinstance(c.mask_value, tuple) else c.mask_value,
                }
                for c in self.classes
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ClassScheme":
        """Rebuild a scheme written by :meth:`to_dict`."""
        try:
            classes = tuple(
                ClassInfo(
                    id=int(c["id"]),
                    name=str(c["name"]),
                    color=tuple(int(v) for v in c["color"]),  # type: ignore[arg-type]
                    mask_value=tuple(int(v) for v in c["mask_value"])
                    if isinstance(c["mask_value"], (list, tuple))
                    else int(c["mask_value"]),
                )
                for c in data["classes"]
            )
            return cls(
                name=str(data["name"]),
                classes=classes,
                mask_encoding=str(data.get("mask_encoding", "value")),
                ignore_in_miou=tuple(int(i) for i in data.get("ignore_in_miou", ())),
                description=str(data.get("description", "")),
            )
        except KeyError as exc:
            raise InputError(f"class scheme description is incomplete: missing {exc}") from None
        except (TypeError, ValueError) as exc:
            raise InputError(f"class scheme description is not valid: {exc}") from None


DEEPGLOBE = ClassScheme(
    name="deepglobe",
    description="DeepGlobe 2018 land cover: 7 classes, official colours",
    mask_encoding="rgb",
    ignore_in_miou=(0,),
    classes=(
        ClassInfo(0, "unknown", (0, 0, 0), (0, 0, 0)),
        ClassInfo(1, "urban", (0, 255, 255), (0, 255, 255)),
        ClassInfo(2, "agriculture", (255, 255, 0), (255, 255, 0)),
        ClassInfo(3, "rangeland", (255, 0, 255), (255, 0, 255)),
        ClassInfo(4, "forest", (0, 255, 0), (0, 255, 0)),
        ClassInfo(5, "water", (0, 0, 255), (0, 0, 255)),
        ClassInfo(6, "barren", (255, 255, 255), (255, 255, 255)),
    ),
)

INRIA = ClassScheme(
    name="inria",
    description="Inria Aerial Image Labeling: background and building",
    mask_encoding="value",
    classes=(
        ClassInfo(0, "background", (230, 230, 230), 0),
        ClassInfo(1, "building", (200, 30, 30), 255),
    ),
)

_SCHEMES: dict[str, ClassScheme] = {s.name: s for s in (DEEPGLOBE, INRIA)}


def list_schemes() -> list[str]:
    """Names of the registered class schemes."""
    return sorted(_SCHEMES)


def get_scheme(name: str) -> ClassScheme:
    """The registered scheme called ``name``.

    Raises:
        UnknownNameError: the name is not registered; the message lists the valid ones.
    """
    try:
        return _SCHEMES[name]
    except KeyError:
        raise UnknownNameError(
            f"unknown class scheme {name!r}; choose from: {', '.join(list_schemes())}"
        ) from None


def load_scheme(name_or_path: str | os.PathLike, register: bool = False) -> ClassScheme:
    """A registered scheme by name, or one described in a JSON file (as
    :meth:`ClassScheme.to_dict` writes it; ``register``: registered under its name too).

    Raises:
        InputError: the JSON file cannot be read, is not JSON or does not describe a scheme.
        UnknownNameError: no registered scheme has that name.
    """
    import json

    path = Path(name_or_path)
    if path.suffix.lower() == ".json" and path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the class scheme {str(path)!r}: {exc}") from None
        except json.JSONDecodeError as exc:
            raise InputError(f"the class scheme {str(path)!r} is not valid JSON ({exc}); fix it or give a scheme name "
                             f"({', '.join(list_schemes())})") from None
        if not isinstance(data, dict):
            raise InputError(f"the class scheme {str(path)!r} holds no scheme (a JSON object with name and classes)")
        scheme = ClassScheme.from_dict(data)
        if register:
            register_scheme(scheme)
        return scheme
    if path.suffix.lower() == ".json":
        raise InputError(f"the class scheme file {str(path)!r} does not exist; check the path, or give a scheme name "
                         f"({', '.join(list_schemes())})")
    return get_scheme(str(name_or_path))


def register_scheme(scheme: ClassScheme) -> None:
    """Make a user-defined scheme available by name (for ``--scheme`` and checkpoints)."""
    _SCHEMES[scheme.name] = scheme
