r"""Gaussian denoising with two knobs on the simplex, p = (p_fidelity, p_noise).

Degradation: ``noisy = clean + n``, ``n ~ N(0, (σ/255)²)`` per pixel, σ drawn per sample
uniformly in ``task.sigma`` (0–255 scale), added by
:func:`tunableconv.data.degradations.add_gaussian_noise` (the one place Gaussian noise is
made). Objectives, each ``d(output, t_i)`` with the distance ``task.loss``:

- ``fidelity``: ``t_1 = clean`` (noise removal);
- ``noise``: ``t_2 = clean + β·(noisy − clean)`` (noise preservation: grain and detail kept).

The blended target at p is ``p_1 t_1 + p_2 t_2 = clean + p_2 β (noisy − clean)``. The
user-facing ``strength`` slider s ∈ [0, 1] is p = (s, 1 − s) (s = 1: remove the noise). The
condition is σ/255. With ``fidelity_only`` (the fixed reference network) there is one
objective and no knob.

Why σ is drawn here and not by :class:`~tunableconv.data.degradations.NoiseDegradation`:
that class draws σ with a float64 uniform (two 32-bit words of the generator), the shipped
recipes were trained with a float32 one (one word). Drawing it the old way keeps every
later draw of the sample's stream (the noise, then p) where it was, so the shipped recipes
train to bit-identical weights (``tests/test_tasks.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import InputError
from ..knobs import Knob, KnobSpace, Slider
from .base import (check_sampler_fields, EvalCase, RunnerFacts, Sample, Task, TaskSection, check_bool, check_choice, check_number, check_numbers,
                   parse_granularity, target_key)

if TYPE_CHECKING:
    from ..losses import ParametricMultiLoss
    from ..train.config import Recipe

NOISE_KNOBS = [
    {"name": "fidelity", "description": "weight of the L1 distance to the clean image: noise removal"},
    {"name": "noise_preservation", "description": "weight of the distance to clean + beta*(noisy - clean): detail and grain kept"},
]

#: the denoiser's slider: p = (s, 1 − s)
STRENGTH = Slider("strength", (0.0, 1.0), (1.0, 0.0), "1: remove the noise; 0: keep grain and detail")

#: noise levels (0–255) evaluated by default (the denoising literature's)
EVAL_SIGMAS = (15.0, 25.0, 50.0)


#: the largest noise level (0–255 scale): the condition σ/255 of a sample is in [0, 1]
MAX_SIGMA = 255.0

#: the per-objective distances of ``task.loss`` (:func:`tunableconv.losses.objectives.make_distance`)
DISTANCES = ("l1", "l2", "mse", "charbonnier")


@dataclass
class DenoiseTaskSection(TaskSection):
    """The ``task`` section of a denoising recipe. Fields and their ranges (:meth:`validate`):

    - ``sigma``: ``[low, high]``, the training noise std range on the 0–255 scale,
      ``0 <= low <= high <= 255`` (the condition σ/255 lies in [0, 1]);
    - ``val_sigma``: the validation noise level, in [0, 255];
    - ``beta``: noise preservation, target = clean + beta (noisy − clean), in [0, 1);
    - ``loss``: the per-objective distance, ``l1``, ``l2`` (``mse``) or ``charbonnier``;
    - ``mix``: ``losses`` (Σ_i p_i L_i, the paper) or ``targets`` (L(output, Σ_i p_i t_i));
    - ``fidelity_only``: true for the fixed reference network (one objective, no knobs);
    - ``sampler``: ``simplex``, ``cube`` or ``mixture``; ``vertex_share``, ``edge_share``:
      extra mass on the vertices / edges, each in [0, 1] with a sum <= 1;
    - ``p_granularity``: ``sample``, ``batch`` or ``group:N`` (N >= 1);
    - ``val_grid``: the validated strengths s (p = (s, 1 − s)), a non-empty list in [0, 1].
    """

    name: str = "denoise"
    sigma: list = field(default_factory=lambda: [5.0, 50.0])  # noise std on the 0..255 scale
    val_sigma: float = 25.0
    beta: float = 0.9  # noise preservation: target = clean + beta (noisy - clean)
    loss: str = "l1"  # per-objective distance: l1, l2, charbonnier
    mix: str = "losses"  # losses: sum_i p_i L_i (the paper); targets: L(output, sum_i p_i target_i)
    fidelity_only: bool = False  # the fixed reference network: one objective, no knobs
    sampler: str = "simplex"  # simplex, cube, mixture
    vertex_share: float = 0.0
    edge_share: float = 0.0
    p_granularity: str = "sample"  # sample (per-sample p), batch (one p per step), or group:N
    val_grid: list = field(default_factory=lambda: [0.0, 0.5, 1.0])  # strengths s, p = (s, 1 - s)

    def validate(self, where: str = "task") -> None:
        """Raise a one-line :class:`InputError` naming the first field out of its range (see above)."""
        from ..losses.samplers import SAMPLERS

        super().validate(where)
        check_numbers(f"{where}.sigma", self.sigma, 0.0, MAX_SIGMA, length=2)
        if self.sigma[0] > self.sigma[1]:
            raise InputError(f"{where}.sigma must be [low, high] with low <= high, got {self.sigma}")
        check_number(f"{where}.val_sigma", self.val_sigma, 0.0, MAX_SIGMA)
        check_number(f"{where}.beta", self.beta, 0.0, 1.0, hi_open=True)
        check_choice(f"{where}.loss", self.loss, DISTANCES)
        check_choice(f"{where}.mix", self.mix, ("losses", "targets"))
        check_bool(f"{where}.fidelity_only", self.fidelity_only)
        check_sampler_fields(self, where, (*SAMPLERS, "mixture"))
        check_numbers(f"{where}.val_grid", self.val_grid, 0.0, 1.0, min_length=1)


class DenoiseTask(Task):
    """Gaussian denoising: knobs fidelity / noise_preservation on the simplex (see the module docstring)."""

    name = "denoise"
    case_example = "25"
    section_class = DenoiseTaskSection
    rivals = ("tunable", "fixed", "dni", "adafm", "cfsnet", "dynamicnet", "cresmd", "ftn", "cresmd-condition")
    budgets = {"small": "denoise-small-v1", "paper": "denoise-paper"}  # v1: frozen, see train/recipes.py
    metrics = ("psnr", "ssim", "lpips")
    condition_names = ("noise_level",)

    def __init__(self, recipe: "Recipe") -> None:
        super().__init__(recipe)  # validates the section (DenoiseTaskSection.validate)
        t = self.cfg
        self.fidelity_only = bool(t.fidelity_only)
        self.sampling = self.make_sampling(t.sampler, t.vertex_share, t.edge_share, t.p_granularity)

    # --- objectives ------------------------------------------------------------------------
    @property
    def objective_names(self) -> list[str]:
        return ["fidelity"] if self.fidelity_only else ["fidelity", "noise"]

    def objectives(self) -> list:
        """One distance to its target per objective (the targets come with the batch)."""
        from ..losses import Fidelity

        return [Fidelity(distance=self.cfg.loss, key=target_key(n), name=n) for n in self.objective_names]

    def build_loss(self) -> "ParametricMultiLoss":
        from ..losses import BlendedTargetLoss, ParametricMultiLoss

        if self.cfg.mix == "targets" and not self.fidelity_only:
            return BlendedTargetLoss(self.objectives())
        return ParametricMultiLoss(self.objectives())

    # --- degradation -----------------------------------------------------------------------
    def _sample(self, clean: Tensor, sigma: Tensor | float, g: torch.Generator) -> Sample:
        """``clean`` ``(C, H, W)`` or ``(B, C, H, W)`` with noise of level ``sigma`` (0–255;
        a float, ``()`` or ``(B,)``); condition σ/255 ``(1,)`` or ``(B, 1)``."""
        from ..data.degradations import add_gaussian_noise

        noisy = add_gaussian_noise(clean, sigma, generator=g)
        targets = {"fidelity": clean}
        if not self.fidelity_only:
            targets["noise"] = clean + self.cfg.beta * (noisy - clean)
        batch = clean.dim() == 4
        level = torch.as_tensor(sigma, dtype=torch.float32) / 255.0
        condition = level.reshape(-1, 1).expand(clean.shape[0], 1).clone() if batch else level.reshape(1)
        return Sample(noisy, clean, targets, condition)

    def degrade(self, clean: Tensor, g: torch.Generator) -> Sample:
        """σ ~ U[low, high] (one float32 draw from ``g``), then the noise (from ``g``)."""
        low, high = self.cfg.sigma
        sigma = low + (high - low) * torch.rand((), generator=g)
        return self._sample(clean, sigma, g)

    def degrade_case(self, clean: Tensor, case: EvalCase, g: torch.Generator) -> Sample:
        if "sigma" not in case.levels:
            raise InputError(f"a denoising evaluation case needs a 'sigma' level, got {sorted(case.levels)}")
        return self._sample(clean, float(case.levels["sigma"]), g)

    @staticmethod
    def case(sigma: float) -> EvalCase:
        """The evaluation case of noise level ``sigma`` (0–255)."""
        if not (isinstance(sigma, (int, float)) and not isinstance(sigma, bool) and 0 <= sigma <= 255):
            raise InputError(f"a denoising case is one noise sigma in 0..255 (8-bit units), got {sigma!r}")
        # the seed key of the denoising protocol's noise_seed, so eval and the protocol draw the same noise
        return EvalCase(f"sigma={sigma:g}", {"sigma": float(sigma)}, seed_key=repr(float(sigma)))

    def evaluation_cases(self, levels: Sequence[float] | None = None) -> list[EvalCase]:
        """One case per noise level (default σ = 15, 25, 50)."""
        return [self.case(s if isinstance(s, str) else float(s)) for s in (EVAL_SIGMAS if levels is None else levels)]

    def validation_cases(self) -> list[EvalCase]:
        return [self.case(float(self.cfg.val_sigma))]

    # --- knobs -------------------------------------------------------------------------------
    def p_knob_space(self, facts: RunnerFacts) -> KnobSpace:
        if self.fidelity_only:
            return KnobSpace([], "simplex", [], [], facts.scale, facts.tiling_exact, facts.receptive_field, facts.color)
        knobs = [Knob(k["name"], k["description"]) for k in NOISE_KNOBS]
        return KnobSpace(knobs, "simplex", [1.0, 0.0], [STRENGTH], facts.scale, facts.tiling_exact,
                         facts.receptive_field, facts.color)

    def condition_knob_space(self, facts: RunnerFacts) -> KnobSpace:
        """One knob, the noise level σ/255 the network assumes (default ``val_sigma``/255)."""
        knob = Knob("noise_level", "the noise level sigma/255 the network assumes: the true level removes the noise, "
                                   "a lower one keeps some")
        return KnobSpace([knob], "cube", [float(self.cfg.val_sigma) / 255.0], [], facts.scale, facts.tiling_exact,
                         facts.receptive_field, facts.color)

    def matched_condition(self, p: Tensor, condition: Tensor) -> Tensor | None:
        """At strength s (p = (s, 1 − s)) a conditioned denoiser is told the noise level s·σ: at
        s = 1 the true level (all the noise removed), at s = 0 none (the input kept)."""
        p = torch.as_tensor(p, dtype=torch.float32)
        return condition * float(p[0]) if p.numel() == 2 else None

    def validation_grid(self) -> list[tuple[str, Tensor]]:
        """``s=<s>`` at p = (s, 1 − s) for each strength of ``task.val_grid``."""
        return [(f"s={s:g}", torch.tensor(STRENGTH.p(s, calibrated=False))) for s in self.cfg.val_grid]

    def reference_p(self) -> list[float] | None:
        return [] if self.fidelity_only else [1.0, 0.0]

    def model_info(self) -> dict[str, Any]:
        return {"beta": self.cfg.beta, "sigma_range": list(self.cfg.sigma),
                "strength": None if self.fidelity_only else "p = (s, 1 - s)"}

    # --- compare -----------------------------------------------------------------------------
    @classmethod
    def fixed_variant(cls, recipe: "Recipe") -> "Recipe":
        """The fidelity-only network: no knob, one objective (same size, data, steps, seed)."""
        recipe.model.args["num_params"] = 0
        recipe.task.fidelity_only = True
        return recipe
