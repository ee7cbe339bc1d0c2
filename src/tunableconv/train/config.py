"""Recipes: dataclass configs, saved and loaded as YAML or JSON, overridable from the CLI.

A recipe has four sections::

    model:  architecture and its arguments
    data:   training/validation data and patching
    task:   what is learned (degradation, objectives, p sampler): a tagged union keyed by
            ``task.name``, one dataclass per task (``tunableconv.tasks.TASKS[name].section_class``,
            e.g. :class:`~tunableconv.tasks.DenoiseTaskSection`)
    train:  optimisation and bookkeeping

``--set train.lr=2e-4`` overrides one field (values are parsed as YAML: numbers, lists,
booleans); nested fields are reached with more dots (``--set train.disc.lr=2e-4``). Unknown
sections or fields are errors. ``--set task.name=T`` switches the task: the section becomes
task T's, with T's defaults.
"""

from __future__ import annotations

import copy as _copy
import dataclasses
import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from ..tasks import TASKS, DenoiseTaskSection, TaskSection


@dataclass
class ModelSection:
    arch: str = "resnet"
    args: dict = field(default_factory=dict)


@dataclass
class DataSection:
    train: str = "train/bsds400"  # a folder, a name under the data root, or "default" (bundled, no download)
    root: str | None = None  # data root; None: TUNABLECONV_DATA / ../shared/data
    patch_size: int = 64
    num_workers: int = 2
    cache: bool = True
    val: str = "cbsd68"
    val_images: int = 4
    val_crop: int = 128


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


@dataclass
class TrainSection:
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
        kwargs[k] = _section_from_dict(sub, v or {}, f"{where}.{k}") if sub is not None else v
    return cls(**kwargs)


#: dataclass-valued fields of the sections: (section class, field name) -> field class
_NESTED = {(TrainSection, "disc"): DiscOptimizerSection}

#: the task of a ``task`` section that names none (every saved recipe names its task)
DEFAULT_TASK = "denoise"


def task_section_class(name: Any) -> type[TaskSection]:
    """The section dataclass of task ``name`` (``TASKS[name].section_class``)."""
    if name not in TASKS:
        raise InputError(f"unknown task {name!r} in recipe section 'task'; known: {', '.join(TASKS)}")
    return TASKS[name].section_class


def task_section_from_dict(d: Any) -> TaskSection:
    """The ``task`` section from a mapping: the class is chosen by its ``name`` (default
    ``denoise``), unknown fields are errors."""
    if not isinstance(d, dict):
        raise InputError(f"recipe section 'task' must be a mapping, got {d!r}")
    name = d.get("name", DEFAULT_TASK)
    return _section_from_dict(task_section_class(name), {**d, "name": name}, "task", f" (task {name})")


@dataclass
class Recipe:
    name: str = "custom"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    task: TaskSection = field(default_factory=DenoiseTaskSection)
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
                kwargs["task"] = task_section_from_dict(d["task"] or {})
                continue
            sec_cls = {"model": ModelSection, "data": DataSection, "train": TrainSection}[f.name]
            kwargs[f.name] = _section_from_dict(sec_cls, d[f.name] or {}, f.name)
        return cls(**kwargs)

    def save(self, path: str | Path) -> None:
        path = Path(path)
        text = json.dumps(self.to_dict(), indent=2) if path.suffix == ".json" else yaml.safe_dump(self.to_dict(), sort_keys=False)
        path.write_text(text)

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
