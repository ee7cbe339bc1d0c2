r"""Three degradations, three independent knobs on the cube: p = (p_b, p_n, p_j) ∈ [0, 1]³.

The setting of "Searching for Controllable Image Restoration Networks" (Kim et al., TSNet and
TA+TSNet; ``../shared/papers/searching-controllable-restoration-tsnet.txt``), itself CResMD's
3-D setting: Gaussian blur, Gaussian noise and JPEG compression, applied in that order. One
network, one knob per degradation saying *how much of it to remove*: ``deblur`` (p_b),
``denoise`` (p_n) and ``dejpeg`` (p_j); p_i = 1 removes degradation i, p_i = 0 keeps it as the
input shows it. The knobs are in the order the degradations are applied, as is the condition.

**Degradation** of a clean image x ``(C, H, W)`` in [0, 1] (Sec. 7.3 of the paper: "each
degradation is applied to clean images sequentially", a 21×21 Gaussian kernel):

.. math::
    b = G_{\sigma_b} \ast x, \qquad z = Q(b + n),\ n \sim \mathcal N(0, (\sigma_n/255)^2),
    \qquad y = J_q(z)\ \ (y = z \text{ without JPEG})

with :math:`G_{\sigma_b}` the normalised ``task.kernel_size``² Gaussian of deblur_denoise
(replicate padding; σ_b = 0 is the identity), σ_b ∈ [0, 4] px, σ_n ∈ [0, 50] on the 0–255
scale, Q the 8-bit quantisation of a saved image
(:func:`~tunableconv.data.degradations.quantize_8bit`) and :math:`J_q` the JPEG round trip at
quality q (:func:`~tunableconv.data.degradations.jpeg_compress`: Pillow, 4:2:0 chroma
subsampling).

**JPEG level ↔ quality.** A JPEG level u ∈ [0, 1] (0: mildest, 1: strongest) maps to the
quality :math:`q = \mathrm{round}(100 - 90u)` (:func:`jpeg_quality`: u = 1 → q = 10,
u = ½ → q = 55, u → 0⁺ → q = 100), except that **u = 0 means no JPEG at all** (the codec is
skipped: the paper's "additional level of non-compressed images"). Back, :func:`jpeg_level`
gives u = (100 − q)/90 clipped to [0, 1] for a quality q and 0 for no JPEG; a quality of 100
then has level 0, like no JPEG, although the codec at q = 100 is not lossless (it subsamples
the chroma). Training draws u and uses the integer quality; the condition carries the level of
that integer quality.

**Training pairs** (Sec. 3.3, "Data sampling strategy": "the training image pairs are equally
sampled from 1) uniform distribution for a single degradation type, 2) binary distribution for
all types, and 3) uniform distribution for all types"). Each sample draws one of three regimes,
with probabilities ``task.regime_shares`` (default ⅓ each):

1. *single*: one degradation type, chosen uniformly among the three, at a uniform level in its
   range; the other two absent;
2. *binary*: every type independently present or absent with probability ½ each (so ⅛ of
   these samples are clean); a present type at its strongest level (σ_b = 4, σ_n = 50, q = 10:
   ``task.binary_levels = "extreme"``, the literal reading of a binary distribution of the
   levels, the default) or at a uniform level in its range (``"uniform"``);
3. *all*: all three types at independent uniform levels.

A uniform level is ``lo + (hi − lo)·u`` with u ~ U[0, 1) in ``task.blur_sigma`` /
``task.noise_sigma``; for JPEG the quality is ``round(hi − (hi − lo)·u)`` in
``task.jpeg_quality`` = [10, 100] (with the defaults, q = round(100 − 90u)). Levels are drawn
continuously rather than on the paper's grid (strides 0.1, 1 and 2 for blur, noise and
quality). Every sample takes eight draws from its stream whatever the regime
(:meth:`Restore3Task.draw_levels`), then the noise.

**Targets.** The input decomposes as ``y = b + r_n + r_j``, one residual per degradation:

- ``r_j = J_q(b) − b``: what the codec does to the noise-free blurred image (its blocking and
  ringing, with the 8-bit quantisation of b); 0 without JPEG;
- ``r_n = y − J_q(b)``: the noise *as the input shows it* (after quantisation and after the
  codec, which at the 4:2:0 default removes much of the chroma noise); ``y − b`` without JPEG,
  deblur_denoise's residual.

(The other split, ``r_j = y − z`` and ``r_n = z − b``, makes the "noise removed, JPEG kept"
target ``b + r_j = y − (z − b)`` subtract noise the codec had already removed: on a BSD100 crop
with σ_n = 25, even at q = 100 that target differed from ``J_q(b)`` by 18/255 rms, about as
noisy as the input, against 0 here.) The target at p is affine in each knob:

.. math::
    t(p) = \underbrace{(1 - p_b)\,b + p_b\,x}_{\text{deblur}}
         \; + \; \underbrace{(1 - p_n)\,\beta\,r_n}_{\text{denoise}}
         \; + \; \underbrace{(1 - p_j)\,\beta_j\,r_j}_{\text{dejpeg}}

with β = ``task.beta`` (0.9, the noise preservation of the denoising objective, as in
deblur_denoise) and β_j = ``task.jpeg_beta`` (1 by default). β_j = 1 because the JPEG
residual is a deterministic function of the image the network sees: keeping all of it at
p_j = 0 leaves the input's artefacts exactly as they are (a 90 % blocking is no nicer to look
at than the full one, and unlike noise it has no grain to soften), so the ``dejpeg`` knob reads
"leave the codec's artefacts" at 0 and "remove them" at 1. ∂t/∂p_b = x − b is the blur alone,
∂t/∂p_n = −β r_n the noise alone, ∂t/∂p_j = −β_j r_j the codec alone, each whatever the other
knobs. t(0, 0, 0) = y − (1 − β) r_n (the input, a tenth of its noise removed), t(1, 1, 1) = x.

The eight corners are the objectives, in the order of
:func:`~tunableconv.losses.multiloss.cube_corner_weights` (knob 0 = p_b the low bit):

======================  ===============  ==============================================
objective               (p_b, p_n, p_j)  target
======================  ===============  ==============================================
degraded                (0, 0, 0)        b + β r_n + β_j r_j
deblurred               (1, 0, 0)        x + β r_n + β_j r_j
denoised                (0, 1, 0)        b + β_j r_j
deblurred_denoised      (1, 1, 0)        x + β_j r_j
dejpegged               (0, 0, 1)        b + β r_n
deblurred_dejpegged     (1, 0, 1)        x + β r_n
denoised_dejpegged      (0, 1, 1)        b
restored                (1, 1, 1)        x (the ground truth)
======================  ===============  ==============================================

t(p) is affine in each knob, so it *equals* the trilinear interpolation of the corners,
``t(p) = Σ_k a_k(p) t_k`` (:meth:`Restore3Task.blended_target`). The loss is ``d(output,
t(p))`` (``task.mix = "targets"``, :class:`~tunableconv.losses.BlendedTargetLoss`) or
``Σ_k a_k(p) d(output, t_k)`` (``"losses"``); p is drawn uniformly on [0, 1]³ (``task.sampler
= "cube"``, optionally with extra mass on the corners and edges). The reference p is (1, 1, 1);
the fixed twin (``task.fidelity_only``) learns the ``restored`` target alone, without knobs.

**Condition** (what CResMD with ``condition="degradation"`` is fed), in the knobs' order:
(σ_b/4, σ_n/50, u_j), each clipped to [0, 1], u_j the JPEG level of the quality
(:func:`jpeg_level`, 0 without JPEG). :meth:`Restore3Task.matched_condition` scales it by p
(p = (1, 1, 1): the true levels; 0 on a knob: that degradation left alone).

**The 27 effects** are the knob grid {0, ½, 1}³ (:data:`EFFECT_VALUES`,
:func:`effect_grid`: ``(27, 3)``, p_b varying fastest, the 8 corners among them). Why the knob
grid and not a grid of levels: p is *relative* to the image's own degradation (TSNet's
"relative ground truth" task vectors: how much of each degradation to remove), so one grid of
27 settings serves every image without knowing or estimating its levels, which is what a user
sweeping a real photo can do and what ``model.sweep(x, effect_grid())`` computes with the trunk
run once; p = (1, 1, 1) is the effect that matches the true degradation in every image. A level
grid would depend on the image (its levels are unknown on a real photo), and for a model
conditioned on the levels the knob grid maps to one anyway: the matched condition of each knob
setting is the image's true levels scaled by p.

**Evaluation cases** are written ``"blur=2,noise=25,jpeg=30"``: σ_b in pixels, σ_n on the 0–255
scale, ``jpeg`` the quality (an integer in [1, 100]); a missing blur or noise is 0, a missing
jpeg means no JPEG. The default grid is the paper's test protocol on the levels at 0, ½ and 1
of each range: σ_b ∈ {0, 2, 4} × σ_n ∈ {0, 25, 50} × JPEG ∈ {none, q = 55, q = 10}, without
the clean starting point (Sec. 7.3: its PSNR is infinite): 26 cases.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import InputError
from ..knobs import Knob, KnobSpace
from .base import (CornerTargetsTask, check_sampler_fields, EvalCase, RunnerFacts, Sample, TaskSection,
                  check_choice, check_bool, check_int, check_number, check_numbers)

if TYPE_CHECKING:
    from ..losses import ParametricMultiLoss
    from ..train.config import Recipe

#: the knobs of the tunable model, in p order: p = (p_b, p_n, p_j), the order the degradations are applied in
RESTORE3_KNOBS = [
    {"name": "deblur", "description": "how much of the blur to remove: 1 removes it, 0 keeps the input's blur"},
    {"name": "denoise", "description": "how much of the noise to remove: 1 removes it, 0 keeps it "
                                       "(beta times the input's noise)"},
    {"name": "dejpeg", "description": "how much of the JPEG artefacts to remove: 1 removes them, 0 keeps the "
                                      "input's (jpeg_beta times them)"},
]

#: the objectives: the corner targets, in corner order (p_b the low bit, p_j the high bit)
CORNERS = ("degraded", "deblurred", "denoised", "deblurred_denoised",
           "dejpegged", "deblurred_dejpegged", "denoised_dejpegged", "restored")

#: the corner of each objective, (p_b, p_n, p_j)
CORNER_P = {name: (float(k & 1), float((k >> 1) & 1), float((k >> 2) & 1)) for k, name in enumerate(CORNERS)}

#: the largest blur sigma (pixels) and noise sigma (0-255) of training: the condition's scales
MAX_BLUR = 4.0
MAX_NOISE = 50.0

#: the JPEG qualities of levels 0+ and 1 (level u -> quality round(100 - 90 u); level 0: no JPEG)
MILDEST_QUALITY = 100
STRONGEST_QUALITY = 10

#: the knob values of the 27 effects, per knob
EFFECT_VALUES = (0.0, 0.5, 1.0)

#: the default evaluation grid: blur sigma (px) x noise sigma (0-255) x JPEG quality (None: no JPEG)
EVAL_BLUR = (0.0, 2.0, 4.0)
EVAL_NOISE = (0.0, 25.0, 50.0)
EVAL_JPEG = (None, 55, 10)

#: the training regimes of the TSNet paper's Sec. 3.3, in the order of ``task.regime_shares``
REGIMES = ("single", "binary", "all")

#: the per-objective distances of ``task.loss``
DISTANCES = ("l1", "l2", "mse", "charbonnier")

#: the names a level may be given by in a case string, and the level each means
_LEVEL_NAMES = {"blur": "blur", "b": "blur", "noise": "noise", "sigma": "noise", "n": "noise",
                "jpeg": "jpeg", "q": "jpeg", "quality": "jpeg"}

_CASE_FORM = "'blur=B,noise=N,jpeg=Q' (blur sigma in pixels, noise sigma 0-255, JPEG quality 1-100; missing: absent)"


# ----------------------------------------------------------------------------------------
# JPEG level <-> quality, the 27 effects
# ----------------------------------------------------------------------------------------
def jpeg_quality(level: float) -> int | None:
    """The JPEG quality of level u ∈ [0, 1]: ``round(100 − 90u)`` (half up), None (no JPEG) for u = 0."""
    if not (isinstance(level, (int, float)) and not isinstance(level, bool) and math.isfinite(level)
            and 0.0 <= level <= 1.0):
        raise InputError(f"a JPEG level must be a number in [0, 1], got {level!r}")
    if level == 0:
        return None
    return int(math.floor(MILDEST_QUALITY - (MILDEST_QUALITY - STRONGEST_QUALITY) * float(level) + 0.5))


def jpeg_level(quality: int | None) -> float:
    """The JPEG level of quality q: ``(100 − q)/90`` clipped to [0, 1]; 0 for None (no JPEG)."""
    if quality is None:
        return 0.0
    return min(max((MILDEST_QUALITY - float(quality)) / (MILDEST_QUALITY - STRONGEST_QUALITY), 0.0), 1.0)


def effect_grid() -> Tensor:
    """The 27 effects: every p in {0, ½, 1}³, ``(27, 3)`` float32, p_b varying fastest (index
    ``i_b + 3 i_n + 9 i_j``), so the corners come in :data:`CORNERS`' order among them."""
    return torch.tensor([(b, n, j) for j, n, b in itertools.product(EFFECT_VALUES, repeat=3)], dtype=torch.float32)


# ----------------------------------------------------------------------------------------
# evaluation cases
# ----------------------------------------------------------------------------------------
def case_label(blur: float, noise: float, jpeg: int | None) -> str:
    """``"blur=2,noise=25,jpeg=30"`` (``"blur=2,noise=25"`` without JPEG): the label and the parseable text of a case."""
    text = f"blur={blur:g},noise={noise:g}"
    return text if jpeg is None else f"{text},jpeg={int(jpeg)}"


def _check_quality(value: Any) -> int:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and float(value) == int(value) and 1 <= int(value) <= 100):
        raise InputError(f"a JPEG quality must be an integer in [1, 100], got {value!r}")
    return int(value)


def make_case(blur: float, noise: float, jpeg: int | float | None = None) -> EvalCase:
    """The evaluation case of blur σ_b ``blur`` (pixels), noise σ_n ``noise`` (0–255), both >= 0,
    and JPEG quality ``jpeg`` (an integer in [1, 100]; None: no JPEG). Its levels are
    ``{"blur", "noise"}`` plus ``"jpeg"`` (the quality, as a float) when there is JPEG."""
    for what, v in (("blur", blur), ("noise", noise)):
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0):
            raise InputError(f"a {what} level must be a finite number >= 0, got {v!r}")
    levels = {"blur": float(blur), "noise": float(noise)}
    q = None if jpeg is None else _check_quality(jpeg)
    if q is not None:
        levels["jpeg"] = float(q)
    return EvalCase(case_label(float(blur), float(noise), q), levels)


def parse_case(text: str) -> EvalCase:
    """``"blur=2,noise=25,jpeg=30"`` (any order and subset; ``b``, ``n``/``sigma``, ``q``/``quality``
    also name the levels) -> an :class:`EvalCase`. One-line :class:`InputError` for anything else."""
    if not isinstance(text, str) or not text.strip():
        raise InputError(f"a restore3 case is written {_CASE_FORM}, got {text!r}")
    levels: dict[str, float] = {}
    for part in text.replace(" ", "").split(","):
        key, eq, value = part.partition("=")
        name = _LEVEL_NAMES.get(key.lower())
        if not eq or name is None:
            raise InputError(f"a restore3 case is written {_CASE_FORM}, got {text!r}")
        if name in levels:
            raise InputError(f"the case {text!r} gives the {name} level twice")
        try:
            levels[name] = float(value)
        except ValueError:
            raise InputError(f"the {name} level of the case {text!r} is not a number: {value!r}") from None
    return make_case(levels.get("blur", 0.0), levels.get("noise", 0.0), levels.get("jpeg"))


def _as_case(item: Any) -> list[EvalCase]:
    """One user-given item -> its case(s): a case string (several separated by ';'), an
    :class:`EvalCase`, a mapping ``{"blur": B, "noise": N, "jpeg": Q}`` or a triple
    ``(blur, noise, quality or None)``."""
    if isinstance(item, EvalCase):
        item = dict(item.levels)
    if isinstance(item, str):
        return [parse_case(t) for t in item.split(";") if t.strip()] or [parse_case(item)]
    if isinstance(item, Mapping):
        unknown = set(item) - {"blur", "noise", "jpeg"}
        if unknown:
            raise InputError(f"a restore3 case has the levels blur, noise and jpeg, got {sorted(map(str, unknown))}")
        return [make_case(item.get("blur", 0.0), item.get("noise", 0.0), item.get("jpeg"))]
    if isinstance(item, (list, tuple)) and len(item) == 3:
        return [make_case(*item)]
    raise InputError(f"a restore3 case is written {_CASE_FORM}; several separated by ';', got {item!r}")


def _case_levels(case: EvalCase) -> tuple[float, float, int | None]:
    """(σ_b, σ_n, quality or None) of a case (checked)."""
    if not case.levels or not set(case.levels) <= {"blur", "noise", "jpeg"}:
        raise InputError(f"a restore3 evaluation case has the levels blur, noise and jpeg, got {sorted(case.levels)}")
    c = make_case(case.levels.get("blur", 0.0), case.levels.get("noise", 0.0), case.levels.get("jpeg"))
    q = c.levels.get("jpeg")
    return c.levels["blur"], c.levels["noise"], None if q is None else int(q)


# ----------------------------------------------------------------------------------------
# the recipe section
# ----------------------------------------------------------------------------------------
@dataclass
class Restore3TaskSection(TaskSection):
    """The ``task`` section of a three-degradation recipe. Fields and their ranges (:meth:`validate`):

    - ``blur_sigma``: ``[low, high]``, the training blur std range in pixels, ``0 <= low <= high <= 4``;
    - ``noise_sigma``: ``[low, high]``, the training noise std range on the 0–255 scale, in [0, 50];
    - ``jpeg_quality``: ``[low, high]``, the training JPEG quality range, integers in [1, 100];
    - ``kernel_size``: the blur kernel side, odd, in [3, 63];
    - ``regime_shares``: the shares of the three training regimes (single, binary, all), three
      numbers in [0, 1] summing to 1;
    - ``binary_levels``: the level of a present type in the binary regime, ``extreme`` (the
      strongest of its range) or ``uniform``;
    - ``beta``: noise kept at p_n = 0, in [0, 1]; ``jpeg_beta``: JPEG artefacts kept at p_j = 0, in [0, 1];
    - ``loss``: the per-objective distance, ``l1``, ``l2`` (``mse``) or ``charbonnier``;
    - ``mix``: ``targets`` (d(output, t(p))) or ``losses`` (Σ_k a_k(p) d(output, t_k));
    - ``fidelity_only``: true for the fixed reference network (the ``restored`` target, no knobs);
    - ``sampler``: ``cube`` or ``mixture`` (the cube with extra mass on corners/edges);
      ``vertex_share``, ``edge_share``: that mass, each in [0, 1] with a sum <= 1;
    - ``p_granularity``: ``sample``, ``batch`` or ``group:N`` (N >= 1);
    - ``val_levels``: the validation cases, a non-empty list of ``"blur=B,noise=N,jpeg=Q"`` strings;
    - ``val_grid``: the validated knob settings, a non-empty list of ``[p_b, p_n, p_j]`` in [0, 1].
    """

    name: str = "restore3"
    blur_sigma: list = field(default_factory=lambda: [0.0, MAX_BLUR])  # pixels
    noise_sigma: list = field(default_factory=lambda: [0.0, MAX_NOISE])  # 0..255 scale
    jpeg_quality: list = field(default_factory=lambda: [STRONGEST_QUALITY, MILDEST_QUALITY])
    kernel_size: int = 21
    regime_shares: list = field(default_factory=lambda: [1 / 3, 1 / 3, 1 / 3])  # single, binary, all
    binary_levels: str = "extreme"  # a present type in the binary regime: its strongest level, or uniform
    beta: float = 0.9  # noise kept at p_n = 0
    jpeg_beta: float = 1.0  # JPEG artefacts kept at p_j = 0
    loss: str = "l1"
    mix: str = "targets"  # targets: d(output, t(p)); losses: sum_k a_k(p) d(output, t_k)
    fidelity_only: bool = False  # the fixed reference network: the restored target, no knobs
    sampler: str = "cube"  # cube, mixture (cube plus corners/edges)
    vertex_share: float = 0.0
    edge_share: float = 0.0
    p_granularity: str = "sample"
    val_levels: list = field(default_factory=lambda: ["blur=2,noise=25,jpeg=30", "blur=0,noise=0,jpeg=10"])
    val_grid: list = field(default_factory=lambda: [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5], [1.0, 1.0, 1.0]])

    def validate(self, where: str = "task") -> None:
        """Raise a one-line :class:`InputError` naming the first field out of its range (see above)."""
        super().validate(where)
        for key, hi in (("blur_sigma", MAX_BLUR), ("noise_sigma", MAX_NOISE)):
            value = getattr(self, key)
            check_numbers(f"{where}.{key}", value, 0.0, hi, length=2)
            if value[0] > value[1]:
                raise InputError(f"{where}.{key} must be [low, high] with low <= high, got {value}")
        check_numbers(f"{where}.jpeg_quality", self.jpeg_quality, 1, 100, length=2, integer=True)
        if self.jpeg_quality[0] > self.jpeg_quality[1]:
            raise InputError(f"{where}.jpeg_quality must be [low, high] with low <= high, got {self.jpeg_quality}")
        check_int(f"{where}.kernel_size", self.kernel_size, 3, 63)
        if self.kernel_size % 2 == 0:
            raise InputError(f"{where}.kernel_size must be odd, got {self.kernel_size}")
        check_numbers(f"{where}.regime_shares", self.regime_shares, 0.0, 1.0, length=3)
        if abs(sum(self.regime_shares) - 1.0) > 1e-6:
            raise InputError(f"{where}.regime_shares (single, binary, all) must sum to 1, got {self.regime_shares}")
        check_choice(f"{where}.binary_levels", self.binary_levels, ("extreme", "uniform"))
        check_number(f"{where}.beta", self.beta, 0.0, 1.0)
        check_number(f"{where}.jpeg_beta", self.jpeg_beta, 0.0, 1.0)
        check_choice(f"{where}.loss", self.loss, DISTANCES)
        check_choice(f"{where}.mix", self.mix, ("targets", "losses"))
        check_bool(f"{where}.fidelity_only", self.fidelity_only)
        check_sampler_fields(self, where, ("cube", "mixture"))
        if not (isinstance(self.val_levels, list) and self.val_levels and all(isinstance(v, str) for v in self.val_levels)):
            raise InputError(f"{where}.val_levels must be a non-empty list of 'blur=B,noise=N,jpeg=Q' strings, "
                             f"got {self.val_levels!r}")
        for text in self.val_levels:
            try:
                parse_case(text)
            except InputError as exc:
                raise InputError(f"{where}.val_levels: {exc}") from None
        if not (isinstance(self.val_grid, list) and self.val_grid):
            raise InputError(f"{where}.val_grid must be a non-empty list of [p_b, p_n, p_j] triples, got {self.val_grid!r}")
        for triple in self.val_grid:
            check_numbers(f"{where}.val_grid", triple, 0.0, 1.0, length=3)


# ----------------------------------------------------------------------------------------
# the task
# ----------------------------------------------------------------------------------------
class Restore3Task(CornerTargetsTask):
    """Blur, noise and JPEG: knobs deblur / denoise / dejpeg on the cube (see the module docstring)."""

    name = "restore3"
    case_example = "blur=2,noise=25,jpeg=30"
    section_class = Restore3TaskSection
    corners = CORNERS
    rivals = ("tunable", "fixed", "cresmd-condition", "cresmd", "tsnet", "ta-tsnet")
    budgets = {"small": "restore3-small", "paper": "restore3-paper"}
    metrics = ("psnr", "ssim", "lpips", "niqe")
    condition_names = ("blur_level", "noise_level", "jpeg_level")

    def __init__(self, recipe: "Recipe") -> None:
        super().__init__(recipe)  # validates the section (Restore3TaskSection.validate)
        t = self.cfg
        self.fidelity_only = bool(t.fidelity_only)
        self.sampling = self.make_sampling(t.sampler, t.vertex_share, t.edge_share, t.p_granularity)

    # --- degradation -----------------------------------------------------------------------
    def residuals(self, clean: Tensor, blur: float, noise: float, quality: int | None,
                  g: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """The degradation and its split: ``(y, b, r_n, r_j)`` with ``y = b + r_n + r_j`` (to
        rounding), for ``clean`` ``(C, H, W)`` or ``(B, C, H, W)``: blur σ_b ``blur`` (pixels),
        then noise σ_n ``noise`` (0–255) from ``g`` and 8-bit quantisation, then JPEG at
        ``quality`` (None: none). ``r_j = J_q(b) − b`` (0 without JPEG), ``r_n = y − b − r_j``."""
        from ..data.degradations import add_gaussian_noise, gaussian_blur, jpeg_compress, quantize_8bit

        blurred = gaussian_blur(clean, float(blur), size=self.cfg.kernel_size, padding="replicate")
        degraded = quantize_8bit(add_gaussian_noise(blurred, float(noise), generator=g))
        if quality is None:
            r_j = torch.zeros_like(blurred)
        else:
            degraded = jpeg_compress(degraded, quality)
            r_j = jpeg_compress(blurred, quality) - blurred
        return degraded, blurred, degraded - blurred - r_j, r_j

    def _sample(self, clean: Tensor, blur: float, noise: float, quality: int | None, g: torch.Generator) -> Sample:
        """The sample of ``clean`` at (σ_b, σ_n, quality): the input, the corner targets, the
        condition (σ_b/4, σ_n/50, JPEG level) clipped to [0, 1], ``(3,)`` or ``(B, 3)``."""
        t = self.cfg
        degraded, blurred, r_n, r_j = self.residuals(clean, blur, noise, quality, g)
        if self.fidelity_only:
            targets = {"restored": clean}
        else:
            kept_n, kept_j = t.beta * r_n, t.jpeg_beta * r_j
            targets = {}
            for name, (pb, pn, pj) in CORNER_P.items():
                target = clean if pb else blurred
                if not pn:
                    target = target + kept_n
                if not pj:
                    target = target + kept_j
                targets[name] = target
        level = torch.tensor([min(float(blur) / MAX_BLUR, 1.0), min(float(noise) / MAX_NOISE, 1.0), jpeg_level(quality)],
                             dtype=torch.float32)
        condition = level.expand(clean.shape[0], 3).clone() if clean.dim() == 4 else level
        return Sample(degraded, clean, targets, condition)

    def draw_levels(self, g: torch.Generator) -> tuple[float, float, int | None]:
        """(σ_b, σ_n, JPEG quality or None) of one training sample (the regimes of the module
        docstring). Eight float32 draws from ``g`` — the regime, the single type, three
        presence bits, three levels — always all eight, so the stream's later draws do not
        depend on the outcome."""
        t = self.cfg
        regime_u, which_u, *rest = (float(v) for v in torch.rand(8, generator=g))
        bits, (ub, un, uj) = rest[:3], rest[3:]
        shares = t.regime_shares
        regime = "single" if regime_u < shares[0] else "binary" if regime_u < shares[0] + shares[1] else "all"
        if regime == "binary":
            present = [v < 0.5 for v in bits]
            if t.binary_levels == "extreme":
                ub = un = uj = 1.0
        elif regime == "single":
            which = min(int(which_u * 3), 2)
            present = [i == which for i in range(3)]
        else:
            present = [True, True, True]
        blur = t.blur_sigma[0] + (t.blur_sigma[1] - t.blur_sigma[0]) * ub if present[0] else 0.0
        noise = t.noise_sigma[0] + (t.noise_sigma[1] - t.noise_sigma[0]) * un if present[1] else 0.0
        lo, hi = t.jpeg_quality
        quality = int(math.floor(hi - (hi - lo) * uj + 0.5)) if present[2] else None
        return blur, noise, quality

    def degrade(self, clean: Tensor, g: torch.Generator) -> Sample:
        """The levels (:meth:`draw_levels`), then blur, noise (from ``g``), quantisation and JPEG."""
        blur, noise, quality = self.draw_levels(g)
        return self._sample(clean, blur, noise, quality, g)

    def degrade_case(self, clean: Tensor, case: EvalCase, g: torch.Generator) -> Sample:
        blur, noise, quality = _case_levels(case)
        return self._sample(clean, blur, noise, quality, g)

    def evaluation_cases(self, levels: Sequence[Any] | str | None = None) -> list[EvalCase]:
        """The default grid σ_b ∈ {0, 2, 4} × σ_n ∈ {0, 25, 50} × JPEG ∈ {none, q = 55, q = 10}
        without the clean case (26 cases), or the given cases: case strings
        ``"blur=2,noise=25,jpeg=30"`` (a list, or one string with cases separated by ';'),
        :class:`EvalCase` s, mappings ``{"blur": B, "noise": N, "jpeg": Q}`` or triples
        ``(blur, noise, quality or None)``. A bare number is refused (it does not say which level it is)."""
        if levels is None:
            return [make_case(b, n, q) for q in EVAL_JPEG for n in EVAL_NOISE for b in EVAL_BLUR
                    if (b, n, q) != (0.0, 0.0, None)]
        items = [levels] if isinstance(levels, str) else list(levels)
        cases = [c for item in items for c in _as_case(item)]
        if not cases:
            raise InputError(f"no restore3 evaluation case given (write them {_CASE_FORM}, separated by ';')")
        return cases

    def validation_cases(self) -> list[EvalCase]:
        return [parse_case(t) for t in self.cfg.val_levels]

    # --- knobs -------------------------------------------------------------------------------
    def p_knob_space(self, facts: RunnerFacts) -> KnobSpace:
        if self.fidelity_only:
            return KnobSpace([], "cube", [], [], facts.scale, facts.tiling_exact, facts.receptive_field, facts.color)
        knobs = [Knob(k["name"], k["description"]) for k in RESTORE3_KNOBS]
        return KnobSpace(knobs, "cube", [1.0, 1.0, 1.0], [], facts.scale, facts.tiling_exact, facts.receptive_field,
                         facts.color)

    def condition_knob_space(self, facts: RunnerFacts) -> KnobSpace:
        """Three knobs, the levels (σ_b/4, σ_n/50, JPEG level) the network assumes (default: the
        first validation case's); the true levels restore fully, lower ones remove less."""
        knobs = [Knob("blur_level", "the blur sigma/4 the network assumes: the true level removes the blur, "
                                    "a lower one keeps some"),
                 Knob("noise_level", "the noise sigma/50 the network assumes: the true level removes the noise, "
                                     "a lower one keeps some"),
                 Knob("jpeg_level", "the JPEG level (100 - quality)/90 the network assumes: the true level removes "
                                    "the artefacts, a lower one keeps some")]
        blur, noise, quality = _case_levels(self.validation_cases()[0])
        default = [min(blur / MAX_BLUR, 1.0), min(noise / MAX_NOISE, 1.0), jpeg_level(quality)]
        return KnobSpace(knobs, "cube", default, [], facts.scale, facts.tiling_exact, facts.receptive_field,
                         facts.color)

    def matched_condition(self, p: Tensor, condition: Tensor) -> Tensor | None:
        """The levels to tell a conditioned model at p = (p_b, p_n, p_j), given the true levels
        ``condition`` = (c_b, c_n, c_j) ``(3,)``: (p_b·c_b, p_n·c_n, p_j·c_j) — the true levels at
        (1, 1, 1), a level of 0 (that degradation left alone) at 0 on a knob. None for p of
        another length."""
        p = torch.as_tensor(p, dtype=torch.float32).reshape(-1)
        if p.numel() != 3:
            return None
        c = torch.as_tensor(condition, dtype=torch.float32)
        return c * p.to(c.device)

    def validation_grid(self) -> list[tuple[str, Tensor]]:
        """``p=<p_b>,<p_n>,<p_j>`` for each triple of ``task.val_grid``."""
        return [(f"p={a:g},{b:g},{c:g}", torch.tensor([float(a), float(b), float(c)])) for a, b, c in self.cfg.val_grid]

    def reference_p(self) -> list[float] | None:
        return [] if self.fidelity_only else [1.0, 1.0, 1.0]

    def effects(self) -> Tensor:
        """The 27 effects, ``(27, 3)`` (:func:`effect_grid`); ``(0, 3)`` for the fixed twin (no knobs)."""
        return torch.zeros(0, 3) if self.fidelity_only else effect_grid()

    def blended_target(self, sample: Sample, p: Tensor) -> Tensor | None:
        r"""t(p) = Σ_k a_k(p) t_k, the trilinear blend of the corner targets (= the affine formula
        of the module docstring). ``sample`` batched ``(B, C, H, W)``, p ``(3,)`` or ``(B, 3)`` in
        [0, 1]; None for the fixed twin (no knobs)."""
        from ..losses.multiloss import cube_corner_weights
        from ..nn.params import check_params

        if self.fidelity_only:
            return None
        B = sample.input.shape[0]
        p = check_params(torch.as_tensor(p, dtype=torch.float32), num_params=3, batch_size=B)
        p = p.to(sample.input.device).expand(B, 3) if p.dim() == 1 else p.to(sample.input.device)
        a = cube_corner_weights(p)  # (B, 8)
        ts = [sample.targets[n] for n in CORNERS]
        shape = (-1, *([1] * (ts[0].dim() - 1)))
        return sum(a[:, k].reshape(shape).to(ts[0].dtype) * t for k, t in enumerate(ts))

    def model_info(self) -> dict[str, Any]:
        t = self.cfg
        return {"beta": t.beta, "jpeg_beta": t.jpeg_beta, "blur_sigma_range": list(t.blur_sigma),
                "noise_sigma_range": list(t.noise_sigma), "jpeg_quality_range": list(t.jpeg_quality),
                "p": None if self.fidelity_only else "(deblur, denoise, dejpeg) = (p_b, p_n, p_j) on the cube",
                "condition": "(blur sigma / 4, noise sigma / 50, JPEG level (100 - quality) / 90), clipped to [0, 1]",
                "effects": "the knob grid {0, 0.5, 1}^3"}

    # --- compare -----------------------------------------------------------------------------
    @classmethod
    def fixed_variant(cls, recipe: "Recipe") -> "Recipe":
        """The restored-only network: no knob, one objective (same size, data, steps, seed)."""
        recipe.model.args["num_params"] = 0
        if "expansion" in recipe.model.args:
            recipe.model.args["expansion"] = 1  # a plain convolution has nothing to expand
        recipe.task.fidelity_only = True
        return recipe
