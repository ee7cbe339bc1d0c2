r"""Joint deblurring and denoising with two independent knobs on the cube, p = (p_n, p_b).

The paper's Sec. 4.1.2 (and CResMD's task): one network, one knob for how much noise to
remove (``denoise``, p_n) and one for how much blur to remove (``deblur``, p_b), each in
[0, 1] and independent of the other.

**Degradation** of a clean image x ``(C, H, W)`` in [0, 1]:

.. math::
    b = G_{\sigma_b} \ast x, \qquad y = Q\bigl(b + n\bigr), \quad n \sim \mathcal N(0, (\sigma_n/255)^2)

with :math:`G_{\sigma_b}` a normalised ``task.kernel_size``² Gaussian (21×21, replicate
padding; σ_b = 0 is the identity), the noise level σ_n on the 0–255 scale and Q the 8-bit
quantisation of a saved image (clip to [0, 1], round to k/255:
:func:`~tunableconv.data.degradations.quantize_8bit`). In training, with probability
``task.single_share`` (0.5) the sample gets *one* degradation (blur only or noise only,
each half the time: the other level is 0), otherwise both; each level is drawn in its range
``[lo, hi]`` (``task.blur_sigma`` ⊂ [0, 4] px, ``task.noise_sigma`` ⊂ [0, 50]) as
``lo + (hi − lo)·u`` with ``u ~ U[0, 1)`` (``task.levels = "uniform"``) or ``u ~ Beta(0.5,
1)`` (``"beta"``, CResMD's: more mass on weak degradations; drawn as ``u = v²``, v ~ U[0, 1)).

**Targets.** The residual the degradation left in the input is ``r = y − b`` (the noise,
after clipping and quantisation); the sharp image is the clean one, optionally sharpened by
an unsharp mask of strength γ_max (``task.sharpen``; 0: plain deblurring, the default):

.. math::
    s = \mathrm{clip}\bigl(x + \gamma_{\max}\,(x - G_{\sigma_u} \ast x),\ 0, 1\bigr)
    \qquad (\sigma_u = \texttt{task.sharpen\_sigma};\ s = x \text{ when } \gamma_{\max} = 0)

The target the knobs promise at p = (p_n, p_b) ∈ [0, 1]² is

.. math::
    t(p) = \underbrace{(1 - p_b)\,b + p_b\,s}_{\text{deblur knob: blur kept} \to \text{removed}}
           \; + \; \underbrace{(1 - p_n)\,\beta\,r}_{\text{denoise knob: noise kept} \to \text{removed}}

(β = ``task.beta``, the denoiser's noise preservation: at p_n = 0 the fraction β of the noise
is kept). Each knob moves one property: ∂t/∂p_n = −β r is the noise alone, whatever p_b;
∂t/∂p_b = s − b is the blur alone (plus the sharpening), whatever p_n. The four corners,
which are the objectives (in the order of
:func:`~tunableconv.losses.multiloss.cube_corner_weights`, knob 0 = p_n the low bit):

==========  ===========  ======================  ==================================
objective   (p_n, p_b)   target                  meaning
==========  ===========  ======================  ==================================
degraded    (0, 0)       b + β r                 blur and noise kept
denoised    (1, 0)       b                       noise removed, blur kept
deblurred   (0, 1)       s + β r                 blur removed, noise kept
restored    (1, 1)       s                       both removed (the ground truth for γ_max = 0)
==========  ===========  ======================  ==================================

t(p) is affine in each knob, so it *equals* the bilinear interpolation of the corners,
``t(p) = Σ_k a_k(p) t_k`` with ``a(p) = ((1−p_n)(1−p_b), p_n(1−p_b), (1−p_n)p_b, p_n p_b)``:
:meth:`DeblurDenoiseTask.blended_target`. With ``task.mix = "targets"`` (default) the loss is
``d(output, t(p))`` (:class:`~tunableconv.losses.BlendedTargetLoss` on the cube); with
``"losses"`` it is ``Σ_k a_k(p) d(output, t_k)`` (:class:`~tunableconv.losses.ParametricMultiLoss`
on the cube), the corner-weighted analogue of the paper's p-weighted sum. p is drawn
uniformly on [0, 1]² (``task.sampler = "cube"``, optionally with extra mass on the corners
and edges).

**Condition** (what CResMD with ``condition="degradation"`` is fed): (σ_b/4, σ_n/50), each
clipped to [0, 1] (a level above the training range reads as the largest one). The
reference p, whose target is the ground truth (γ_max = 0), is (1, 1); the fixed twin
(``task.fidelity_only``) learns the ``restored`` target alone, without knobs.

**Evaluation cases** are written ``"noise=15,blur=2"`` (σ_n on the 0–255 scale, σ_b in
pixels; a missing level is 0); the default grid is σ_n ∈ {0, 15, 50} × σ_b ∈ {0, 1, 2, 4}
(CResMD's test grid).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import InputError
from ..knobs import Knob, KnobSpace
from .base import (CornerTargetsTask, check_sampler_fields, EvalCase, RunnerFacts, Sample, TaskSection,
                  check_bool, check_choice, check_int, check_number, check_numbers)

if TYPE_CHECKING:
    from ..losses import ParametricMultiLoss
    from ..train.config import Recipe

#: the knobs of the tunable model, in p order: p = (p_n, p_b)
DEBLUR_DENOISE_KNOBS = [
    {"name": "denoise", "description": "1: remove the noise; 0: keep it (beta times the input's noise)"},
    {"name": "deblur", "description": "1: remove the blur (and sharpen by task.sharpen); 0: keep the input's blur"},
]

#: the objectives: the corner targets, in corner order (p_n the low bit)
CORNERS = ("degraded", "denoised", "deblurred", "restored")

#: the corner of each objective, (p_n, p_b)
CORNER_P = {"degraded": (0.0, 0.0), "denoised": (1.0, 0.0), "deblurred": (0.0, 1.0), "restored": (1.0, 1.0)}

#: the largest blur sigma (pixels) and noise sigma (0-255) of training: the condition's scales
MAX_BLUR = 4.0
MAX_NOISE = 50.0

#: the default evaluation grid (CResMD's test grid): noise sigma (0-255) x blur sigma (px)
EVAL_NOISE = (0.0, 15.0, 50.0)
EVAL_BLUR = (0.0, 1.0, 2.0, 4.0)

#: the gradient magnitude (per pixel, [0, 1] images) below which the smoothed clean image is flat,
#: and the share of the clean image's strongest gradients that count as edges (output_measures)
FLAT_GRADIENT = 0.01
FLAT_SCALE = 3.0
EDGE_FRACTION = 0.1

#: the per-objective distances of ``task.loss``
DISTANCES = ("l1", "l2", "mse", "charbonnier")

#: how a degradation level is drawn in its range
LEVEL_SAMPLING = ("uniform", "beta")

#: the names a level may be given by in a case string, and the level each means
_LEVEL_NAMES = {"noise": "noise", "sigma": "noise", "n": "noise", "blur": "blur", "b": "blur"}


def case_label(noise: float, blur: float) -> str:
    """``"noise=15,blur=2"``: the label (and the parseable text) of a case."""
    return f"noise={noise:g},blur={blur:g}"


def make_case(noise: float, blur: float) -> EvalCase:
    """The evaluation case of noise σ_n ``noise`` (0–255) and blur σ_b ``blur`` (pixels), both >= 0."""
    for what, v in (("noise", noise), ("blur", blur)):
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0):
            raise InputError(f"a {what} level must be a finite number >= 0, got {v!r}")
    return EvalCase(case_label(float(noise), float(blur)), {"noise": float(noise), "blur": float(blur)})


def parse_case(text: str) -> EvalCase:
    """``"noise=15,blur=2"`` (or ``"blur=2"``, ``"n=15,b=2"``; a missing level is 0) -> an :class:`EvalCase`.

    One-line :class:`InputError` for anything else."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"a deblur_denoise case is written 'noise=N,blur=B', got {text!r}")
    levels: dict[str, float] = {}
    for part in text.replace(" ", "").split(","):
        key, eq, value = part.partition("=")
        name = _LEVEL_NAMES.get(key.lower())
        if not eq or name is None:
            raise InputError(f"a deblur_denoise case is written 'noise=N,blur=B' (noise sigma 0-255, blur sigma in "
                             f"pixels), got {text!r}")
        if name in levels:
            raise InputError(f"the case {text!r} gives the {name} level twice")
        try:
            levels[name] = float(value)
        except ValueError:
            raise InputError(f"the {name} level of the case {text!r} is not a number: {value!r}") from None
    return make_case(levels.get("noise", 0.0), levels.get("blur", 0.0))


def _as_case(item: Any) -> list[EvalCase]:
    """One user-given level item -> its case(s): a case string (several separated by ';'), an
    :class:`EvalCase`, a mapping ``{"noise": N, "blur": B}`` or a pair ``(noise, blur)``."""
    if isinstance(item, EvalCase):
        return [make_case(float(item.levels.get("noise", 0.0)), float(item.levels.get("blur", 0.0)))]
    if isinstance(item, str):
        return [parse_case(t) for t in item.split(";") if t.strip()] or [parse_case(item)]
    if isinstance(item, Mapping):
        unknown = set(item) - {"noise", "blur"}
        if unknown:
            raise InputError(f"a deblur_denoise case has the levels noise and blur, got {sorted(map(str, unknown))}")
        return [make_case(item.get("noise", 0.0), item.get("blur", 0.0))]
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return [make_case(*item)]
    raise InputError(f"a deblur_denoise case is written 'noise=N,blur=B' (noise sigma 0-255, blur sigma in pixels; "
                     f"several separated by ';'), got {item!r}")


@dataclass
class DeblurDenoiseTaskSection(TaskSection):
    """The ``task`` section of a deblurring-and-denoising recipe. Fields and their ranges (:meth:`validate`):

    - ``blur_sigma``: ``[low, high]``, the training blur std range in pixels, ``0 <= low <= high <= 4``;
    - ``noise_sigma``: ``[low, high]``, the training noise std range on the 0–255 scale, in [0, 50];
    - ``kernel_size``: the blur kernel side, odd, in [3, 63];
    - ``single_share``: the share of training samples with one degradation only, in [0, 1];
    - ``levels``: ``uniform`` or ``beta`` (Beta(0.5, 1) on the range, CResMD's);
    - ``beta``: noise kept at p_n = 0, target + beta·(input noise), in [0, 1];
    - ``sharpen``: γ_max, the unsharp-mask strength of the p_b = 1 target, in [0, 4] (0: plain deblurring);
    - ``sharpen_sigma``: its Gaussian's std in pixels, in (0, 5];
    - ``loss``: the per-objective distance, ``l1``, ``l2`` (``mse``) or ``charbonnier``;
    - ``mix``: ``targets`` (d(output, t(p))) or ``losses`` (Σ_k a_k(p) d(output, t_k));
    - ``fidelity_only``: true for the fixed reference network (the ``restored`` target, no knobs);
    - ``sampler``: ``cube`` or ``mixture`` (the cube with extra mass on corners/edges);
      ``vertex_share``, ``edge_share``: that mass, each in [0, 1] with a sum <= 1;
    - ``p_granularity``: ``sample``, ``batch`` or ``group:N`` (N >= 1);
    - ``val_levels``: the validation cases, a non-empty list of ``"noise=N,blur=B"`` strings;
    - ``val_grid``: the validated knob settings, a non-empty list of ``[p_n, p_b]`` pairs in [0, 1].
    """

    name: str = "deblur_denoise"
    blur_sigma: list = field(default_factory=lambda: [0.0, MAX_BLUR])  # pixels
    noise_sigma: list = field(default_factory=lambda: [0.0, MAX_NOISE])  # 0..255 scale
    kernel_size: int = 21
    single_share: float = 0.5  # one degradation only (blur or noise, half each); the rest get both
    levels: str = "uniform"  # uniform or beta (Beta(0.5, 1) on the range, CResMD's)
    beta: float = 0.9  # noise kept at p_n = 0: target + beta * (input - blurred)
    sharpen: float = 0.0  # gamma_max: unsharp-mask strength at p_b = 1 (0: plain deblurring)
    sharpen_sigma: float = 1.0  # the unsharp mask's Gaussian std, pixels
    loss: str = "l1"
    mix: str = "targets"  # targets: d(output, t(p)); losses: sum_k a_k(p) d(output, t_k)
    fidelity_only: bool = False  # the fixed reference network: the restored target, no knobs
    sampler: str = "cube"  # cube, mixture (cube plus corners/edges)
    vertex_share: float = 0.0
    edge_share: float = 0.0
    p_granularity: str = "sample"
    val_levels: list = field(default_factory=lambda: ["noise=15,blur=2", "noise=50,blur=0"])
    val_grid: list = field(default_factory=lambda: [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5]])

    def validate(self, where: str = "task") -> None:
        """Raise a one-line :class:`InputError` naming the first field out of its range (see above)."""
        super().validate(where)
        for key, hi in (("blur_sigma", MAX_BLUR), ("noise_sigma", MAX_NOISE)):
            value = getattr(self, key)
            check_numbers(f"{where}.{key}", value, 0.0, hi, length=2)
            if value[0] > value[1]:
                raise InputError(f"{where}.{key} must be [low, high] with low <= high, got {value}")
        check_int(f"{where}.kernel_size", self.kernel_size, 3, 63)
        if self.kernel_size % 2 == 0:
            raise InputError(f"{where}.kernel_size must be odd, got {self.kernel_size}")
        check_number(f"{where}.single_share", self.single_share, 0.0, 1.0)
        check_choice(f"{where}.levels", self.levels, LEVEL_SAMPLING)
        check_number(f"{where}.beta", self.beta, 0.0, 1.0)
        check_number(f"{where}.sharpen", self.sharpen, 0.0, 4.0)
        check_number(f"{where}.sharpen_sigma", self.sharpen_sigma, 0.0, 5.0, lo_open=True)
        check_choice(f"{where}.loss", self.loss, DISTANCES)
        check_choice(f"{where}.mix", self.mix, ("targets", "losses"))
        check_bool(f"{where}.fidelity_only", self.fidelity_only)
        check_sampler_fields(self, where, ("cube", "mixture"))
        if not (isinstance(self.val_levels, list) and self.val_levels and all(isinstance(v, str) for v in self.val_levels)):
            raise InputError(f"{where}.val_levels must be a non-empty list of 'noise=N,blur=B' strings, "
                             f"got {self.val_levels!r}")
        for text in self.val_levels:
            try:
                parse_case(text)
            except InputError as exc:
                raise InputError(f"{where}.val_levels: {exc}") from None
        if not (isinstance(self.val_grid, list) and self.val_grid):
            raise InputError(f"{where}.val_grid must be a non-empty list of [p_n, p_b] pairs, got {self.val_grid!r}")
        for pair in self.val_grid:
            check_numbers(f"{where}.val_grid", pair, 0.0, 1.0, length=2)


class DeblurDenoiseTask(CornerTargetsTask):
    """Joint deblurring and denoising: knobs denoise / deblur on the cube (see the module docstring)."""

    name = "deblur_denoise"
    case_example = "noise=15,blur=2"
    section_class = DeblurDenoiseTaskSection
    corners = CORNERS
    rivals = ("tunable", "fixed", "cresmd-condition", "cresmd")
    budgets = {"small": "deblur-denoise-small", "paper": "deblur-denoise-paper"}
    metrics = ("psnr", "ssim", "lpips", "niqe")
    condition_names = ("blur_level", "noise_level")

    def __init__(self, recipe: "Recipe") -> None:
        super().__init__(recipe)  # validates the section (DeblurDenoiseTaskSection.validate)
        t = self.cfg
        self.fidelity_only = bool(t.fidelity_only)
        self.sampling = self.make_sampling(t.sampler, t.vertex_share, t.edge_share, t.p_granularity)

    # --- degradation -----------------------------------------------------------------------
    def _sample(self, clean: Tensor, blur: Tensor | float, noise: Tensor | float, g: torch.Generator) -> Sample:
        """``clean`` ``(C, H, W)`` or ``(B, C, H, W)`` blurred by σ_b ``blur`` (pixels), then
        noise σ_n ``noise`` (0–255) from ``g``, quantised; the corner targets; the condition
        (σ_b/4, σ_n/50) clipped to [0, 1], ``(2,)`` or ``(B, 2)``. Levels are floats or ``()`` tensors."""
        from ..data.degradations import add_gaussian_noise, gaussian_blur, quantize_8bit, unsharp_mask

        t = self.cfg
        blur_f, noise_f = float(blur), float(noise)
        blurred = gaussian_blur(clean, blur_f, size=t.kernel_size, padding="replicate")
        degraded = quantize_8bit(add_gaussian_noise(blurred, noise_f, generator=g))
        sharp = clean if t.sharpen == 0 else unsharp_mask(clean, t.sharpen_sigma, t.sharpen, size=t.kernel_size,
                                                          padding="replicate", clip=True)
        if self.fidelity_only:
            targets = {"restored": sharp}
        else:
            kept = t.beta * (degraded - blurred)
            targets = {"degraded": blurred + kept, "denoised": blurred, "deblurred": sharp + kept, "restored": sharp}
        level = torch.tensor([min(blur_f / MAX_BLUR, 1.0), min(noise_f / MAX_NOISE, 1.0)], dtype=torch.float32)
        condition = level.expand(clean.shape[0], 2).clone() if clean.dim() == 4 else level
        return Sample(degraded, clean, targets, condition)

    def draw_levels(self, g: torch.Generator) -> tuple[float, float]:
        """(σ_b, σ_n) of one training sample: four float32 draws from ``g`` (which degradation,
        which single one, the blur level, the noise level), always all four so the stream's
        later draws do not depend on the outcome."""
        t = self.cfg
        u = torch.rand(4, generator=g)
        which, single, ub, un = (float(v) for v in u)
        if t.levels == "beta":  # Beta(0.5, 1): P(u <= v) = sqrt(v), so u = v^2
            ub, un = ub * ub, un * un
        blur = t.blur_sigma[0] + (t.blur_sigma[1] - t.blur_sigma[0]) * ub
        noise = t.noise_sigma[0] + (t.noise_sigma[1] - t.noise_sigma[0]) * un
        if which < t.single_share:
            if single < 0.5:
                noise = 0.0  # blur only
            else:
                blur = 0.0  # noise only
        return blur, noise

    def degrade(self, clean: Tensor, g: torch.Generator) -> Sample:
        """The levels (:meth:`draw_levels`), then blur, noise (from ``g``) and quantisation."""
        blur, noise = self.draw_levels(g)
        return self._sample(clean, blur, noise, g)

    def degrade_case(self, clean: Tensor, case: EvalCase, g: torch.Generator) -> Sample:
        if not set(case.levels) <= {"noise", "blur"} or not case.levels:
            raise InputError(f"a deblur_denoise evaluation case has the levels noise and blur, got {sorted(case.levels)}")
        return self._sample(clean, float(case.levels.get("blur", 0.0)), float(case.levels.get("noise", 0.0)), g)

    def evaluation_cases(self, levels: Sequence[Any] | str | None = None) -> list[EvalCase]:
        """The default grid σ_n ∈ {0, 15, 50} × σ_b ∈ {0, 1, 2, 4}, or the given cases: case
        strings ``"noise=15,blur=2"`` (a list, or one string with cases separated by ';'),
        :class:`EvalCase` s, mappings ``{"noise": N, "blur": B}`` or ``(noise, blur)`` pairs.
        A bare number is refused (it does not say which level it is)."""
        if levels is None:
            return [make_case(n, b) for n in EVAL_NOISE for b in EVAL_BLUR]
        items = [levels] if isinstance(levels, str) else list(levels)
        cases = [c for item in items for c in _as_case(item)]
        if not cases:
            raise InputError("no deblur_denoise evaluation case given (write them 'noise=N,blur=B;...')")
        return cases

    def validation_cases(self) -> list[EvalCase]:
        return [parse_case(t) for t in self.cfg.val_levels]

    # --- knobs -------------------------------------------------------------------------------
    def p_knob_space(self, facts: RunnerFacts) -> KnobSpace:
        if self.fidelity_only:
            return KnobSpace([], "cube", [], [], facts.scale, facts.tiling_exact, facts.receptive_field, facts.color)
        knobs = [Knob(k["name"], k["description"]) for k in DEBLUR_DENOISE_KNOBS]
        return KnobSpace(knobs, "cube", [1.0, 1.0], [], facts.scale, facts.tiling_exact, facts.receptive_field,
                         facts.color)

    def condition_knob_space(self, facts: RunnerFacts) -> KnobSpace:
        """Two knobs, the levels (σ_b/4, σ_n/50) the network assumes (default: the first
        validation case's); the true levels restore fully, lower ones remove less."""
        knobs = [Knob("blur_level", "the blur sigma/4 the network assumes: the true level removes the blur, "
                                    "a lower one keeps some"),
                 Knob("noise_level", "the noise sigma/50 the network assumes: the true level removes the noise, "
                                     "a lower one keeps some")]
        first = self.validation_cases()[0].levels
        default = [min(first["blur"] / MAX_BLUR, 1.0), min(first["noise"] / MAX_NOISE, 1.0)]
        return KnobSpace(knobs, "cube", default, [], facts.scale, facts.tiling_exact, facts.receptive_field,
                         facts.color)

    def matched_condition(self, p: Tensor, condition: Tensor) -> Tensor | None:
        """The levels to tell a conditioned model at p = (p_n, p_b), given the true levels
        ``condition`` = (c_b, c_n) ``(2,)``: (p_b·c_b, p_n·c_n) — at (1, 1) the true levels
        (everything removed), at 0 on a knob a level of 0 (that degradation left alone; the
        paper's footnote 3). None for p of another length."""
        p = torch.as_tensor(p, dtype=torch.float32).reshape(-1)
        if p.numel() != 2:
            return None
        c = torch.as_tensor(condition, dtype=torch.float32)
        return c * torch.stack([p[1], p[0]]).to(c.device)

    def validation_grid(self) -> list[tuple[str, Tensor]]:
        """``p=<p_n>,<p_b>`` for each pair of ``task.val_grid``."""
        return [(f"p={a:g},{b:g}", torch.tensor([float(a), float(b)])) for a, b in self.cfg.val_grid]

    def reference_p(self) -> list[float] | None:
        return [] if self.fidelity_only else [1.0, 1.0]

    def blended_target(self, sample: Sample, p: Tensor) -> Tensor | None:
        r"""t(p) = Σ_k a_k(p) t_k, the bilinear blend of the corner targets (= the affine
        formula of the module docstring). ``sample`` batched ``(B, C, H, W)``, p ``(2,)`` or
        ``(B, 2)`` in [0, 1]; None for the fixed twin (no knobs)."""
        from ..losses.multiloss import cube_corner_weights
        from ..nn.params import check_params

        if self.fidelity_only:
            return None
        B = sample.input.shape[0]
        p = check_params(torch.as_tensor(p, dtype=torch.float32), num_params=2, batch_size=B)
        p = p.to(sample.input.device).expand(B, 2) if p.dim() == 1 else p.to(sample.input.device)
        a = cube_corner_weights(p)  # (B, 4)
        ts = [sample.targets[n] for n in CORNERS]
        shape = (-1, *([1] * (ts[0].dim() - 1)))
        return sum(a[:, k].reshape(shape).to(ts[0].dtype) * t for k, t in enumerate(ts))

    def output_measures(self, output: Tensor, sample: Sample) -> dict[str, float]:
        r"""The two properties the knobs should move independently, on the grey image (channel mean):

        - ``residual_noise``: the noise left, 255 · std of the high-pass ``o − G_1 ∗ o`` over
          the *flat* pixels of the clean image (gradient magnitude ``|∇(G_3 ∗ x)| <``
          :data:`FLAT_GRADIENT`: at least ~6 px from any edge, so a blurred edge is not counted as
          noise); the clean image's own value there is subtracted in quadrature
          (0 when the output is as smooth as the clean image there);
        - ``edge_sharpness``: mean ``|∇o|`` over the clean image's *edge* pixels (the top
          :data:`EDGE_FRACTION` of ``|∇x|``) divided by the clean image's mean there: 1 = as sharp
          as the ground truth, below 1 blurred, above 1 sharpened.

        ``∇`` is the central difference. Moving ``denoise`` should change the first and leave
        the second, ``deblur`` the reverse. None (missing) where the image has under 64 flat
        or edge pixels."""
        from ..data.degradations import gaussian_blur

        def grey(x: Tensor) -> Tensor:
            return x.float().mean(dim=0, keepdim=True)

        def grad(x: Tensor) -> Tensor:  # (1, H, W) -> (H-2, W-2)
            gx = (x[0, 1:-1, 2:] - x[0, 1:-1, :-2]) / 2
            gy = (x[0, 2:, 1:-1] - x[0, :-2, 1:-1]) / 2
            return torch.sqrt(gx * gx + gy * gy)

        o, x = grey(output), grey(sample.clean)
        smooth = grad(gaussian_blur(x, FLAT_SCALE, size=2 * math.ceil(3 * FLAT_SCALE) + 1, padding="replicate"))
        flat = smooth < FLAT_GRADIENT
        gx = grad(x)
        edges = gx >= torch.quantile(gx.flatten(), 1 - EDGE_FRACTION)
        edges &= gx > FLAT_GRADIENT
        out: dict[str, float] = {}
        if int(flat.sum()) >= 64:
            def hp(z: Tensor) -> Tensor:
                return (z - gaussian_blur(z, 1.0, size=7, padding="replicate"))[0, 1:-1, 1:-1][flat]

            var = float(hp(o).var()) - float(hp(x).var())
            out["residual_noise"] = 255.0 * math.sqrt(max(var, 0.0))
        if int(edges.sum()) >= 64:
            out["edge_sharpness"] = float(grad(o)[edges].mean() / gx[edges].mean())
        return out

    def model_info(self) -> dict[str, Any]:
        t = self.cfg
        return {"beta": t.beta, "sharpen": t.sharpen, "sharpen_sigma": t.sharpen_sigma,
                "blur_sigma_range": list(t.blur_sigma), "noise_sigma_range": list(t.noise_sigma),
                "p": None if self.fidelity_only else "(denoise, deblur) = (p_n, p_b) on the cube",
                "condition": "(blur sigma / 4, noise sigma / 50), clipped to [0, 1]"}

    # --- compare -----------------------------------------------------------------------------
    @classmethod
    def fixed_variant(cls, recipe: "Recipe") -> "Recipe":
        """The restored-only network: no knob, one objective (same size, data, steps, seed)."""
        recipe.model.args["num_params"] = 0
        if "expansion" in recipe.model.args:
            recipe.model.args["expansion"] = 1  # a plain convolution has nothing to expand
        recipe.task.fidelity_only = True
        return recipe
