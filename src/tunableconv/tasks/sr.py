r"""×4 (or ×2, ×3, ×8) super-resolution with a distortion ↔ perception knob on the simplex,
p = (p_fidelity, p_perceptual): the paper's Sec. 4.1.3.

**Degradation.** The low-resolution input of a high-resolution image x ``(C, H, W)`` is
MATLAB's bicubic downscaling by 1/s with antialiasing
(:func:`~tunableconv.data.degradations.imresize`, ``scale = 1/s``), saved as an 8-bit image
(clip, round to k/255). H and W are first cut to multiples of s from the top left (the SR
papers' "modcrop"), so the output of a ×s network has the size of the ground truth. No
noise, no blur: the classic bicubic benchmark.

**Objectives**, both to the ground truth x:

- ``fidelity``: ``L_1 = mean |y − x|`` (the PSNR-oriented end);
- ``perceptual``: ESRGAN's generator loss
  ``L_2 = λ_p · L_percep + λ_adv · L_RaGAN + λ_1 · mean |y − x|`` with the VGG19
  ``conv5_4`` feature distance (features *before* the ReLU, the original Caffe weights,
  input BGR in [0, 255] minus the ImageNet mean:
  :class:`~tunableconv.losses.VGG19Features` ``weights="caffe"``), the relativistic
  average GAN loss against a multi-scale discriminator whose logits are pooled over the
  image (:class:`~tunableconv.losses.MultiScaleDiscriminator`: any input size), and the
  small L1 ESRGAN keeps; defaults λ_p = 1, λ_adv = 5·10⁻³, λ_1 = 10⁻² (ESRGAN's).

The multi-loss is the paper's ``Σ_i p_i w_i L_i`` per sample (``mix = "losses"``), with
``w = (1, task.perceptual_objective_weight)``. The two objectives differ in size by three
orders of magnitude: at the start of the multi-loss phase L_1 ≈ 0.03 while L_2 ≈ 12 (Caffe
VGG features are on the 0–255 scale). Unweighted, every mixed sample's gradient is the
perceptual one's and the fidelity end drifts with it: after 250 steps of ``sr4-small``
with w = (1, 1) the L1 end had lost 0.64 dB on the validation images (24.36 vs 25.00 dB)
and the two ends were 0.15 dB apart. The default w_2 = 3·10⁻³ makes the objectives start
at the same size, so each knob end is pulled mostly by its own objective. The pure ends do
not depend on w (Adam is invariant to the scale of a loss): w only places the mixtures. The
``mix = "targets"`` form (one loss to the blended target ``Σ_i p_i t_i``) does not apply:
both objectives have the same target x and the GAN term has none, so the blend of targets
is x at every p and the knob would do nothing. The discriminator trains on the whole
batch (every output is a "fake", whatever its p) with its own optimiser
(``train.disc``: Adam 10⁻⁴, betas (0.9, 0.99), ESRGAN's).

``task.perceptual_layer`` picks the VGG19 layer of ``L_percep`` (default ``conv5_4``;
``conv4_4`` and ``conv3_4`` are cheaper: measured costs in ``train/recipes.py``).

**Knobs.** ``fidelity`` and ``perceptual`` on the simplex; the slider ``perception``
s ∈ [0, 1] is p = (1 − s, s): 0 the sharpest faithful reconstruction, 1 the most
realistic texture. There is no blended *pixel* target (the objectives share x), so the
evaluation measures every setting against the ground truth only. No condition (K = 0):
the degradation is always the same. The fixed twin (``task.fidelity_only``) learns the
fidelity objective alone.

**Metrics** follow the SR papers (BasicSR's ``calculate_psnr(..., crop_border=s,
test_y_channel=True)``): PSNR and SSIM on the BT.601 luma of the 8-bit output with an
s-pixel border dropped; LPIPS on RGB; NIQE on luma with the same border
(:attr:`SRTask.metric_options`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..errors import InputError
from ..knobs import Knob, KnobSpace, Slider
from .base import (EvalCase, RunnerFacts, Sample, Task, TaskSection, check_bool, check_choice, check_int, check_number,
                   check_numbers, check_sampler_fields, check_text, target_key)

if TYPE_CHECKING:
    from ..losses import ParametricMultiLoss
    from ..train.config import Recipe

SR_KNOBS = [
    {"name": "fidelity", "description": "weight of the L1 distance to the ground truth: the sharpest faithful "
                                        "reconstruction (highest PSNR)"},
    {"name": "perceptual", "description": "weight of ESRGAN's loss (VGG19 conv5_4 features + relativistic GAN): "
                                          "realistic texture, lower PSNR"},
]

#: the SR slider: p = (1 − s, s), s = 1 the perceptual end
PERCEPTION = Slider("perception", (1.0, 0.0), (0.0, 1.0),
                    "0: the faithful (L1) reconstruction; 1: the most realistic texture (VGG + GAN)")

#: VGG19 layers ``task.perceptual_layer`` may name (features before the ReLU, as ESRGAN)
PERCEPTUAL_LAYERS = ("conv5_4", "conv4_4", "conv3_4", "conv2_2")

#: upscaling factors the ResNet's pixel-shuffle tail supports
SCALES = (2, 3, 4, 8)


@dataclass
class SRTaskSection(TaskSection):
    """The ``task`` section of a super-resolution recipe. Fields and their ranges (:meth:`validate`):

    - ``scale``: the upscaling factor, 2, 3, 4 or 8 (the model's ``upscale`` must agree);
    - ``fidelity_only``: true for the fixed twin (one objective, L1, no knobs);
    - ``perceptual_layer``: the VGG19 layer of the perceptual loss, one of
      :data:`PERCEPTUAL_LAYERS` (default ``conv5_4``, ESRGAN's);
    - ``vgg_weights``: ``caffe`` (the Oxford/Caffe VGG19, ESRGAN's; default), ``torchvision``
      or a weight file (see :class:`~tunableconv.losses.VGG19Features`);
    - ``perceptual_weight``, ``adversarial_weight``, ``l1_weight``: λ_p, λ_adv, λ_1 of the
      perceptual objective, each a number >= 0;
    - ``perceptual_objective_weight``: w_2, the static weight of the whole perceptual objective
      in the multi-loss (the fidelity objective's is 1), a number > 0 (see the module docstring);
    - ``disc_channels`` (>= 1), ``disc_downs`` (in [1, 8]), ``disc_scales`` (a non-empty list
      of integers >= 1): the discriminator (width of its first conv, stride-2 steps per
      branch, the downsampling factor of each branch);
    - ``mix``: ``losses`` only (see the module docstring for why ``targets`` does not apply);
    - ``sampler``: ``simplex``, ``cube`` or ``mixture``; ``vertex_share``, ``edge_share``;
      ``p_granularity``: as in denoising;
    - ``val_grid``: the validated slider positions s (p = (1 − s, s)), a non-empty list in [0, 1].
    """

    name: str = "sr"
    scale: int = 4
    fidelity_only: bool = False
    perceptual_layer: str = "conv5_4"
    vgg_weights: str = "caffe"
    perceptual_weight: float = 1.0
    adversarial_weight: float = 5e-3
    l1_weight: float = 1e-2
    perceptual_objective_weight: float = 3e-3
    disc_channels: int = 32
    disc_downs: int = 3
    disc_scales: list = field(default_factory=lambda: [1, 2])
    mix: str = "losses"
    sampler: str = "simplex"
    vertex_share: float = 0.0
    edge_share: float = 0.0
    p_granularity: str = "sample"
    val_grid: list = field(default_factory=lambda: [0.0, 1.0])

    def validate(self, where: str = "task") -> None:
        """Raise a one-line :class:`InputError` naming the first field out of its range (see above)."""
        from ..losses.samplers import SAMPLERS

        super().validate(where)
        if self.scale not in SCALES or isinstance(self.scale, bool):
            raise InputError(f"{where}.scale must be one of {', '.join(map(str, SCALES))}, got {self.scale!r:.60}")
        check_bool(f"{where}.fidelity_only", self.fidelity_only)
        check_choice(f"{where}.perceptual_layer", self.perceptual_layer, PERCEPTUAL_LAYERS)
        check_text(f"{where}.vgg_weights", self.vgg_weights)
        for name in ("perceptual_weight", "adversarial_weight", "l1_weight"):
            check_number(f"{where}.{name}", getattr(self, name), 0.0)
        check_number(f"{where}.perceptual_objective_weight", self.perceptual_objective_weight, 0.0, lo_open=True)
        check_int(f"{where}.disc_channels", self.disc_channels, 1, 1024)
        check_int(f"{where}.disc_downs", self.disc_downs, 1, 8)
        if not (isinstance(self.disc_scales, list) and self.disc_scales
                and all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= 64 for s in self.disc_scales)):
            raise InputError(f"{where}.disc_scales must be a non-empty list of integers in [1, 64], "
                             f"got {self.disc_scales!r:.60}")
        if self.mix != "losses":
            raise InputError(f"{where}.mix must be 'losses' for super-resolution: both objectives target the ground "
                             f"truth and the GAN term has no target, so a blend of targets does not move; got {self.mix!r:.60}")
        check_sampler_fields(self, where, (*SAMPLERS, "mixture"))
        check_numbers(f"{where}.val_grid", self.val_grid, 0.0, 1.0, min_length=1)


def modcrop(x: Tensor, scale: int) -> Tensor:
    """Cut ``(..., H, W)`` to multiples of ``scale`` from the top left."""
    h, w = x.shape[-2:]
    if h < scale or w < scale:
        raise InputError(f"a {h}x{w} image is smaller than the scale factor {scale}")
    return x[..., : h - h % scale, : w - w % scale]


def downscale(hr: Tensor, scale: int) -> Tensor:
    """The 8-bit low-resolution image of ``hr`` ``(C, H, W)`` / ``(B, C, H, W)`` (H, W
    multiples of ``scale``): MATLAB's antialiased bicubic ``imresize(hr, 1/scale)``, then
    clipped and rounded to k/255."""
    from ..data.degradations import imresize, quantize_8bit

    return quantize_8bit(imresize(hr, scale=1.0 / scale))


def bicubic_upscale(lr: Tensor, scale: int) -> Tensor:
    """MATLAB's bicubic ``imresize(lr, scale)``, clipped to [0, 1]: the floor of every SR table."""
    from ..data.degradations import imresize

    return imresize(lr, scale=float(scale)).clamp(0, 1)


class SRTask(Task):
    """Bicubic super-resolution: knobs fidelity / perceptual on the simplex (see the module docstring)."""

    name = "sr"
    section_class = SRTaskSection
    rivals = ("tunable", "fixed", "dni", "dynamicnet", "cfsnet")
    budgets = {"small": "sr4-small", "paper": "sr4-paper"}
    metrics = ("psnr", "ssim", "lpips")
    condition_names = ()

    def __init__(self, recipe: "Recipe") -> None:
        super().__init__(recipe)
        t = self.cfg
        self.fidelity_only = bool(t.fidelity_only)
        self.scale = int(t.scale)
        # the SR convention (Y channel, 8-bit, border = scale), per instance: it depends on task.scale
        luma = {"crop_border": self.scale, "y_channel": True, "quantize": True}
        self.metric_options = {"psnr": luma, "ssim": luma, "niqe": {"crop_border": self.scale}}
        self.sampling = self.make_sampling(t.sampler, t.vertex_share, t.edge_share, t.p_granularity)

    # --- objectives ------------------------------------------------------------------------
    @property
    def objective_names(self) -> list[str]:
        return ["fidelity"] if self.fidelity_only else ["fidelity", "perceptual"]

    def objectives(self) -> list:
        """L1 to the ground truth; ESRGAN's perceptual + RaGAN + small-L1 composite."""
        from ..losses import AdversarialObjective, CompositeObjective, Fidelity, PerceptualObjective

        t = self.cfg
        fidelity = Fidelity(distance="l1", key=target_key("fidelity"), name="fidelity")
        if self.fidelity_only:
            return [fidelity]
        perceptual = CompositeObjective({
            "vgg": (PerceptualObjective(layers={t.perceptual_layer: 1.0}, weights=t.vgg_weights, key="clean"),
                    t.perceptual_weight),
            "gan": (AdversarialObjective(real_key="clean", base_channels=t.disc_channels, num_downs=t.disc_downs,
                                         scales=tuple(t.disc_scales)), t.adversarial_weight),
            "l1": (Fidelity(distance="l1", key="clean", name="l1"), t.l1_weight),
        }, name="perceptual")
        return [fidelity, perceptual]

    def build_loss(self) -> "ParametricMultiLoss":
        from ..losses import ParametricMultiLoss

        objectives = self.objectives()
        weights = None if self.fidelity_only else [1.0, float(self.cfg.perceptual_objective_weight)]
        return ParametricMultiLoss(objectives, weights=weights)

    # --- degradation -----------------------------------------------------------------------
    def _sample(self, hr: Tensor) -> Sample:
        hr = modcrop(hr, self.scale)
        lr = downscale(hr, self.scale)
        n = hr.shape[0] if hr.dim() == 4 else None
        condition = torch.zeros(n, 0) if n is not None else torch.zeros(0)
        return Sample(lr, hr, {"fidelity": hr}, condition)

    def degrade(self, clean: Tensor, g: torch.Generator) -> Sample:
        """The patch's low-resolution image (no random draw: the degradation is fixed)."""
        return self._sample(clean)

    def degrade_case(self, clean: Tensor, case: EvalCase, g: torch.Generator) -> Sample:
        if case.levels:
            raise InputError(f"super-resolution has one degradation (bicubic x{self.scale}) and no levels, "
                             f"got {case.levels}")
        return self._sample(clean)

    def evaluation_cases(self, levels: Sequence[float] | None = None) -> list[EvalCase]:
        """One case, ``x<scale>``: the only level SR has is its scale factor, so ``levels`` may
        be empty or name that factor (``[4]``, ``--degrade 4``); anything else is refused."""
        if levels and [float(v) if not isinstance(v, str) else v for v in levels] != [float(self.scale)]:
            raise InputError(f"super-resolution has no degradation levels to choose: its one case is the scale "
                             f"factor {self.scale} (bicubic x{self.scale}), got {list(levels)}")
        return [EvalCase(f"x{self.scale}", {})]

    def validation_cases(self) -> list[EvalCase]:
        return self.evaluation_cases()

    def baseline_output(self, sample: Sample) -> Tensor:
        """Bicubic upscaling of the sample's input: the floor a SR network must beat."""
        return bicubic_upscale(sample.input, self.scale)

    # --- knobs -------------------------------------------------------------------------------
    def p_knob_space(self, facts: RunnerFacts) -> KnobSpace:
        if self.fidelity_only:
            return KnobSpace([], "simplex", [], [], facts.scale, facts.tiling_exact, facts.receptive_field, facts.color)
        knobs = [Knob(k["name"], k["description"]) for k in SR_KNOBS]
        return KnobSpace(knobs, "simplex", [1.0, 0.0], [PERCEPTION], facts.scale, facts.tiling_exact,
                         facts.receptive_field, facts.color)

    def blended_target(self, sample: Sample, p: Tensor) -> Tensor | None:
        """None: both objectives target the ground truth (there is no pixel blend to promise)."""
        return None

    def validation_grid(self) -> list[tuple[str, Tensor]]:
        """``s=<s>`` at p = (1 − s, s) for each position of ``task.val_grid``."""
        return [(f"s={s:g}", torch.tensor(PERCEPTION.p(s, calibrated=False))) for s in self.cfg.val_grid]

    def reference_p(self) -> list[float] | None:
        return [] if self.fidelity_only else [1.0, 0.0]

    def model_info(self) -> dict[str, Any]:
        t = self.cfg
        return {"scale": self.scale, "degradation": f"MATLAB bicubic x1/{self.scale}, 8-bit",
                "perceptual_layer": None if self.fidelity_only else t.perceptual_layer,
                "perception": None if self.fidelity_only else "p = (1 - s, s)"}

    def task_arguments(self, arch: str, args: dict) -> dict[str, Any]:
        """The knob count and domain, and the model's ``upscale`` = ``task.scale``."""
        return {**super().task_arguments(arch, args), "upscale": self.scale}

    # --- compare -----------------------------------------------------------------------------
    @classmethod
    def fixed_variant(cls, recipe: "Recipe") -> "Recipe":
        """The L1-only network: no knob, one objective (same size, data, steps, seed, and the
        same ``model.init``: a warm-started recipe's fixed twin continues the L1 network with
        L1 for as many steps as the others train with the multi-loss)."""
        recipe.model.args["num_params"] = 0
        recipe.model.args["expansion"] = 1
        recipe.task.fidelity_only = True
        return recipe

    @classmethod
    def rival_recipe(cls, method: str, recipe: "Recipe", backbone_keys: Sequence[str]) -> "Recipe":
        """As :meth:`Task.rival_recipe`; a warm-started recipe (``model.init``, the L1 network)
        gives the two-stage rivals that network as their trained main branch
        (``pretrained_main``): DNI fine-tunes a copy of it with the perceptual objective
        (ESRGAN's recipe), Dynamic-Net and CFSNet train their tuning branches on it."""
        recipe = super().rival_recipe(method, recipe, backbone_keys)
        if method not in ("tunable", "fixed") and recipe.model.init:
            recipe.model.args["pretrained_main"] = True
        return recipe
