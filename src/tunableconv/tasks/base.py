r"""The task protocol: what a recipe learns, in one object the trainer, ``compare`` and the
evaluation talk to.

A task turns a clean image into a :class:`Sample` — the network input, one target per
objective, and the *condition* (the true degradation levels) — builds the model and the
parametric multi-loss of a recipe, draws p, knows the knob space of the models it trains,
the degradation settings to evaluate at (:class:`EvalCase`), its metrics and the rival
methods it can be compared with.

Vocabulary (as in :mod:`tunableconv.knobs`):

- **p** ``(P,)`` / ``(B, P)``: the knobs; on the simplex they mix the P objectives.
- **targets** ``{name: (B, C, H, W)}``: objective i pulls the output towards ``t_i``.
- **blended target** ``t̄(p) = Σ_i c_i t_i`` with ``c = p / Σ_j p_j``: what the knob
  promises at p (the image the ``mix=targets`` loss trains towards).
- **condition** ``(K,)`` / ``(B, K)``: the true degradation levels of a sample, each
  scaled to [0, 1] (denoising: σ/255). It is *not* p: p says which objective to favour,
  the condition what happened to the image. Rivals that are conditioned on the
  degradation (CResMD as published, AdaFM-style level maps) take it instead of p; such a
  model declares ``conditioned_on = "condition"``.

Each task is one class in its own file, listed explicitly in :data:`tunableconv.tasks.TASKS`;
its recipe fields are a :class:`TaskSection` subclass (the recipe's ``task`` section is a
tagged union keyed by ``task.name``). This module imports nothing from
:mod:`tunableconv.train` (the trainer imports tasks, not the other way round).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..knobs import KnobSpace
from ..seeding import generator, group_index, validation_generator

if TYPE_CHECKING:  # annotations only: tasks must not import the trainer's package
    from ..losses import ParametricMultiLoss
    from ..train.config import Recipe

#: the values ``conditioned_on`` may take: what a model receives besides its input
CONTROLS = ("p", "condition")

#: a rival named ``ARCH-condition`` (e.g. ``cresmd-condition``) is ``ARCH`` conditioned on the
#: true degradation levels (``model.args.condition = "degradation"``) instead of on p
CONDITIONED_SUFFIX = "-condition"


# ----------------------------------------------------------------------------------------
# recipe field checks: every section's validate() is written with these; each raises a
# one-line InputError naming the field (``train.lr must be a finite number > 0, got -1``)
# ----------------------------------------------------------------------------------------
def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def _bounds(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_num(lo)}, {_num(hi)}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {_num(lo)}"
    if hi is not None:
        return f"{'<' if hi_open else '<='} {_num(hi)}"
    return ""


def _within(value: float, lo: float | None, hi: float | None, lo_open: bool, hi_open: bool) -> bool:
    if lo is not None and (value <= lo if lo_open else value < lo):
        return False
    return not (hi is not None and (value >= hi if hi_open else value > hi))


def check_int(where: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    """``value`` is an integer (not a bool) in [lo, hi]."""
    if not (isinstance(value, int) and not isinstance(value, bool) and _within(value, lo, hi, False, False)):
        want = " ".join(filter(None, ["an integer", _bounds(lo, hi, False, False)]))
        raise InputError(f"{where} must be {want}, got {_show(value)}")


def check_number(where: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                 lo_open: bool = False, hi_open: bool = False) -> None:
    """``value`` is a finite number (int or float, not a bool) in the given range."""
    if not (_is_number(value) and math.isfinite(value) and _within(value, lo, hi, lo_open, hi_open)):
        want = " ".join(filter(None, ["a finite number", _bounds(lo, hi, lo_open, hi_open)]))
        raise InputError(f"{where} must be {want}, got {_show(value)}")


def check_numbers(where: str, value: Any, lo: float | None = None, hi: float | None = None, *,
                  lo_open: bool = False, hi_open: bool = False, length: int | None = None,
                  integer: bool = False, min_length: int = 0) -> None:
    """``value`` is a list of numbers (integers with ``integer``), each in the range, of
    ``length`` items (or at least ``min_length``)."""
    kind = "integers" if integer else "finite numbers"
    if length is not None:
        head = f"a list of {length} {kind}"
    elif min_length == 1:
        head = f"a non-empty list of {kind}"
    else:
        head = f"a list of at least {min_length} {kind}" if min_length else f"a list of {kind}"
    want = " ".join(filter(None, [head, _bounds(lo, hi, lo_open, hi_open)]))
    ok = isinstance(value, (list, tuple)) and (len(value) == length if length is not None else len(value) >= min_length)
    for v in value if ok else ():
        good = (isinstance(v, int) and not isinstance(v, bool)) if integer else (_is_number(v) and math.isfinite(v))
        ok = ok and good and _within(v, lo, hi, lo_open, hi_open)
    if not ok:
        raise InputError(f"{where} must be {want}, got {_show(value)}")


def check_bool(where: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise InputError(f"{where} must be true or false, got {_show(value)}")


def check_choice(where: str, value: Any, choices: Sequence[str]) -> None:
    if not (isinstance(value, str) and value in choices):
        raise InputError(f"{where} must be one of {', '.join(choices)}, got {_show(value)}")


def check_text(where: str, value: Any, *, optional: bool = False) -> None:
    """``value`` is a non-empty string (or None with ``optional``)."""
    if optional and value is None:
        return
    if not (isinstance(value, str) and value.strip()):
        raise InputError(f"{where} must be a non-empty string{' or null' if optional else ''}, got {_show(value)}")


@dataclass
class TaskSection:
    """The recipe's ``task`` section: a tagged union keyed by :attr:`name`.

    Every task subclasses this with its own fields and the default ``name`` set to the
    task's name; unknown fields of a section are errors. :meth:`validate` checks every
    field's type and range (a subclass extends it with its own fields).
    """

    name: str = ""

    def validate(self, where: str = "task") -> None:
        """Raise a one-line :class:`InputError` naming the first bad field."""
        check_text(f"{where}.name", self.name)


def target_key(objective: str) -> str:
    """The batch key of objective ``objective``'s target: ``"target_<name>"``."""
    return f"target_{objective}"


@dataclass
class Sample:
    """One degraded example, or a batch of them (every tensor then has a leading B).

    Attributes:
        input: the network input ``(C, h, w)`` (``h = H / scale`` for super-resolution).
        clean: the ground truth ``(C, H, W)``.
        targets: one target per objective, ``{objective name: (C, H, W)}`` (several may be
            the same tensor, e.g. the clean image for a distortion and a perceptual loss).
        condition: the true degradation levels ``(K,)``, each in [0, 1] (task-defined:
            denoising has K = 1, σ/255).
    """

    input: Tensor
    clean: Tensor
    targets: dict[str, Tensor]
    condition: Tensor

    def to_batch(self) -> dict[str, Tensor]:
        """The dict the objectives read: ``input``, ``clean``, ``condition`` and
        ``target_<name>`` per objective (:func:`target_key`)."""
        batch = {"input": self.input, "clean": self.clean, "condition": self.condition}
        batch.update({target_key(k): v for k, v in self.targets.items()})
        return batch

    def to(self, device: torch.device | str) -> "Sample":
        return Sample(self.input.to(device), self.clean.to(device), {k: v.to(device) for k, v in self.targets.items()},
                      self.condition.to(device))

    @staticmethod
    def stack(samples: Sequence["Sample"]) -> "Sample":
        """B samples of one shape -> one batch (a leading B on every tensor)."""
        if not samples:
            raise ValueError("cannot stack an empty list of samples")
        names = list(samples[0].targets)
        return Sample(torch.stack([s.input for s in samples]), torch.stack([s.clean for s in samples]),
                      {n: torch.stack([s.targets[n] for s in samples]) for n in names},
                      torch.stack([s.condition for s in samples]))


@dataclass
class EvalCase:
    """One degradation setting to evaluate at, e.g. ``EvalCase("sigma=25", {"sigma": 25.0})``."""

    label: str
    levels: dict[str, float] = field(default_factory=dict)
    #: the levels' part of the case's seed key in evaluation (:func:`tunableconv.evaluation.case_seed`);
    #: None: ``name=value`` over the sorted levels. A task whose own protocol seeds its
    #: degradations another way sets it, so both draw the same (denoising: ``repr(sigma)``).
    seed_key: str | None = None


@dataclass(frozen=True)
class RunnerFacts:
    """What a runner needs to know about a model besides its knobs (see :class:`~tunableconv.knobs.KnobSpace`)."""

    scale: int = 1
    tiling_exact: bool = True
    receptive_field: int | None = None
    color: str = "rgb"


#: modules whose output at a pixel depends on the whole image (or a whole window): tiled
#: inference is then not exact
_GLOBAL_MODULES = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm,
                   nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
                   nn.MultiheadAttention)


def runner_facts(model: nn.Module | None) -> RunnerFacts:
    """Scale factor, tiling exactness and receptive-field radius of ``model``.

    - scale: ``model.config.upscale`` (1 when absent);
    - tiling_exact: the model's own ``tiling_exact`` when it declares one (SwinIR: exact
      with window-aligned tiles; NAFNet: not, its channel attention pools globally); else
      False when any submodule normalises or pools over the image (instance/group/layer
      norm, adaptive pooling, attention), else True;
    - receptive_field: ``model.receptive_field()`` when the model has it, the formula of
      :func:`~tunableconv.models.baselines.resnet_receptive_field` for a
      :class:`~tunableconv.models.ResNet`, else None (unknown).
    """
    if model is None:
        return RunnerFacts()
    from ..models import ResNet
    from ..models.baselines import resnet_receptive_field

    cfg = getattr(model, "config", None)
    scale = int(getattr(cfg, "upscale", 1) or 1)
    declared = getattr(model, "tiling_exact", None)  # an architecture that knows better (windowed attention)
    exact = bool(declared) if declared is not None else not any(isinstance(m, _GLOBAL_MODULES) for m in model.modules())
    rf = None
    if hasattr(model, "receptive_field"):
        rf = model.receptive_field()
    elif isinstance(model, ResNet):
        rf = resnet_receptive_field(cfg.num_blocks, cfg.kernel_size, cfg.upscale)
    return RunnerFacts(scale, exact, rf if exact else None)


def conditioned_on(model: nn.Module) -> str:
    """What ``model`` takes besides its input: ``"p"`` (default) or ``"condition"``.

    Reads the model's ``conditioned_on`` attribute, through a DDP wrapper.
    """
    net = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    value = getattr(net, "conditioned_on", "p")
    if value not in CONTROLS:
        raise ValueError(f"{type(net).__name__}.conditioned_on must be one of {CONTROLS}, got {value!r}")
    return value


# ----------------------------------------------------------------------------------------
# p sampling
# ----------------------------------------------------------------------------------------
def check_sampler_fields(section: Any, where: str, samplers: Sequence[str]) -> None:
    """The p-sampling fields every task section has (``sampler``, ``vertex_share``,
    ``edge_share``, ``p_granularity``): one-line :class:`InputError` naming the first bad one."""
    check_choice(f"{where}.sampler", section.sampler, tuple(samplers))
    check_number(f"{where}.vertex_share", section.vertex_share, 0.0, 1.0)
    check_number(f"{where}.edge_share", section.edge_share, 0.0, 1.0)
    if section.vertex_share + section.edge_share > 1:
        raise InputError(f"{where}.vertex_share + {where}.edge_share must be <= 1, "
                         f"got {section.vertex_share} + {section.edge_share}")
    if not isinstance(section.p_granularity, str):
        raise InputError(f"{where}.p_granularity must be sample, batch or group:N, got {section.p_granularity!r}")
    parse_granularity(section.p_granularity)


def parse_granularity(value: str) -> int:
    """``task.p_granularity`` -> group size: ``"sample"`` 1, ``"batch"`` 0, ``"group:N"`` N."""
    if value == "sample":
        return 1
    if value == "batch":
        return 0
    if value.startswith("group:") and value[6:].isdigit() and int(value[6:]) > 0:
        return int(value[6:])
    raise InputError(f"task.p_granularity must be sample, batch or group:N, got {value!r}")


@dataclass
class PSampling:
    """How the p of each training sample is drawn.

    Attributes:
        sampler: ``sampler(n, generator) -> (n, P)`` (:mod:`tunableconv.losses.samplers`), or
            None when the model has no knob (then p is ``(0,)``).
        group: 1: every sample draws its own p from its own stream; 0: one p per step (the
            step's stream); N: samples ``[kN, (k+1)N)`` share the p of group k's stream.
        seed: the run seed (``train.seed``), which seeds the group streams.

    The streams are those of :mod:`tunableconv.seeding`.
    """

    sampler: Any | None
    group: int = 1
    seed: int = 0

    def draw(self, g: torch.Generator) -> Tensor:
        """One p ``(P,)`` from ``g`` (``(0,)`` without knobs: nothing is drawn)."""
        if self.sampler is None:
            return torch.ones(0)
        return self.sampler(1, g)[0]

    def choose(self, g: torch.Generator, shared_p: Tensor, step: int, index: int) -> Tensor:
        """p of global sample ``index`` at ``step``: its own (from ``g``), the step's
        (``shared_p``), or its group's."""
        if self.sampler is None:
            return torch.ones(0)
        if self.group == 1:
            return self.draw(g)
        if self.group == 0:
            return shared_p
        return self.draw(generator(self.seed, step, group_index(index // self.group)))


# ----------------------------------------------------------------------------------------
# the protocol
# ----------------------------------------------------------------------------------------
class Task(abc.ABC):
    """One learning problem. Subclasses set the class attributes and implement the abstract methods.

    Class attributes:
        name: the task's name (``task.name`` in recipes, ``--task`` of ``compare``).
        section_class: its :class:`TaskSection` subclass (the recipe fields it owns).
        rivals: the ``compare`` methods it supports, ``"tunable"`` first (``"fixed"`` is the
            knob-less reference network, the others are
            :data:`~tunableconv.models.baselines.BASELINES` architectures; ``ARCH-condition``
            is ``ARCH`` conditioned on the true degradation, see :data:`CONDITIONED_SUFFIX`).
        budgets: ``compare`` budget -> the name of the recipe every method starts from.
        metrics: the metric names its evaluation reports (:mod:`tunableconv.metrics`).
        metric_options: how each metric is measured (keyword arguments, see the attribute).
        condition_names: the names of the K entries of :attr:`Sample.condition`.

    A subclass's ``__init__`` calls ``super().__init__(recipe)`` (which validates the section:
    its :meth:`TaskSection.validate`, one-line :class:`InputError` s) and sets :attr:`sampling`.
    """

    name: ClassVar[str] = ""
    section_class: ClassVar[type[TaskSection]] = TaskSection
    rivals: ClassVar[tuple[str, ...]] = ("tunable",)
    budgets: ClassVar[dict[str, str]] = {}
    metrics: ClassVar[tuple[str, ...]] = ("psnr", "ssim", "lpips")
    condition_names: ClassVar[tuple[str, ...]] = ()
    #: one evaluation case as a user writes it (``--levels`` / ``--degrade``), for help texts;
    #: empty for a task without levels to choose
    case_example: ClassVar[str] = ""
    #: keyword arguments of :mod:`tunableconv.metrics` functions by metric name (e.g. the SR
    #: convention ``{"psnr": {"crop_border": 4, "y_channel": True, "quantize": True}}``); the
    #: evaluation and the validation pass them on. Empty: every metric on RGB, whole image.
    metric_options: ClassVar[dict[str, dict[str, Any]]] = {}

    #: how p is drawn for each training sample; set by the subclass's ``__init__`` (usually
    #: with :meth:`make_sampling` from its section's sampler fields)
    sampling: PSampling

    def __init__(self, recipe: "Recipe") -> None:
        if not isinstance(recipe.task, self.section_class):
            raise InputError(f"the {self.name} task needs a {self.section_class.__name__} recipe section, "
                             f"got {type(recipe.task).__name__}")
        recipe.task.validate()
        self.recipe = recipe
        self.cfg = recipe.task
        self.seed = recipe.train.seed

    # --- what subclasses define ----------------------------------------------------------
    @property
    @abc.abstractmethod
    def objective_names(self) -> list[str]:
        """The objective names, in p order (one per knob on the simplex)."""

    @abc.abstractmethod
    def build_loss(self) -> "ParametricMultiLoss":
        """The parametric multi-loss of the recipe, called as ``loss(output, batch, p)``."""

    @abc.abstractmethod
    def degrade(self, clean: Tensor, g: torch.Generator) -> Sample:
        """One training sample from a clean patch ``(C, H, W)``, every random draw from ``g``."""

    @abc.abstractmethod
    def degrade_case(self, clean: Tensor, case: EvalCase, g: torch.Generator) -> Sample:
        """The sample of ``clean`` (``(C, H, W)`` or ``(B, C, H, W)``) degraded at the fixed levels of ``case``."""

    @abc.abstractmethod
    def evaluation_cases(self, levels: Sequence[float] | None = None) -> list[EvalCase]:
        """The degradation settings to evaluate at (the task's defaults, or the given levels)."""

    @abc.abstractmethod
    def validation_cases(self) -> list[EvalCase]:
        """The degradation settings of the validation during training (from the recipe)."""

    @abc.abstractmethod
    def p_knob_space(self, facts: RunnerFacts) -> KnobSpace:
        """The knob space of the p-driven models this task trains."""

    @abc.abstractmethod
    def validation_grid(self) -> list[tuple[str, Tensor]]:
        """The knob settings of the validation: ``(tag, p)`` pairs."""

    # --- derived -------------------------------------------------------------------------
    @property
    def num_params(self) -> int:
        """P, the number of knobs of the p-driven models (0 for a knob-less reference network)."""
        return self.p_knob_space(RunnerFacts()).num_params

    @property
    def domain(self) -> str:
        return self.p_knob_space(RunnerFacts()).domain

    def condition_knob_space(self, facts: RunnerFacts) -> KnobSpace:
        """The knob space of a model conditioned on the degradation (its knobs are the
        condition's entries: the degradation it assumes). Tasks without a condition refuse."""
        raise InputError(f"the {self.name} task has no degradation condition for a model to be conditioned on")

    def response_features(self, output: Tensor) -> Tensor:
        """What an output ``(C, H, W)`` or ``(B, C, H, W)`` is compared in when a knob's response
        is made even (``tunableconv calibrate``): the pixels themselves by default; a task
        whose outputs are judged elsewhere (style transfer: the VGG Gram matrices) overrides it."""
        return output

    def output_measures(self, output: Tensor, sample: Sample) -> dict[str, float]:
        """Task-specific measures of one output ``(C, H, W)`` of ``sample`` (unbatched), added
        to every row of the evaluation (e.g. the residual noise and the edge sharpness of joint
        deblurring and denoising, for the knobs' independence). None by default."""
        return {}

    def matched_condition(self, p: Tensor, condition: Tensor) -> Tensor | None:
        """The levels to tell a model conditioned on the degradation so that it does what a
        p-driven model does at ``p`` (``(P,)``), given a sample's true levels ``condition``
        (``(K,)``); None when the task defines no such matching (the default). Lets the
        evaluation put a conditioned rival (CResMD as published) on the same knob settings as the
        tunable model; at :meth:`reference_p` it must give the true levels."""
        return None

    def knob_space(self, model: nn.Module | None = None) -> KnobSpace:
        """The knob space of ``model`` (trained by this task): the task's p knobs, or the
        condition's for a model with ``conditioned_on = "condition"``; scale, tiling and
        receptive field from the model (:func:`runner_facts`)."""
        facts = runner_facts(model)
        if model is not None and conditioned_on(model) == "condition":
            return self.condition_knob_space(facts)
        return self.p_knob_space(facts)

    def knobs(self, model: nn.Module | None = None) -> list[dict]:
        """The knob list of the model file (name and description per knob)."""
        return [{"name": k.name, "description": k.description} for k in self.knob_space(model).knobs]

    def reference_p(self) -> list[float] | None:
        """The p whose blended target is the ground truth (denoising: (1, 0)), or None.

        A model conditioned on the degradation is trained at this p (the objectives' mix
        is not its input)."""
        return None

    def model_info(self) -> dict[str, Any]:
        """Task facts stored in the model file's ``info`` (besides the recipe and the knob space)."""
        return {}

    # --- model ---------------------------------------------------------------------------
    def task_arguments(self, arch: str, args: dict) -> dict[str, Any]:
        """The model arguments the task decides: the knob count and domain. A model conditioned
        on the degradation (``args["condition"] == "degradation"``) takes the condition
        instead: its knobs are the ``len(condition_names)`` levels on the cube, and it trains at
        :meth:`reference_p`."""
        if args.get("condition") == "degradation":
            if not self.condition_names:
                raise InputError(f"the {self.name} task has no degradation condition for a model to be conditioned on")
            if not self.reference_p():
                raise InputError(f"the {self.name} task has no p whose target is the ground truth to train "
                                 "a degradation-conditioned model at")
            return {"num_params": len(self.condition_names), "domain": "cube", "reference_p": self.reference_p()}
        return {"num_params": self.num_params, "domain": self.domain}

    def build_model(self, recipe: "Recipe | None" = None) -> nn.Module:
        """The recipe's model, with the knob count and domain taken from the task.

        Arguments the task decides (:meth:`task_arguments`) are filled in when the recipe
        leaves them out and must agree when it gives them.
        """
        from ..models import ARCHITECTURES

        recipe = recipe or self.recipe
        arch = recipe.model.arch
        if arch not in ARCHITECTURES:
            raise InputError(f"unknown architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
        cls, cfg_cls = ARCHITECTURES[arch]
        args = dict(recipe.model.args)
        accepted = {f.name for f in fields(cfg_cls)}
        for key, value in self.task_arguments(arch, args).items():
            if key not in accepted:
                continue
            if key in args and args[key] != value:
                raise InputError(f"the {self.name} task needs model.args.{key} = {value}, got {args[key]}")
            args[key] = value
        try:
            return cls(cfg_cls(**args))
        except (TypeError, ValueError) as exc:
            raise InputError(f"bad model.args for {arch}: {exc}") from None

    # --- targets -------------------------------------------------------------------------
    def blended_target(self, sample: Sample, p: Tensor) -> Tensor | None:
        r"""What the knob promises at p: ``t̄ = Σ_i c_i t_i``, ``c_i = p_i / Σ_j p_j`` (simplex tasks).

        ``sample`` batched ``(B, C, H, W)`` targets, p ``(P,)`` or ``(B, P)``. None for a task
        whose knobs are not a mixture of its objectives' targets (the cube) or without knobs.
        """
        if self.domain != "simplex" or self.num_params == 0:
            return None
        names = self.objective_names
        p = torch.as_tensor(p, dtype=torch.float32, device=sample.input.device)
        p = p.expand(sample.input.shape[0], -1) if p.dim() == 1 else p
        norm = p.sum(dim=1, keepdim=True)
        if bool((norm <= 0).any()):
            raise InputError("the blended target needs p with a positive sum")
        c = p / norm
        ts = [sample.targets[n] for n in names]
        shape = (-1, *([1] * (ts[0].dim() - 1)))
        return sum(c[:, i].reshape(shape).to(ts[0].dtype) * t for i, t in enumerate(ts))

    # --- p ---------------------------------------------------------------------------------
    def make_sampling(self, sampler: str, vertex_share: float, edge_share: float, granularity: str) -> PSampling:
        """A :class:`PSampling` over this task's knobs from the recipe's sampler fields (a
        ``mixture`` sampler adds its vertex/edge mass around the task's domain)."""
        from ..losses import make_sampler

        group = parse_granularity(granularity)
        if self.num_params == 0:
            return PSampling(None, group, self.seed)
        return PSampling(make_sampler(sampler, self.num_params, vertex_share=vertex_share or None,
                                      edge_share=edge_share or None, base=self.domain), group, self.seed)

    def sample_p(self, g: torch.Generator) -> Tensor:
        """The step's shared p ``(P,)`` from the step's stream ``g``."""
        return self.sampling.draw(g)

    def choose_p(self, g: torch.Generator, shared_p: Tensor, step: int, index: int) -> Tensor:
        """p ``(P,)`` of global sample ``index`` at ``step`` (see :class:`PSampling`)."""
        return self.sampling.choose(g, shared_p, step, index)

    # --- running a model -----------------------------------------------------------------
    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        """The training forward pass: ``model(input, condition)`` for a model conditioned on
        the degradation, ``model(input)`` without knobs, else ``model(input, p)`` (p ``(P,)``
        when the whole batch shares one setting and p is not drawn per sample: the fused
        single-conv path)."""
        if conditioned_on(model) == "condition":
            return model(batch["input"], batch["condition"])
        if self.num_params == 0:
            return model(batch["input"])
        p = batch["p"]
        if self.sampling.group != 1 and bool((p == p[:1]).all()):
            p = p[0]
        return model(batch["input"], p)

    # --- data ----------------------------------------------------------------------------
    def train_images(self, recipe: "Recipe | None" = None):
        """The training set of ``data.train`` (``sample(index, generator)`` gives a clean patch)."""
        from ..data import training_dataset

        d = (recipe or self.recipe).data
        ds = training_dataset(d.train, data_root=d.root, patch_size=d.patch_size, cache=d.cache, length=10_000)
        if hasattr(ds, "preload"):
            ds.preload()  # decode once, shared with forked workers
        return ds

    def val_images(self, recipe: "Recipe | None" = None) -> list[Tensor]:
        """The clean validation images ``(C, H, W)`` of ``data.val``."""
        from ..data import ImageFolderEval

        d = (recipe or self.recipe).data
        ds = ImageFolderEval(d.val, max_images=d.val_images, crop=d.val_crop or None, data_root=d.root)
        return [ds[i]["clean"] for i in range(len(ds))]

    # --- validation ----------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, model: nn.Module, images: list[Tensor], device: torch.device) -> dict[str, Any]:
        """Mean PSNR of the clamped output against each objective's target, on full images
        degraded by :meth:`validation_cases` (seeded by :data:`~tunableconv.seeding.VALIDATION_SEED`),
        at each setting of :meth:`validation_grid` (a model without knobs: once, tag
        ``fixed``; a model conditioned on the degradation: at the true condition, tag
        ``condition``). Keys ``psnr_<objective>@<tag>`` (``@<case>,<tag>`` with several cases)."""
        from ..metrics import psnr

        cond = conditioned_on(model) == "condition"
        if cond:
            grid: list[tuple[str, Tensor | None]] = [("condition", None)]
        elif self.num_params == 0:
            grid = [("fixed", None)]
        else:
            grid = list(self.validation_grid())
        cases = self.validation_cases()
        g = validation_generator()
        sums: dict[str, float] = {}
        for clean in images:
            for case in cases:
                s = self.degrade_case(clean.unsqueeze(0), case, g).to(device)
                for tag, p in grid:
                    if cond:
                        y = model(s.input, s.condition)
                    elif p is None:
                        y = model(s.input)
                    else:
                        y = model(s.input, p.to(device))
                    y = y.clamp(0, 1)
                    where = tag if len(cases) == 1 else f"{case.label},{tag}"
                    for name, target in s.targets.items():
                        key = f"psnr_{name}@{where}"
                        sums[key] = sums.get(key, 0.0) + float(psnr(y, target, **self.metric_options.get("psnr", {})))
        return {k: round(v / max(1, len(images)), 3) for k, v in sums.items()}

    # --- compare -------------------------------------------------------------------------
    @classmethod
    def fixed_variant(cls, recipe: "Recipe") -> "Recipe":
        """Turn ``recipe`` (in place) into the knob-less reference network of the same size."""
        raise InputError(f"the {cls.name} task has no fixed reference network")

    @classmethod
    def rival_recipe(cls, method: str, recipe: "Recipe", backbone_keys: Sequence[str]) -> "Recipe":
        """Turn the tunable ``recipe`` (in place) into ``method``'s: same data, objectives,
        steps and seed; a rival keeps only the backbone arguments (``backbone_keys``)."""
        if method not in cls.rivals:
            raise InputError(f"the {cls.name} task has no method {method!r}; methods: {', '.join(cls.rivals)}")
        if method == "fixed":
            return cls.fixed_variant(recipe)
        if method != "tunable":
            arch, conditioned = (method[: -len(CONDITIONED_SUFFIX)], True) if method.endswith(CONDITIONED_SUFFIX) \
                else (method, False)
            recipe.model.arch = arch
            recipe.model.args = {k: v for k, v in recipe.model.args.items() if k in backbone_keys}
            if conditioned:
                recipe.model.args["condition"] = "degradation"
        return recipe


class CornerTargetsTask(Task):
    """A task whose objectives are the corners of the knob cube, each a target that comes with
    the batch (joint deblurring and denoising, the three-degradation task): the loss is the
    distance to the corners' multilinear blend (``task.mix = "targets"``,
    :class:`~tunableconv.losses.BlendedTargetLoss`) or the corner-weighted sum of the distances
    (``"losses"``, :class:`~tunableconv.losses.ParametricMultiLoss`); the fixed twin
    (``task.fidelity_only``) learns the ``restored`` corner alone.

    Subclasses name their corners in :attr:`corners`, in the order of
    :func:`~tunableconv.losses.multiloss.cube_corner_weights`, and set ``fidelity_only``.
    """

    #: the corner targets, in cube-corner order; the last one, ``restored``, is the ground truth
    corners: ClassVar[tuple[str, ...]] = ()
    fidelity_only: bool

    @property
    def objective_names(self) -> list[str]:
        """The corner targets in corner order (``restored`` alone for the fixed twin)."""
        return ["restored"] if self.fidelity_only else list(self.corners)

    def objectives(self) -> list:
        """One distance to its target per objective (the targets come with the batch)."""
        from ..losses import Fidelity

        return [Fidelity(distance=self.cfg.loss, key=target_key(n), name=n) for n in self.objective_names]

    def build_loss(self) -> "ParametricMultiLoss":
        """``BlendedTargetLoss`` (``mix = targets``) or ``ParametricMultiLoss`` (``mix = losses``)
        over the corners on the cube; one plain objective for the fixed twin."""
        from ..losses import BlendedTargetLoss, ParametricMultiLoss

        if self.fidelity_only:
            return ParametricMultiLoss(self.objectives())
        if self.cfg.mix == "targets":
            return BlendedTargetLoss(self.objectives(), domain="cube")
        return ParametricMultiLoss(self.objectives(), domain="cube")
