"""Recipes: dataclass configs, saved and loaded as YAML or JSON, overridable from the CLI.

A recipe has four sections::

    model:  architecture and its arguments
    data:   training/validation data and patching
    task:   what is learned (degradation, objectives, p sampler): a tagged union keyed by
            ``task.name``, one dataclass per task (``tunableconv.tasks.TASKS[name].section_class``)
    train:  optimisation and bookkeeping

``--set train.lr=2e-4`` overrides one field (values are parsed as YAML: numbers, lists,
booleans); nested fields are reached with more dots (``--set train.disc.lr=2e-4``). Unknown
sections or fields are errors. ``--set task.name=T`` switches the task: the section becomes
task T's, with T's defaults.

Validation: :meth:`Recipe.validate` checks every field of every section, its type and its
range (listed in each section's docstring; one ``validate`` method per section, next to its
dataclass), and that the model can be built from ``model`` (on the meta device: no memory
is allocated), before any work starts: the trainer and ``tunableconv train`` call it before
loading data, building the model or creating the run folder. Each failure is one
:class:`~tunableconv.errors.InputError` line naming the field, e.g. ``train.lr must be a
finite number > 0, got -1``. Loading and ``--set`` check only the structure (sections that
are mappings, known field names), so that several overrides can fix a recipe together.
"""

from __future__ import annotations

import copy as _copy
import dataclasses
import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
import yaml

from ..errors import InputError
from ..tasks import DEFAULT_TASK, TASKS, TaskSection, build_task, default_task_section
from ..tasks.base import check_bool, check_choice, check_int, check_number, check_numbers, check_text

#: the most steps of a run (``train.steps``, and every step count: warm-up, milestones, the
#: logging, validation and checkpoint periods): 200x the paper's 500 000
MAX_STEPS = 100_000_000
#: the largest batch (``train.batch_size``): 64x the paper's 16
MAX_BATCH_SIZE = 1024
#: the largest training patch side (``data.patch_size``). Restoration networks train on
#: patches of 48-256 pixels (the paper 64, ESRGAN 128-192); 1024 leaves room for any of them
#: while a typo cannot ask for the impossible (a 100 000-pixel patch is 120 GB per sample).
#: Images smaller than the patch are padded, so the bound is not about the training images.
MAX_PATCH_SIZE = 1024
#: the largest validation crop side (``data.val_crop``; 0: full images)
MAX_VAL_CROP = 16384
#: the most validation images (``data.val_images``)
MAX_VAL_IMAGES = 10_000
#: the most data workers (``data.num_workers``) and torch threads (``train.threads``): more
#: than any machine has cores; 10 000 workers would fork 10 000 processes
MAX_WORKERS = 256
MAX_THREADS = 256
#: the largest model (parameters, counted on the meta device): 4 GB of float32 weights, 16 GB
#: with the gradients and Adam's two moments; denoise-paper's ResNet has 2.4 M
MAX_MODEL_PARAMETERS = 1_000_000_000
#: the devices a run can name: ``cpu``, ``cuda``, ``cuda:N`` (torchrun picks the GPU of each
#: process), ``mps``
DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?|mps")
#: optimisers and LR schedules by name
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("cosine", "step", "constant")


def _validate_optimizer(sec, where: str) -> None:
    """The optimiser fields shared by ``train`` and ``train.disc``."""
    check_choice(f"{where}.optimizer", sec.optimizer, OPTIMIZERS)
    check_number(f"{where}.lr", sec.lr, 0.0, lo_open=True)
    check_numbers(f"{where}.betas", sec.betas, 0.0, 1.0, hi_open=True, length=2)
    check_number(f"{where}.weight_decay", sec.weight_decay, 0.0, 1.0)


def _validate_schedule(sec, where: str, schedules: tuple[str, ...]) -> None:
    """The LR-schedule fields shared by ``train`` and ``train.disc``."""
    check_choice(f"{where}.schedule", sec.schedule, schedules)
    check_int(f"{where}.warmup_steps", sec.warmup_steps, 0, MAX_STEPS)
    check_number(f"{where}.min_lr_ratio", sec.min_lr_ratio, 0.0, 1.0)
    check_numbers(f"{where}.milestones", sec.milestones, 1, MAX_STEPS, integer=True)
    check_number(f"{where}.gamma", sec.gamma, 0.0, 1.0, lo_open=True)


@dataclass
class ModelSection:
    """The ``model`` section: ``arch``, a name of :data:`tunableconv.models.ARCHITECTURES`, and
    ``args``, a mapping of its config's arguments (each of the config's type; integers in
    [0, 65536]; the knob count and domain may be left to the task). The model they describe
    must build, with at most :data:`MAX_MODEL_PARAMETERS` parameters.

    ``init``: a model file (``.safetensors``) to start from instead of a random initialisation,
    or null. A file of the same architecture and arguments is loaded as it is; a plain (fixed)
    twin of a tunable model fills every kernel set with its kernel
    (:func:`tunableconv.nn.load_plain_weights`), so training starts from the fixed network at
    every p (ESRGAN's L1 pretraining). Resuming a run ignores it (the checkpoint has the weights)."""

    arch: str = "resnet"
    args: dict = field(default_factory=dict)
    init: str | None = None

    def validate(self, where: str = "model") -> None:
        from ..models import ARCHITECTURES
        from ..models.files import _check_arguments

        check_choice(f"{where}.arch", self.arch, tuple(ARCHITECTURES))
        if not isinstance(self.args, dict) or not all(isinstance(k, str) for k in self.args):
            raise InputError(f"{where}.args must be a mapping of argument names to values, got {self.args!r:.60}")

        def fail(name: str, message: str) -> InputError:  # names are "arguments" / "arguments.<arg>"
            return InputError(f"{where}.args{name[len('arguments'):]} {message}")

        _check_arguments(self.arch, self.args, fail)
        check_text(f"{where}.init", self.init, optional=True)


@dataclass
class DataSection:
    """The ``data`` section. Fields and their ranges (:meth:`validate`):

    - ``train``: a folder, a name under the data root, or ``default`` (bundled, no download);
      ``val``: the validation images, likewise; both non-empty strings;
    - ``root``: the data root, a non-empty string, or null (``TUNABLECONV_DATA`` / ``../shared/data``);
    - ``patch_size``: the side of the training patches, in [1, :data:`MAX_PATCH_SIZE`];
    - ``num_workers``: data-loading processes, in [0, :data:`MAX_WORKERS`] (0: in the trainer);
    - ``cache``: true or false (decode the training images once);
    - ``val_images``: how many validation images, in [1, :data:`MAX_VAL_IMAGES`];
    - ``val_crop``: their centre crop, 0 (full images) or a side in [1, :data:`MAX_VAL_CROP`].
    """

    train: str = "train/bsds400"  # a folder, a name under the data root, or "default" (bundled, no download)
    root: str | None = None  # data root; None: TUNABLECONV_DATA / ../shared/data
    patch_size: int = 64
    num_workers: int = 2
    cache: bool = True
    val: str = "cbsd68"
    val_images: int = 4
    val_crop: int = 128

    def validate(self, where: str = "data") -> None:
        check_text(f"{where}.train", self.train)
        check_text(f"{where}.root", self.root, optional=True)
        check_int(f"{where}.patch_size", self.patch_size, 1, MAX_PATCH_SIZE)
        check_int(f"{where}.num_workers", self.num_workers, 0, MAX_WORKERS)
        check_bool(f"{where}.cache", self.cache)
        check_text(f"{where}.val", self.val)
        check_int(f"{where}.val_images", self.val_images, 1, MAX_VAL_IMAGES)
        check_int(f"{where}.val_crop", self.val_crop, 0, MAX_VAL_CROP)


@dataclass
class DiscOptimizerSection:
    """The optimiser of the discriminators of adversarial objectives (``train.disc``).

    Every discriminator gets its own optimiser built from these fields, independent of the
    generator's ``train.optimizer/lr/betas/weight_decay``. The defaults are ESRGAN's (Wang et
    al. 2018: Adam, lr 1e-4, betas (0.9, 0.99), no weight decay); no shipped recipe trains a
    discriminator, so they change no existing run.

    The LR at step s is ``lr · factor(s)``, set before every discriminator step:

    - ``schedule="generator"`` (default): the generator's factor at that step (its warm-up,
      cosine / step / constant schedule from ``train.*``), as ESRGAN decays G and D together;
    - ``"cosine"``, ``"step"``, ``"constant"``: the discriminator's own schedule over
      ``train.steps`` from this section's ``warmup_steps``, ``min_lr_ratio``, ``milestones``,
      ``gamma`` (same meaning as the generator's fields).

    Like the generator's, the schedule is a function of the step only: resuming restores it
    with the step counter (the optimiser state, with its last LR, is in the checkpoint too).

    Ranges (:meth:`validate`) are the generator's (see :class:`TrainSection`), and
    ``schedule`` is one of ``generator``, ``cosine``, ``step``, ``constant``.
    """

    optimizer: str = "adam"  # adam, adamw
    lr: float = 1e-4
    betas: list = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    schedule: str = "generator"  # generator (follow the generator's LR factor), cosine, step, constant
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    milestones: list = field(default_factory=list)
    gamma: float = 0.5

    def validate(self, where: str = "train.disc") -> None:
        _validate_optimizer(self, where)
        _validate_schedule(self, where, ("generator", *SCHEDULES))


@dataclass
class TrainSection:
    """The ``train`` section. Fields and their ranges (:meth:`validate`):

    - ``steps``: the run length, in [1, :data:`MAX_STEPS`];
    - ``batch_size``: the global batch, in [1, :data:`MAX_BATCH_SIZE`] (with torchrun,
      divisible by the number of processes);
    - ``optimizer``: ``adam`` or ``adamw``; ``lr``: a finite number > 0 (a loss that becomes
      NaN/Inf stops the run with a message: lower it); ``betas``: two numbers in [0, 1);
      ``weight_decay``: in [0, 1];
    - ``schedule``: ``cosine``, ``step`` or ``constant``; ``warmup_steps``: in [0, MAX_STEPS];
      ``min_lr_ratio`` (the cosine floor, a fraction of lr): in [0, 1]; ``milestones``
      (the step schedule): step numbers in [1, MAX_STEPS]; ``gamma``: in (0, 1];
    - ``grad_clip``: the max gradient norm, a finite number >= 0 (0: off);
    - ``ema``: the EMA decay, in [0, 1) (0: off);
    - ``seed``: in [0, 2^63 - 1];
    - ``threads``: torch threads per process, in [0, :data:`MAX_THREADS`] (0: torch's default);
    - ``channels_last``: true or false;
    - ``device``: ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (:data:`DEVICE_PATTERN`);
    - ``log_every``, ``val_every``, ``ckpt_every``: periods in steps, in [1, MAX_STEPS];
    - ``disc``: the discriminators' optimiser (:class:`DiscOptimizerSection`).
    """

    steps: int = 1000
    batch_size: int = 16
    lr: float = 1e-4
    optimizer: str = "adam"  # adam, adamw
    weight_decay: float = 0.0
    betas: list = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "cosine"  # cosine, step, constant
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01  # cosine floor, as a fraction of lr
    milestones: list = field(default_factory=list)  # step schedule, in steps
    gamma: float = 0.5
    grad_clip: float = 0.0  # max grad norm; 0: off
    ema: float = 0.0  # EMA decay of the weights (with warm-up, see trainer.EMA); 0: off
    seed: int = 0
    threads: int = 0  # torch threads per process; 0: torch's default
    channels_last: bool = False  # NHWC activations: ~1.2x faster CPU steps with a shared p, ~1.03x per-sample
    device: str = "cpu"
    log_every: int = 20
    val_every: int = 500
    ckpt_every: int = 100
    disc: DiscOptimizerSection = field(default_factory=DiscOptimizerSection)  # discriminator optimiser (GAN objectives)

    def validate(self, where: str = "train") -> None:
        check_int(f"{where}.steps", self.steps, 1, MAX_STEPS)
        check_int(f"{where}.batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _validate_optimizer(self, where)
        _validate_schedule(self, where, SCHEDULES)
        check_number(f"{where}.grad_clip", self.grad_clip, 0.0)
        check_number(f"{where}.ema", self.ema, 0.0, 1.0, hi_open=True)
        check_int(f"{where}.seed", self.seed, 0, 2**63 - 1)
        check_int(f"{where}.threads", self.threads, 0, MAX_THREADS)
        check_bool(f"{where}.channels_last", self.channels_last)
        if not (isinstance(self.device, str) and DEVICE_PATTERN.fullmatch(self.device)):
            raise InputError(f"{where}.device must be cpu, cuda, cuda:N or mps, got {self.device!r:.60}")
        for name in ("log_every", "val_every", "ckpt_every"):
            check_int(f"{where}.{name}", getattr(self, name), 1, MAX_STEPS)
        if not isinstance(self.disc, DiscOptimizerSection):
            raise InputError(f"{where}.disc must be a mapping (the discriminators' optimiser), got {self.disc!r:.60}")
        self.disc.validate(f"{where}.disc")


#: a number written as text (YAML 1.1 reads ``1e-4`` as a string)
_NUMBER_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _section_from_dict(cls, d: dict, where: str, what: str = ""):
    """Build dataclass ``cls`` from a mapping, nested dataclass fields included; unknown fields are errors."""
    if not isinstance(d, dict):
        raise InputError(f"recipe section {where!r} must be a mapping, got {d!r}")
    known = {f.name: f for f in fields(cls)}
    bad = set(d) - set(known)
    if bad:
        raise InputError(f"unknown field(s) in recipe section {where!r}{what}: {', '.join(sorted(bad))}")
    kwargs = {}
    for k, v in d.items():
        sub = _NESTED.get((cls, k))
        if sub is not None:
            v = _section_from_dict(sub, {} if v is None else v, f"{where}.{k}")
        elif known[k].type in ("float", float) and isinstance(v, str) and _NUMBER_TEXT.fullmatch(v.strip()):
            v = float(v)  # "1e-4" from YAML: the number it means
        kwargs[k] = v
    return cls(**kwargs)


#: dataclass-valued fields of the sections: (section class, field name) -> field class
_NESTED = {(TrainSection, "disc"): DiscOptimizerSection}

def task_section_class(name: Any) -> type[TaskSection]:
    """The section dataclass of task ``name`` (``TASKS[name].section_class``)."""
    if not isinstance(name, str):
        raise InputError(f"task.name must be a task name ({', '.join(TASKS)}), got {json.dumps(name, default=str)[:60]}")
    if name not in TASKS:
        raise InputError(f"unknown task {name!r} in recipe section 'task'; known: {', '.join(TASKS)}")
    return TASKS[name].section_class


def task_section_from_dict(d: Any) -> TaskSection:
    """The ``task`` section from a mapping: the class is chosen by its ``name`` (default
    :data:`~tunableconv.tasks.DEFAULT_TASK`), unknown fields are errors."""
    if not isinstance(d, dict):
        raise InputError(f"recipe section 'task' must be a mapping, got {d!r}")
    name = d.get("name", DEFAULT_TASK)
    return _section_from_dict(task_section_class(name), {**d, "name": name}, "task", f" (task {name})")


@dataclass
class Recipe:
    name: str = "custom"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    task: TaskSection = field(default_factory=default_task_section)
    train: TrainSection = field(default_factory=TrainSection)

    # --- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Recipe":
        d = dict(d)
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise InputError(f"unknown recipe section(s): {', '.join(sorted(unknown))}")
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            if f.name == "name":
                kwargs["name"] = str(d["name"])
                continue
            if f.name == "task":
                kwargs["task"] = task_section_from_dict({} if d["task"] is None else d["task"])
                continue
            sec_cls = {"model": ModelSection, "data": DataSection, "train": TrainSection}[f.name]
            kwargs[f.name] = _section_from_dict(sec_cls, {} if d[f.name] is None else d[f.name], f.name)
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        """Write the recipe as YAML (JSON for a ``.json`` path), atomically: a crash leaves the old file."""
        from ..io import atomic_write

        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2) if path.suffix == ".json" else yaml.safe_dump(self.to_dict(), sort_keys=False)
        atomic_write(path, text.encode())

    # --- validation ----------------------------------------------------------------------
    def validate(self) -> "Recipe":
        """Check every field of every section (type and range) and that the model builds;
        raise a one-line :class:`InputError` naming the first bad field. Returns self.

        The sections' ranges are in their docstrings (:class:`ModelSection`,
        :class:`DataSection`, the task's section (``TASKS[name].section_class``), :class:`TrainSection`,
        :class:`DiscOptimizerSection`). Nothing is loaded or allocated: the model is built on
        the meta device, to check its arguments and count its parameters.
        """
        check_text("name", self.name)
        expected = {"model": ModelSection, "data": DataSection, "train": TrainSection}
        for where, cls in expected.items():
            if not isinstance(getattr(self, where), cls):
                raise InputError(f"recipe section {where!r} must be a mapping, got {getattr(self, where)!r:.60}")
        if not isinstance(self.task, TaskSection):
            raise InputError(f"recipe section 'task' must be a mapping, got {self.task!r:.60}")
        self.model.validate()
        self.data.validate()
        check_choice("task.name", self.task.name, tuple(TASKS))
        section_class = task_section_class(self.task.name)
        if not isinstance(self.task, section_class):
            raise InputError(f"the task section of task {self.task.name!r} must be a {section_class.__name__}, "
                             f"got {type(self.task).__name__}")
        self.task.validate()
        self.train.validate()
        self._check_model_builds()
        return self

    def _check_model_builds(self) -> None:
        """Build the model on the meta device (no memory; the random state is kept): the
        architecture's own checks of its arguments run, and its size is bounded."""
        arch = self.model.arch
        task = build_task(self)
        try:
            with torch.random.fork_rng(devices=[]), torch.device("meta"):
                model = task.build_model(self)
        except InputError:
            raise
        except Exception as exc:  # constructors raise ValueError, RuntimeError, ... for bad values
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            reason = (lines[-1] if lines else type(exc).__name__)[:200]
            raise InputError(f"model.args cannot build a {arch} ({reason})") from None
        count = sum(p.numel() for p in model.parameters())
        if count > MAX_MODEL_PARAMETERS:
            raise InputError(f"model.args describe a {arch} of {count:,} parameters, more than the {MAX_MODEL_PARAMETERS:,} "
                             "a run may train")

    @classmethod
    def load(cls, path: str | Path) -> "Recipe":
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as exc:
            raise InputError(f"cannot read recipe {path}: {exc.strerror}") from None
        try:
            d = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        except (ValueError, yaml.YAMLError) as exc:
            raise InputError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
        if not isinstance(d, dict):
            raise InputError(f"{path} does not hold a recipe mapping")
        return cls.from_dict(d)

    def override(self, assignment: str) -> "Recipe":
        """Apply ``section.field=value`` (value parsed as YAML); returns self."""
        key, sep, value = assignment.partition("=")
        if not sep or "." not in key:
            raise InputError(f"--set expects section.field=value, got {assignment!r}")
        section, _, name = key.strip().partition(".")
        if section not in ("model", "data", "task", "train"):
            raise InputError(f"unknown recipe section {section!r} in --set {assignment!r}")
        sec = getattr(self, section)
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        if section == "model" and name.startswith("args."):
            sec.args[name[5:]] = parsed
            return self
        if section == "task" and name == "name":  # another task: its own section, with its defaults
            if parsed != sec.name:
                self.task = task_section_class(parsed)()
            return self
        *path, name = name.split(".")
        where = section
        for part in path:  # nested sections: train.disc.lr
            sub = getattr(sec, part, None) if part in {f.name for f in fields(sec)} else None
            if not dataclasses.is_dataclass(sub):
                raise InputError(f"recipe section {where!r} has no field {part!r}")
            sec, where = sub, f"{where}.{part}"
        if name not in {f.name for f in fields(sec)}:
            raise InputError(f"recipe section {where!r} has no field {name!r}")
        current = getattr(sec, name)
        if dataclasses.is_dataclass(current):  # a whole nested section given as a mapping
            setattr(sec, name, _section_from_dict(type(current), parsed or {}, f"{where}.{name}"))
            return self
        if isinstance(current, bool) and not isinstance(parsed, bool):
            raise InputError(f"{key} must be true or false, got {value!r}")
        if isinstance(current, (int, float)) and not isinstance(current, bool):
            if isinstance(parsed, str):  # YAML 1.1 reads "2e-4" as a string
                try:
                    parsed = float(parsed)
                except ValueError:
                    pass
            if not isinstance(parsed, (int, float)) or isinstance(parsed, bool):
                raise InputError(f"{key} must be a number, got {value!r}")
            if isinstance(current, int) and float(parsed).is_integer():
                parsed = int(parsed)
        setattr(sec, name, parsed)
        return self

    def copy(self) -> "Recipe":
        return _copy.deepcopy(self)  # nested sections (train.disc) and lists included
