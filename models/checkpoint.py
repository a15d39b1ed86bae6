"""glgeo checkpoints, and import of the GLNet authors' released checkpoints.

A glgeo checkpoint is one ``torch.save`` file holding the weights *and* everything needed
to rebuild and use the model: the architecture (:class:`GLNetConfig`), the class scheme,
the input scaling, the global and patch sizes, the focal gamma it was trained with and
free-form metadata (training command, metrics...). It loads with
``torch.load(weights_only=True)``: plain containers and tensors only.

The released DeepGlobe checkpoints (``module.``-prefixed state dicts of the authors'
``GLNet``, one file per training stage) map onto glgeo's parts as follows
(``<h>`` = a head conv, see :data:`HEAD_KEY_MAP`):

=====================================  ==============================================
glgeo key                              released key (file)
=====================================  ==============================================
``global_branch.backbone.*``           ``resnet_global.*`` (global file)
``global_branch.head.<h>``             ``fpn_global.<h>`` (global file)
``local_branch.backbone.*``            ``resnet_local.*`` (g2l file; l2g if given)
``local_branch.head.<h>``              ``fpn_local.<h>`` (same file)
``aggregation.*``                      ``ensemble_conv.*`` (same file)
``global_l2g.backbone.*``              ``resnet_global.*`` (l2g file)
``global_l2g.head.<h>``                ``fpn_global.<h>_ext``; fuse <- ``smooth``,
                                       classifier <- ``classify`` (l2g file)
=====================================  ==============================================

Keys of a released file that a G -> L model does not use (the untrained ``*_ext`` convs of
its global FPN) are left out. A bidirectional model uses every key of the l2g file except
the plain convs of its global FPN (the L -> G branch only runs the ``*_ext`` ones), plus
the stage-1 global branch of the global file.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from glgeo import __version__
from glgeo.atomic import disk_full_error
from glgeo.errors import CheckpointError, UnknownNameError
from glgeo.resolution import whole_pixels
from glgeo.schemes import ClassScheme, get_scheme, list_schemes

from .glnet import GLNet, GLNetConfig

log = logging.getLogger(__name__)

FORMAT = "glgeo-checkpoint"
FORMAT_VERSION = 1

#: glgeo head conv -> released conv name (without the ``_ext`` suffix).
HEAD_KEY_MAP: dict[str, str] = {
    "lateral.0": "toplayer",
    "lateral.1": "latlayer1",
    "lateral.2": "latlayer2",
    "lateral.3": "latlayer3",
    **{f"smooth1.{i}": f"smooth{i + 1}_1" for i in range(4)},
    **{f"smooth2.{i}": f"smooth{i + 1}_2" for i in range(4)},
    "fuse": "smooth",
    "classifier": "classify",
}


@dataclass(frozen=True)
class InputScaling:
    """How raw pixel values become network inputs: ``(x - min) / (max - min)`` per band.

    The released GLNet code divides RGB bytes by 255 (``min=0, max=255``) and uses no
    mean/std normalisation.
    """

    min: float = 0.0
    max: float = 255.0

    def __post_init__(self) -> None:
        if not self.max > self.min:
            raise CheckpointError(f"input scaling needs max > min, got min={self.min}, max={self.max}")

    def to_dict(self) -> dict[str, float]:
        return {"min": self.min, "max": self.max}


#: Side in px of the images of the published datasets (the context footprint of a model
#: trained on them at full resolution).
PUBLISHED_IMAGE_SIZE = {"deepglobe": 2448, "inria": 5000}
#: Metres per pixel of the published datasets' imagery (DeepGlobe 50 cm, Inria 30 cm).
PUBLISHED_GSD = {"deepglobe": 0.5, "inria": 0.3}


@dataclass
class Checkpoint:
    """A loaded glgeo checkpoint.

    Attributes:
        model: the rebuilt GLNet, weights loaded, in eval mode.
        scheme: what the output ids mean.
        input_scaling: how to turn pixel values into inputs.
        global_size: side of the downsampled scene the global branch sees.
        patch_size: side of the local branch's patches.
        focal_gamma: focal loss gamma the model was trained with.
        metadata: free-form facts (training command, metrics, source files...).
    """

    model: GLNet
    scheme: ClassScheme
    input_scaling: InputScaling
    global_size: int
    patch_size: int
    focal_gamma: float
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def mode(self) -> str:
        """The mode the model is trained for, and runs by default.

        The architecture's mode (``model.config.mode``), except for the checkpoints of a
        training run's earlier stages, whose later parts are still untrained: stage 1 of a
        G->L or bidirectional run is a global model, stage 2 of a bidirectional run a G->L
        one (``metadata["training"]["stage"]``).
        """
        arch = self.model.config.mode
        training = self.metadata.get("training")
        stage = training.get("stage") if isinstance(training, dict) else None
        trained = {1: "global", 2: "g2l"}.get(stage) if arch in ("g2l", "bidirectional") else None
        return trained if trained is not None and trained in self.model.supported_modes() else arch

    @property
    def gsd(self) -> float | None:
        """Metres per pixel of the imagery the model was trained on, once read at
        :attr:`scene_scale` (``None`` when the training data did not say): ``glgeo segment``
        reads georeferenced scenes at this resolution."""
        training = self.metadata.get("training")
        value = training.get("gsd_m") if isinstance(training, dict) else None
        try:
            value = float(value) if value is not None else None
        except (TypeError, ValueError):
            return None
        return value if value is not None and value > 0 else None

    @property
    def bands(self) -> tuple[int, ...] | None:
        """The 1-based bands of its training imagery, in the order the model was fed them
        (``glgeo train --bands``, recorded as ``metadata["training"]["bands"]``); ``None``
        when not recorded. ``glgeo segment`` feeds a scene the same bands unless told
        otherwise (the first three, red, green, blue, need no saying)."""
        training = self.metadata.get("training")
        value = training.get("bands") if isinstance(training, dict) else None
        try:
            bands = tuple(int(b) for b in value) if value else None
        except (TypeError, ValueError):
            return None
        return bands if bands and all(b >= 1 for b in bands) else None

    @property
    def footprint(self) -> int | None:
        """The context footprint: the side, in px of the working grid (the scene read at
        :attr:`scene_scale`), of the images the model was trained on. ``glgeo segment``
        cuts larger scenes into overlapping context windows of this size, each with its own
        global view, so the global branch sees every part of a scene at its training scale.

        Recorded by ``glgeo train`` (``metadata["training"]["footprint_px"]``) and
        ``glgeo import-glnet``; for older checkpoints trained on a published layout, that
        layout's image size at :attr:`scene_scale` (DeepGlobe 2448 px, Inria 5000 px);
        ``None`` when unknown (the whole scene is then one window).
        """
        training = self.metadata.get("training")
        if not isinstance(training, dict):
            return None
        value = training.get("footprint_px")
        try:
            value = int(value) if value is not None else None
        except (TypeError, ValueError):
            value = None
        if value is not None and value >= 8:
            return value
        published = PUBLISHED_IMAGE_SIZE.get(str(training.get("dataset")))
        return None if published is None else max(8, round(published * self.scene_scale))

    @property
    def scene_scale(self) -> float:
        """The fraction of their resolution the training scenes were read at (``glgeo train
        --scale``; 1 for full resolution and for checkpoints that do not say): ``glgeo
        segment`` reads scenes the same way."""
        training = self.metadata.get("training")
        value = training.get("scene_scale", 1.0) if isinstance(training, dict) else 1.0
        try:
            value = float(value)
        except (TypeError, ValueError):
            return 1.0
        return value if 0 < value <= 1 else 1.0


def save_checkpoint(
    path: str | Path,
    model: GLNet,
    scheme: ClassScheme,
    input_scaling: InputScaling | None = None,
    global_size: int = 508,
    patch_size: int = 508,
    focal_gamma: float = 3.0,
    metadata: Mapping[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write a glgeo checkpoint (atomically).

    Args:
        half: store floating-point weights as float16 (halves the file; they are loaded
            back as float32).
    """
    if scheme.n_classes != model.config.n_classes:
        raise CheckpointError(
            f"class scheme {scheme.name!r} has {scheme.n_classes} classes but the model predicts {model.config.n_classes}"
        )
    for name, size in (("global_size", global_size), ("patch_size", patch_size)):
        if whole_pixels(size, 8) is None:
            raise CheckpointError(f"{name} must be a whole number of pixels, 8 or more, got {size!r}")
    if not focal_gamma >= 0:
        raise CheckpointError(f"focal_gamma must be 0 or more, got {focal_gamma!r}")
    state = {
        k: (v.detach().half() if half and v.is_floating_point() else v.detach()).cpu().contiguous()
        for k, v in model.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "glgeo_version": __version__,
        "config": model.config.to_dict(),
        "scheme": scheme.to_dict(),
        "input_scaling": (input_scaling or InputScaling()).to_dict(),
        "global_size": int(global_size),
        "patch_size": int(patch_size),
        "focal_gamma": float(focal_gamma),
        "metadata": dict(metadata or {}),
        "state_dict": state,
    }
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    try:
        torch.save(payload, tmp)
        tmp.replace(path)
    except (OSError, RuntimeError) as exc:  # a full disk: torch says only "file write failed"
        full = disk_full_error(exc, path)
        if full is None:
            raise
        raise full from None
    finally:
        tmp.unlink(missing_ok=True)
    return path


def resolve_checkpoint(path_or_name: str | Path) -> Path:
    """The file of a checkpoint path or zoo model name, without reading it.

    Raises:
        CheckpointError: neither a file nor a zoo model; the message lists the zoo models.
    """
    path = Path(path_or_name)
    if path.is_file():
        return path
    from .zoo import list_models, zoo_path  # local: the zoo imports this module

    name = str(path_or_name)
    if name in list_models():
        return zoo_path(name)
    raise CheckpointError(
        f"no checkpoint file or zoo model called {name!r}; zoo models: {', '.join(list_models()) or 'none'}"
        " (or pass a path to a .pt file)"
    )


def load_checkpoint(path_or_name: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Load a glgeo checkpoint file, or a zoo model by name.

    Raises:
        CheckpointError: not found, not a glgeo checkpoint (a released GLNet file gets a
            hint to run ``glgeo import-glnet``), or a glgeo checkpoint whose contents do not
            fit together (a part missing or of the wrong type, an architecture this glgeo
            refuses, weights with other names or shapes than that architecture's, a class
            scheme with another class count): the message names the file and the part.
    """
    path = resolve_checkpoint(path_or_name)
    try:
        # mmap: the weights are paged in from the file instead of being read into a copy.
        payload = torch.load(path, map_location=map_location, weights_only=True, mmap=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: {_unreadable_reason(path, exc)}; give a glgeo checkpoint"
            " (glgeo train writes them) or a zoo model name (glgeo models lists them)"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        state = payload.get("state_dict") if isinstance(payload, dict) else None
        inner = state if isinstance(state, dict) else payload  # a state dict wrapped as {"state_dict": ...}
        keys = list(inner)[:3] if isinstance(inner, dict) else []
        hint = (
            "; it looks like a released GLNet file: convert it with `glgeo import-glnet`"
            if any(str(k).startswith(("module.", "resnet_", "fpn_")) for k in keys)
            else ""
        )
        raise CheckpointError(f"{str(path)!r} is not a glgeo checkpoint{hint}")
    version = payload.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise _inconsistent(path, f"its format version ('format_version') is {version!r}, not a whole number")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{str(path)!r} was written by a newer glgeo; upgrade glgeo to read it")
    config = _config_of(payload, path)
    scheme = _scheme_of(payload, path)
    settings = _settings_of(payload, path)
    state = _state_of(payload, path)
    del payload
    # Built without memory or random initialisation, then given the file's tensors: loading
    # costs the weights once, not a random model plus a copy.
    with torch.device("meta"):
        model = GLNet(config)
    _check_weights_fit(model, state, path)
    if scheme.n_classes != config.n_classes:
        raise _inconsistent(
            path, f"its class scheme {scheme.name!r} has {scheme.n_classes} classes but its model predicts {config.n_classes}"
        )
    # Copies, not views: a tensor left on the memory-mapped file (even one small integer
    # buffer) keeps the whole file mapped, and resident, for the model's life.
    state = {k: v.to(torch.float32, copy=True) if v.is_floating_point() else v.clone() for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:  # what the key and shape checks above cannot see (a dtype torch refuses)
        raise _inconsistent(path, f"its weights do not load into its architecture's model: {_first_line(exc)}") from None
    model.eval()
    return Checkpoint(model=model, scheme=scheme, path=path, **settings)


def _inconsistent(path: Path, problem: str) -> CheckpointError:
    """The error for a glgeo checkpoint whose contents do not fit together."""
    return CheckpointError(
        f"checkpoint {str(path)!r} is inconsistent: {problem}; the file is damaged or from another glgeo version:"
        " copy it again, or write it again with glgeo train or glgeo import-glnet"
    )


def _first_line(exc: BaseException) -> str:
    """An exception's message, its first non-empty line only (torch's run to many lines,
    the first of ``load_state_dict``'s only a heading)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    return lines[0] if lines else type(exc).__name__


def _entry(payload: dict, key: str, path: Path, kind: type, what: str) -> Any:
    """``payload[key]``, refused unless it is there and a ``kind``."""
    if key not in payload:
        raise _inconsistent(path, f"it has no {what} ({key!r})")
    value = payload[key]
    if not isinstance(value, kind):
        raise _inconsistent(path, f"its {what} ({key!r}) is a {type(value).__name__}, not a {kind.__name__}")
    return value


#: The :class:`GLNetConfig` fields in words (messages name no field that is also an
#: argument of glgeo's: the command line would show it as a flag), and the type of each.
_CONFIG_FIELDS: dict[str, tuple[str, type]] = {
    "backbone": ("backbone", str),
    "n_classes": ("class count", int),
    "mode": ("mode", str),
    "pyramid_channels": ("pyramid width", int),
    "segmentation_channels": ("segmentation width", int),
    "l2g_normalization": ("L -> G normalization", str),
}


def _config_of(payload: dict, path: Path) -> GLNetConfig:
    """The architecture a checkpoint records."""
    config = _entry(payload, "config", path, dict, "architecture")
    unknown = [repr(k) for k in config if k not in _CONFIG_FIELDS]
    if unknown:
        raise _inconsistent(path, f"its architecture has fields this glgeo does not know: {', '.join(unknown[:5])}")
    for key, value in config.items():
        what, kind = _CONFIG_FIELDS[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise _inconsistent(
                path, f"its architecture's {what} is {value!r}, not {'a whole number' if kind is int else 'a name'}"
            )
    try:
        return GLNetConfig(**config)
    except (ValueError, UnknownNameError) as exc:  # InputError is a ValueError: a value GLNetConfig refuses
        raise _inconsistent(path, f"its architecture is refused: {_first_line(exc)}") from None


def _scheme_of(payload: dict, path: Path) -> ClassScheme:
    """The class scheme a checkpoint records."""
    data = _entry(payload, "scheme", path, dict, "class scheme")
    try:
        return ClassScheme.from_dict(data)
    except (TypeError, ValueError) as exc:  # InputError is a ValueError
        raise _inconsistent(path, f"its class scheme is refused: {_first_line(exc)}") from None


def _settings_of(payload: dict, path: Path) -> dict[str, Any]:
    """A checkpoint's input scaling, sizes, focal gamma and metadata, as :class:`Checkpoint`
    takes them."""
    scaling = _entry(payload, "input_scaling", path, dict, "input scaling")
    try:
        input_scaling = InputScaling(**scaling)
    except (TypeError, ValueError) as exc:  # unknown fields, values that are no numbers, max <= min
        raise _inconsistent(path, f"its input scaling is refused: {_first_line(exc)}") from None
    sizes = {}
    for key, what in (("global_size", "global image size"), ("patch_size", "patch size")):
        if key not in payload:
            raise _inconsistent(path, f"it has no {what}")
        sizes[key] = whole_pixels(payload[key], 8)
        if sizes[key] is None:
            raise _inconsistent(path, f"its {what} is {payload[key]!r}, not a whole number of pixels, 8 or more")
    if "focal_gamma" not in payload:
        raise _inconsistent(path, "it has no focal gamma")
    gamma = payload["focal_gamma"]
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma >= 0:
        raise _inconsistent(path, f"its focal gamma is {gamma!r}, not a number, 0 or more")
    metadata = payload.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _inconsistent(path, f"its metadata ('metadata') is a {type(metadata).__name__}, not a dict")
    return dict(input_scaling=input_scaling, focal_gamma=float(gamma), metadata=dict(metadata), **sizes)


def _state_of(payload: dict, path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint's weights, refused unless they are tensors by name."""
    state = _entry(payload, "state_dict", path, dict, "weights")
    wrong = [str(k) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if wrong:
        raise _inconsistent(path, f"its weights ('state_dict') hold {len(wrong)} entries that are no named tensors, e.g. {wrong[0]}")
    return state


def _check_weights_fit(model: GLNet, state: Mapping[str, torch.Tensor], path: Path) -> None:
    """Refuse weights with other keys or shapes than the model their checkpoint's config builds."""
    target = model.state_dict()
    missing = [k for k in target if k not in state]
    unexpected = [k for k in state if k not in target]
    wrong = [k for k in state if k in target and tuple(state[k].shape) != tuple(target[k].shape)]
    if not (missing or unexpected or wrong):
        return
    cfg = model.config
    problems = []
    if wrong:
        k = wrong[0]
        more = f" (and {len(wrong) - 1} more tensors)" if len(wrong) > 1 else ""
        problems.append(
            f"size mismatch for {k}: {tuple(state[k].shape)} in the file, {tuple(target[k].shape)} in the model{more}"
        )
    if missing:
        problems.append(f"{len(missing)} weights missing, e.g. {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"{len(unexpected)} weights it has no place for, e.g. {', '.join(unexpected[:3])}")
    raise _inconsistent(
        path,
        f"its weights do not fit its architecture ({cfg.backbone}, {cfg.n_classes} classes, mode {cfg.mode}, heads"
        f" {cfg.pyramid_channels}/{cfg.segmentation_channels}): {'; '.join(problems)}",
    )


def _unreadable_reason(path: str | Path, exc: Exception) -> str:
    """Why ``torch.load`` could not read a file, in words (torch's own messages for a file
    that is no checkpoint at all are about zip archives, mmap or pickle opcodes)."""
    try:
        size = Path(path).stat().st_size
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as error:
        return error.strerror or str(error)
    if size == 0:
        return "the file is empty"
    if head[:2] != b"PK" and head[:1] != b"\x80":  # a zip archive (torch.save) or a pickle
        return "it is not a PyTorch file (torch.save)"
    if head[:2] == b"PK":
        import zipfile

        if not zipfile.is_zipfile(path):  # its end is missing: a copy or download cut short
            return f"it is incomplete or damaged ({size:,} bytes, the end of its archive missing): copy or download it again"
    return str(exc) or type(exc).__name__


# ---------------------------------------------------------------- released files
def _read_released(path: str | Path) -> dict[str, torch.Tensor]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"released checkpoint {str(path)!r} not found") from None
    except Exception as exc:
        raise CheckpointError(
            f"cannot read released checkpoint {str(path)!r}: {_unreadable_reason(path, exc)}; give the .pth files"
            " of the released GLNet code"
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{str(path)!r} does not hold a state dict (it holds a {type(state).__name__}); give the .pth files of"
            " the released GLNet code, each a model's state_dict"
        )
    return {k.removeprefix("module."): v for k, v in state.items()}


@functools.lru_cache(maxsize=1)
def released_key_names() -> frozenset[str]:
    """Every key a released GLNet file holds (without DataParallel's ``module.``): each of
    the three files holds all of them, whatever the stage that trained it."""
    with torch.device("meta"):
        model = GLNet(GLNetConfig("resnet50", 2, "bidirectional", l2g_normalization="released"))
    return frozenset(src for _, src in released_source_keys(model).values())


#: Released keys of each branch, by prefix: what a stage trains (stage 1 the global branch,
#: stage 2 the local branch, stage 3 the global branch again).
_BRANCH_PREFIX = {"global": "resnet_global.", "local": "resnet_local."}


def _same_branch(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], branch: str) -> bool:
    """Whether two released files hold the very same weights for a branch's backbone."""
    prefix = _BRANCH_PREFIX[branch]
    keys = [k for k in a if k.startswith(prefix) and a[k].is_floating_point()]
    return bool(keys) and all(k in b and a[k].shape == b[k].shape and torch.equal(a[k], b[k]) for k in keys)


def _check_released_roles(states: dict[str, dict[str, torch.Tensor]], files: dict[str, str | Path]) -> None:
    """Refuse files given in the wrong roles: a branch the file's stage trains that is
    identical to the stage-1 file's (untrained there, or trained in stage 1 only)."""
    flags = {"global": "--global", "g2l": "--g2l", "l2g": "--l2g"}
    seen: dict[Path, str] = {}
    for role, path in files.items():
        resolved = Path(path).resolve()
        if resolved in seen:
            raise CheckpointError(
                f"{str(path)!r} is given as both the {seen[resolved]} and the {role} file (--{seen[resolved]}, "
                f"{flags[role]}); give the released code's global, global-to-local and local-to-global files"
            )
        seen[resolved] = role
    first = states["global"]
    for role, stage, name in (("g2l", 2, "global-to-local"), ("l2g", 3, "local-to-global")):
        if role not in states:
            continue
        if _same_branch(states[role], first, "local"):
            raise CheckpointError(
                f"the {flags[role]} file {str(files[role])!r} holds the --global file's local branch, which stage 1"
                f" leaves untrained: it is not the {name} (stage {stage}) file; give that one"
            )
    if "l2g" in states and _same_branch(states["l2g"], first, "global"):
        raise CheckpointError(
            f"the --l2g file {str(files['l2g'])!r} holds the --global file's global branch, which stage 3 retrains:"
            " it is not the local-to-global (stage 3) file; give that one"
        )


def _head_source(dst: str, src_prefix: str, ext: bool) -> str:
    """Released key for a glgeo head key such as ``lateral.0.weight``."""
    conv, _, param = dst.rpartition(".")
    name = HEAD_KEY_MAP[conv]
    if ext and name not in ("smooth", "classify"):
        name += "_ext"
    return f"{src_prefix}.{name}.{param}"


def released_source_keys(model: GLNet) -> dict[str, tuple[str, str]]:
    """For every key of ``model``'s state dict: (released file role, released key).

    Roles are ``global``, ``g2l`` and ``l2g``.
    """
    bidirectional = model.config.mode == "bidirectional"
    local_role = "l2g" if bidirectional else "g2l"
    out: dict[str, tuple[str, str]] = {}
    for key in model.state_dict():
        part, _, rest = key.partition(".")
        if part == "aggregation":
            out[key] = (local_role, f"ensemble_conv.{rest}")
            continue
        sub, _, rest = rest.partition(".")
        role, resnet, fpn, ext = {
            "global_branch": ("global", "resnet_global", "fpn_global", False),
            "local_branch": (local_role, "resnet_local", "fpn_local", False),
            "global_l2g": ("l2g", "resnet_global", "fpn_global", True),
        }[part]
        out[key] = (role, f"{resnet}.{rest}") if sub == "backbone" else (role, _head_source(rest, fpn, ext))
    return out


def import_released(
    global_path: str | Path,
    g2l_path: str | Path | None,
    l2g_path: str | Path | None,
    scheme: ClassScheme,
) -> GLNet:
    """Build a ResNet-50 GLNet from the authors' released checkpoint files.

    With ``l2g_path`` the model is bidirectional, without it G -> L. A bidirectional model
    is the global file's global branch (the G -> L context) and everything else from the
    local-to-global file, as the released code evaluates it: ``g2l_path`` is not read then
    and may be ``None``.

    Raises:
        CheckpointError: a file is unreadable, lacks keys or holds keys no released file
            has (named in the message), has tensors of unexpected shapes, a class count
            different from ``scheme``'s, or is given in the wrong role (the same file
            twice, a stage-1 file as a later stage's).
    """
    if g2l_path is None and l2g_path is None:
        raise CheckpointError("give the global-to-local file (g2l, --g2l) or the local-to-global file (l2g, --l2g)")
    mode = "bidirectional" if l2g_path is not None else "g2l"
    model = GLNet(GLNetConfig("resnet50", scheme.n_classes, mode, l2g_normalization="released"))
    files: dict[str, str | Path] = {"global": global_path}
    if l2g_path is not None:
        files["l2g"] = l2g_path
    else:
        files["g2l"] = g2l_path  # type: ignore[assignment]
    states = {role: _read_released(path) for role, path in files.items()}
    known = released_key_names()
    for role, state in states.items():
        unknown = sorted(set(state) - known)
        if unknown:
            raise CheckpointError(
                f"{role} file {str(files[role])!r} holds {len(unknown)} keys no released GLNet file has, e.g. "
                f"{', '.join(unknown[:4])}: it is not a checkpoint of the released code's ResNet-50 GLNet (another"
                " backbone or a changed model), which is all import-glnet converts"
            )
        classify = state.get("fpn_global.classify.weight")
        if classify is not None and classify.shape[0] != scheme.n_classes:
            others = ", ".join(f"{n} ({get_scheme(n).n_classes})" for n in list_schemes())
            raise CheckpointError(
                f"{role} file {str(files[role])!r} predicts {classify.shape[0]} classes but scheme "
                f"{scheme.name!r} has {scheme.n_classes}; pass a scheme of {classify.shape[0]} classes (scheme=NAME,"
                f" --scheme; glgeo has {others}; glgeo.schemes.register_scheme adds one)"
            )
    _check_released_roles(states, files)
    target = model.state_dict()
    new_state = {}
    missing: dict[str, list[str]] = {}
    for key, (role, src) in released_source_keys(model).items():
        tensor = states[role].get(src)
        if tensor is None:
            missing.setdefault(role, []).append(src)
            continue
        if tuple(tensor.shape) != tuple(target[key].shape):
            raise CheckpointError(
                f"{role} file {str(files[role])!r}: {src} has shape {tuple(tensor.shape)}, expected "
                f"{tuple(target[key].shape)} (a ResNet-50 GLNet with 256/128 head widths)"
            )
        new_state[key] = tensor
    if missing:
        detail = "; ".join(
            f"{role} file {str(files[role])!r} lacks {len(keys)} keys, e.g. {', '.join(keys[:4])}"
            for role, keys in missing.items()
        )
        raise CheckpointError(f"released checkpoint incomplete: {detail}")
    model.load_state_dict(new_state, strict=True)
    return model.eval()


def save_released(
    path: str | Path,
    model: GLNet,
    scheme: ClassScheme,
    *,
    global_size: int = 508,
    patch_size: int = 508,
    focal_gamma: float = 3.0,
    footprint: int | None = None,
    gsd: float | None = None,
    sources: Mapping[str, str | Path] | None = None,
) -> Path:
    """Write a model :func:`import_released` built as a glgeo checkpoint, with what the
    released training used, so that ``glgeo segment`` reads scenes as it did.

    Args:
        global_size, patch_size, focal_gamma: the released code's (508, 508, 3).
        footprint: side in px of its training images (its context footprint); default the
            scheme's dataset's (:data:`PUBLISHED_IMAGE_SIZE`).
        gsd: metres per pixel of its training imagery, which georeferenced scenes are read
            at; default the scheme's dataset's (:data:`PUBLISHED_GSD`), else unrecorded
            (scenes read at their own resolution).
        sources: the released files by role (``global``, ``g2l``, ``l2g``), recorded by name.

    Raises:
        CheckpointError: no ``footprint`` and the scheme's dataset is not a published one.
    """
    if footprint is None:
        footprint = PUBLISHED_IMAGE_SIZE.get(scheme.name)
        if footprint is None:
            raise CheckpointError(
                f"the released files' image size for scheme {scheme.name!r} is not known: pass footprint (--footprint)"
            )
    if gsd is None:
        gsd = PUBLISHED_GSD.get(scheme.name)
    training: dict[str, Any] = {"dataset": scheme.name, "scene_scale": 1.0, "footprint_px": int(footprint)}
    if gsd is not None:
        # as glgeo train records them: what the patches' and the global image's pixels were on the ground
        training.update(gsd_m=float(gsd), global_gsd_m=float(gsd) * footprint / global_size)
    return save_checkpoint(
        path, model, scheme, InputScaling(0.0, 255.0), global_size=global_size, patch_size=patch_size,
        focal_gamma=focal_gamma,
        metadata={
            "source": "GLNet authors' released checkpoints (Chen et al., CVPR 2019)",
            "released_files": {k: Path(v).name for k, v in (sources or {}).items()},
            "training": training,
        },
    )
