"""Model files: ``.safetensors`` weights with self-describing metadata. No pickle.

The safetensors header metadata (string -> string) of format ``tunableconv-model/2`` holds:

- ``format``: ``tunableconv-model/2``
- ``architecture``: a key of :data:`tunableconv.models.ARCHITECTURES`
- ``arguments``: JSON of the constructor arguments
- ``num_params``: the number P of interactive parameters
- ``knob_space``: JSON of the model's :class:`~tunableconv.knobs.KnobSpace` — knob names and
  descriptions, domain, default p, named sliders, calibrations, scale factor, whether tiled
  inference is exact, receptive field, colour space. Every runner (restore, sweep,
  calibrate, eval, the app) reads the knobs from here only.
- ``parameters``: JSON map from each tensor name to what it is (shape and meaning)
- ``info``: JSON with anything else (task, recipe, training steps, wall time, metrics, ...).

Format ``tunableconv-model/1`` (the first shipped denoisers) has a ``knobs`` list instead of
``knob_space`` and keeps the strength slider and its calibration in ``info``; it is read as
it is and its knob space is migrated (:meth:`KnobSpace.from_model_info`), with the tiling
facts taken from the architecture. Files are never rewritten on reading.

Opening a file (:func:`read_metadata`, :func:`load_model`) validates it once, in one place
(:func:`open_model_file`): every metadata field's JSON type, the architecture against the
explicit list, the constructor arguments' types and ranges (the model is built, with a
memory budget, and its tensor names, shapes and dtypes are compared with the header), the
knob space. Any problem is one :class:`~tunableconv.errors.InputError` line naming the file
and the field.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from ..knobs import KnobSpace

FORMAT_1 = "tunableconv-model/1"
FORMAT_2 = "tunableconv-model/2"
#: The format :func:`save_model` writes.
FORMAT = FORMAT_2
#: The formats :func:`read_metadata` reads.
FORMATS = (FORMAT_1, FORMAT_2)

#: Bounds of an integer constructor argument (channels, blocks, kernel size, ...).
MAX_INT_ARGUMENT = 65536
#: Floating tensor dtypes a model file may hold (safetensors names).
FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")


@dataclass
class ModelInfo:
    """What a model file says about itself.

    ``knob_space`` is the raw JSON object of a format-2 file (None for format 1); the parsed,
    validated :class:`~tunableconv.knobs.KnobSpace` is :attr:`space` (format 1: migrated).
    """

    architecture: str
    arguments: dict
    num_params: int
    knobs: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)
    path: str | None = None
    knob_space: dict | None = None
    format: str = FORMAT_1
    _space: "KnobSpace | None" = field(default=None, repr=False, compare=False)

    @property
    def knob_names(self) -> list[str]:
        return [k["name"] for k in self.knobs]

    @property
    def space(self) -> "KnobSpace":
        """The parsed knob space (validated when the file was opened; for a :class:`ModelInfo`
        built by hand, parsed here on first use)."""
        if self._space is None:
            from ..knobs import KnobSpace

            self._space = KnobSpace.from_model_info(self)
        return self._space


def describe_parameters(model: nn.Module) -> dict[str, str]:
    """A short description of every tensor: its shape and, for tunable layers, its layout."""
    from ..nn.layers import TunableConv2d, TunableConvTranspose2d, TunableLinear
    from ..nn.mapping import ParamMap

    desc = {}
    owners = {n: m for n, m in model.named_modules()}
    for name, t in model.state_dict().items():
        mod_name, _, leaf = name.rpartition(".")
        mod = owners.get(mod_name)
        shape = "x".join(map(str, t.shape))
        if isinstance(mod, (TunableConv2d, TunableConvTranspose2d, TunableLinear)) and leaf in ("weight", "bias"):
            what = f"{mod.num_weight_sets} stacked {leaf} sets of a tunable {type(mod).__name__[7:]}, mixed by the aggregation weights"
        elif isinstance(mod, ParamMap):
            what = f"affine map p -> aggregation weights ({leaf}: {'A, (K, P)' if leaf == 'weight' else 'b, (K,)'})"
        else:
            what = f"{type(mod).__name__ if mod is not None else 'tensor'} {leaf}"
        desc[name] = f"[{shape}] {what}"
    return desc


# ----------------------------------------------------------------------------------------
# facts about a model that the knob space records
# ----------------------------------------------------------------------------------------
def model_facts(model: nn.Module) -> tuple[bool, int | None]:
    """(tiling_exact, receptive_field) of a model, as the task layer records them for the
    models it trains (:func:`tunableconv.tasks.runner_facts`, the one definition): tiling is
    exact unless a submodule normalises or pools over the image (instance, group or layer
    norm, adaptive pooling, attention); the receptive radius in input pixels is the model's
    ``receptive_field()``, the ResNet formula, or None (unknown)."""
    from ..tasks import runner_facts

    facts = runner_facts(model)
    return facts.tiling_exact, facts.receptive_field


def derive_knob_space(model: nn.Module, info: ModelInfo) -> "KnobSpace":
    """The knob space of a model saved without one, or of a format-1 file: the migration of
    :meth:`KnobSpace.from_model_info` (knob list, domain, ``strength`` slider, calibration,
    scale) plus the tiling facts of :func:`model_facts`."""
    from ..knobs import KnobSpace

    migrated = KnobSpace.from_model_info(replace(info, knob_space=None, _space=None))
    exact, rf = model_facts(model)
    return replace(migrated, tiling_exact=exact, receptive_field=rf)


# ----------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------
def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    knobs: list[dict] | None = None,
    info: dict[str, Any] | None = None,
    knob_space: "KnobSpace | Mapping | None" = None,
) -> Path:
    """Write ``model`` (which has ``architecture`` and ``arguments()``) to a ``.safetensors``
    file of format ``tunableconv-model/2``.

    Args:
        model: a model of :data:`tunableconv.models.ARCHITECTURES`.
        path: the file to write (atomically: temporary file, then rename).
        knobs: ``[{"name", "description"}]`` for the P knobs (default ``p0``, ``p1``, ...);
            with ``knob_space`` given, its names must agree.
        info: anything else (task, recipe, training, metrics, ...), a JSON object.
        knob_space: the model's knob space (a :class:`~tunableconv.knobs.KnobSpace` or its
            dict). None derives it from ``knobs`` and ``info`` exactly as format-1 files are
            migrated (:func:`derive_knob_space`): the ``strength`` slider when
            ``info["strength"]`` is set, ``info["calibration"]``, the architecture's domain
            and scale, the model's tiling facts.

    Raises:
        TypeError: not a tunableconv model.
        ValueError: knobs, knob space and model disagree, or non-floating tensors.
    """
    from safetensors.torch import save

    from ..io import atomic_write
    from ..knobs import KnobSpace

    arch = getattr(model, "architecture", None)
    if arch is None or not hasattr(model, "arguments"):
        raise TypeError("save_model needs a model from tunableconv.models (with .architecture and .arguments())")
    num_params = int(getattr(model, "num_params", 0))
    arguments = model.arguments()
    info = dict(info or {})
    if knob_space is not None:
        space = knob_space if isinstance(knob_space, KnobSpace) else KnobSpace.from_dict(knob_space, "save_model(knob_space=...)")
        space = KnobSpace.from_dict(space.to_dict(), "save_model(knob_space=...)")  # validates a hand-built KnobSpace too
        if knobs is not None and [k.get("name") for k in knobs] != space.names:
            raise ValueError(f"knobs {[k.get('name') for k in knobs]} differ from the knob space's {space.names}")
    else:
        knobs = knobs or [{"name": f"p{i}", "description": ""} for i in range(num_params)]
        if len(knobs) != num_params:
            raise ValueError(f"{len(knobs)} knob descriptions for {num_params} parameters")
        space = derive_knob_space(model, ModelInfo(arch, arguments, num_params, list(knobs), info))
    _check_consistent(space, arguments, num_params, ValueError)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = [k for k, v in tensors.items() if not v.is_floating_point()]
    if bad:
        raise ValueError(f"model files hold floating-point tensors only; {bad[0]} is {tensors[bad[0]].dtype}")
    meta = {
        "format": FORMAT,
        "architecture": arch,
        "arguments": json.dumps(arguments),
        "num_params": str(num_params),
        "knob_space": json.dumps(space.to_dict()),
        "parameters": json.dumps(describe_parameters(model)),
        "info": json.dumps(info),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = save(tensors, metadata=meta)
    atomic_write(path, lambda file: file.write(data))
    return path


def _check_consistent(space: "KnobSpace", arguments: Mapping, num_params: int, error: type[Exception],
                      where: str = "") -> None:
    """The knob space agrees with the architecture: knob count, domain, scale."""
    prefix = f"{where}: " if where else ""
    if space.num_params != num_params:
        raise error(f"{prefix}knob_space has {space.num_params} knob(s) but the model has num_params = {num_params}")
    domain = arguments.get("domain")
    if num_params and isinstance(domain, str) and domain != space.domain:
        raise error(f"{prefix}knob_space.domain {space.domain!r} differs from the architecture's domain {domain!r}")
    upscale = arguments.get("upscale", 1)
    if isinstance(upscale, int) and space.scale != upscale:
        raise error(f"{prefix}knob_space.scale {space.scale} differs from the architecture's upscale {upscale}")


# ----------------------------------------------------------------------------------------
# reading and validating
# ----------------------------------------------------------------------------------------
def read_metadata(path: str | os.PathLike) -> ModelInfo:
    """Read and validate a model file's metadata (formats 1 and 2) without loading its weights.

    The model is built (untrained, under a memory budget) to check the arguments against
    the tensor names, shapes and dtypes of the file's header.
    """
    return open_model_file(path)[0]


def open_model_file(path: str | os.PathLike) -> tuple[ModelInfo, nn.Module]:
    """Validate a model file: (its :class:`ModelInfo` with the parsed knob space, the
    untrained model its metadata describes). Every problem is one :class:`InputError` line
    naming the file and the field."""
    from safetensors import safe_open

    from ..knobs import KnobSpace

    from ..io import path_problem

    path = Path(path)
    problem = path_problem(path)
    if problem:
        raise InputError(f"model file not found: {path}" if problem == "not found" else f"model file {path} {problem}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty (0 bytes), not a model file")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            header = {name: (tuple(f.get_slice(name).get_shape()), str(f.get_slice(name).get_dtype())) for name in f.keys()}
    except Exception as exc:  # safetensors raises several types for corrupt headers
        raise InputError(f"{path} is not a readable .safetensors file ({_one_line(exc)})") from None
    fmt = meta.get("format")
    if fmt not in FORMATS:
        raise InputError(f"{path} is not a tunableconv model file (format {fmt!r}; this tunableconv reads "
                         f"{', '.join(FORMATS)})")

    def fail(field_name: str, why: str) -> InputError:
        return InputError(f"{path}: {field_name} {why}")

    architecture = meta.get("architecture")
    from . import ARCHITECTURES

    if not isinstance(architecture, str) or architecture not in ARCHITECTURES:
        raise fail("architecture", f"{architecture!r} is unknown; known: {', '.join(sorted(ARCHITECTURES))}")
    arguments = _json_field(meta, "arguments", dict, fail)
    info = _json_field(meta, "info", dict, fail, default={})
    try:
        num_params = int(meta.get("num_params", ""))
    except ValueError:
        raise fail("num_params", f"must be a whole number, got {meta.get('num_params')!r}") from None
    if num_params < 0:
        raise fail("num_params", f"must be >= 0, got {num_params}")
    _check_arguments(architecture, arguments, fail)

    stored = None
    if fmt == FORMAT_2:
        stored = _json_field(meta, "knob_space", dict, fail)
        space = KnobSpace.from_dict(stored, str(path))  # validated before the model is built
        knobs = [{"name": k.name, "description": k.description} for k in space.knobs]
    else:
        knobs = _json_field(meta, "knobs", list, fail, default=[])
        _check_format1_knobs(knobs, num_params, fail)

    for name, (shape, dtype) in header.items():
        if dtype not in FLOAT_DTYPES:
            raise fail(f"tensor {name}", f"has dtype {dtype}: model weights must be floating point ({', '.join(FLOAT_DTYPES)})")
    model = _build(architecture, arguments, header, fail)
    if int(getattr(model, "num_params", 0)) != num_params:
        raise fail("num_params", f"is {num_params} but the architecture's arguments give {getattr(model, 'num_params', 0)}")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # state an architecture added later (``optional_state``: the model fills it in when a file lacks it)
    optional = set(getattr(model, "optional_state", ()))
    missing, unexpected = sorted(set(expected) - set(header) - optional), sorted(set(header) - set(expected))
    if missing or unexpected:
        raise InputError(f"{path} does not match its architecture: missing {missing[:3]}, unexpected {unexpected[:3]}")
    for name, shape in expected.items():
        if name in header and header[name][0] != shape:
            raise fail(f"tensor {name}", f"has shape {list(header[name][0])} but the architecture's arguments give {list(shape)}")

    result = ModelInfo(architecture, arguments, num_params, knobs, info, str(path), stored, fmt)
    space = KnobSpace.from_dict(stored, str(path)) if stored is not None else derive_knob_space(model, result)
    _check_consistent(space, arguments, num_params, InputError, str(path))
    result._space = space
    return result, model


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]


def _json_field(meta: Mapping[str, str], key: str, kind: type, fail, default: Any = MISSING) -> Any:
    if key not in meta:
        if default is not MISSING:
            return default
        raise fail(key, "is missing")
    try:
        value = json.loads(meta[key])
    except ValueError as exc:
        raise fail(key, f"is not valid JSON ({_one_line(exc)})") from None
    if not isinstance(value, kind):
        raise fail(key, f"must be a JSON {'object' if kind is dict else 'list'}, got {type(value).__name__}")
    return value


def _check_format1_knobs(knobs: list, num_params: int, fail) -> None:
    if len(knobs) != num_params:
        raise fail("knobs", f"lists {len(knobs)} knob(s) but num_params is {num_params}")
    for i, k in enumerate(knobs):
        if not isinstance(k, dict) or not isinstance(k.get("name"), str) or not k["name"].strip():
            raise fail(f"knobs[{i}]", "must be an object with a non-empty 'name'")
        if not isinstance(k.get("description", ""), str):
            raise fail(f"knobs[{i}].description", "must be a string")
    names = [k["name"] for k in knobs]
    if len(set(names)) != len(names):
        raise fail("knobs", "has duplicate names")


def _check_arguments(architecture: str, arguments: dict, fail) -> None:
    """Known argument names; JSON types against the config's annotations; integer bounds."""
    from . import ARCHITECTURES

    _, cfg_cls = ARCHITECTURES[architecture]
    annotations = {f.name: f.type.__name__ if isinstance(f.type, type) else str(f.type) for f in fields(cfg_cls)}
    unknown = sorted(set(arguments) - set(annotations))
    if unknown:
        raise fail("arguments", f"has unknown {architecture} argument(s) {', '.join(unknown)}")
    for name, value in arguments.items():
        kinds = [t.strip() for t in annotations[name].split("|")]
        if value is None:
            if "None" not in kinds:
                raise fail(f"arguments.{name}", "must not be null")
            continue
        if "bool" in kinds and isinstance(value, bool):
            continue
        if "int" in kinds and isinstance(value, int) and not isinstance(value, bool):
            if not 0 <= value <= MAX_INT_ARGUMENT:
                raise fail(f"arguments.{name}", f"must be an integer in [0, {MAX_INT_ARGUMENT}], got {value}")
            continue
        if "float" in kinds and isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise fail(f"arguments.{name}", f"must be a finite number, got {value}")
            continue
        if "str" in kinds and isinstance(value, str):
            continue
        simple = {"int", "float", "bool", "str", "None"}
        if set(kinds) <= simple:
            want = " or ".join({"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
                                "None": "null"}[k] for k in kinds)
            raise fail(f"arguments.{name}", f"must be {want}, got {json.dumps(value)[:60]}")


class _AllocationBudget(TorchFunctionMode):
    """Refuses tensor factories beyond a budget of elements while a model is built from
    arguments read from a file (so a file cannot ask for terabytes)."""

    FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.rand, torch.randn, torch.full}

    def __init__(self, budget: int) -> None:
        super().__init__()
        self.budget, self.used = budget, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.FACTORIES:
            if func is torch.full:
                size = kwargs.get("size", args[0] if args else ())
            else:
                size = kwargs.get("size", args[0] if len(args) == 1 and isinstance(args[0], (tuple, list)) else args)
            if isinstance(size, (tuple, list, torch.Size)) and all(isinstance(s, int) for s in size):
                self.used += math.prod(size) if size else 1
                if self.used > self.budget:
                    raise MemoryError(f"the arguments ask for more than {self.budget:,} parameters")
        return func(*args, **kwargs)


def _build(architecture: str, arguments: dict, header: Mapping[str, tuple], fail) -> nn.Module:
    """The untrained model of validated arguments; any failure is one line naming ``arguments``."""
    from . import ARCHITECTURES

    cls, cfg_cls = ARCHITECTURES[architecture]
    stored = sum(math.prod(shape) for shape, _ in header.values())
    budget = 4 * stored + (1 << 22)  # the weights, their initialisation's temporaries, small slack
    try:
        with warnings.catch_warnings(), _AllocationBudget(budget):
            warnings.simplefilter("ignore")  # e.g. "zero-element tensors": the error, if any, is what counts
            return cls(cfg_cls(**arguments))
    except MemoryError as exc:
        raise fail("arguments", f"describe a model far larger than the file's tensors ({exc})") from None
    except Exception as exc:  # constructors raise ValueError, TypeError, RuntimeError, ... for bad values
        raise fail("arguments", f"cannot build a {architecture} ({_one_line(exc)})") from None


def build_model(info: ModelInfo) -> nn.Module:
    """Construct (untrained) the architecture a :class:`ModelInfo` describes."""
    from . import ARCHITECTURES

    if info.architecture not in ARCHITECTURES:
        raise InputError(f"unknown architecture {info.architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}")
    cls, cfg_cls = ARCHITECTURES[info.architecture]
    names = {f.name for f in fields(cfg_cls)}
    unknown = set(info.arguments) - names
    if unknown:
        raise InputError(f"unknown {info.architecture} arguments in model file: {', '.join(sorted(unknown))}")
    try:
        return cls(cfg_cls(**info.arguments))
    except Exception as exc:
        raise InputError(f"{info.path or 'model file'}: arguments cannot build a {info.architecture} ({_one_line(exc)})") from None


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelInfo]:
    """Load a model file (formats 1 and 2): returns (model in eval mode, its :class:`ModelInfo`)."""
    from safetensors.torch import load_file

    info, model = open_model_file(path)
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise InputError(f"cannot read the tensors of {path} ({_one_line(exc)})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(f"{path}: tensor shapes do not match the architecture ({_one_line(exc)})") from None
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError, ValueError) as exc:
        raise InputError(f"cannot use device {str(device)!r} ({_one_line(exc)})") from None
    return model.eval(), info
