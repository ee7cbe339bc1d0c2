"""CResMD: Conditional Residual networks for Multi-Dimension modulation (He et al.,
"Interactive Multi-Dimension Modulation with Dynamic Controllable Residual Learning for
Image Restoration", ECCV 2020).

A ResNet whose residual connections are scaled per channel by a condition network of a
control vector c. For residual block i and for the long residual::

    z_i = z_{i−1} + s_i(c) ⊙ R_i(z_{i−1}),     s_i(c) = W_i·c + b_i ∈ R^C   (``scales[i]``)
    f   = f_0 + s_g(c) ⊙ body_conv(z_N),       s_g(c) = W_g·c + b_g        (``global_scale``)

(R_i is conv–ReLU–conv.) Per-sample c ``(B, K)`` gives per-sample scales ``(B, C, 1, 1)``.
What c is (``condition``):

- ``"p"`` (default; the comparison's variant): c = p, the task's knobs (``num_params`` of
  them on ``domain``). Trained in ONE stage over all parameters with p drawn per sample
  (``Stage.p = None``), like the tunable model. On the simplex each s starts at W = 1,
  b = 0, so s = Σ p = 1; on the cube at W = 0, b = 1.
- ``"degradation"`` (as published): c = the sample's true degradation levels, which the
  trainer passes to a model with ``conditioned_on = "condition"``. Its knobs are then those
  levels: ``num_params`` = K of them (e.g. 1 for denoising, σ/255), on the cube (each level
  is its own value in [0, 1]). It learns one objective, the one of the task's
  ``reference_p`` (denoising: fidelity, p = (1, 0); the task fills it in), in one stage with
  the loss's p fixed there; at inference it is told the levels it should assume (a lower
  noise level than the true one removes less noise). Each s starts at W = 0, b = 1.

Either way the untrained model is the plain ResNet for every c.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._backbone import Baseline, BaselineConfig, Stage, parameters_of, plain_resnet, run_resnet

CONDITIONS = ("p", "degradation")


@dataclass
class CResMDConfig(BaselineConfig):
    """Constructor arguments of :class:`CResMD`.

    ``condition``: ``"p"`` or ``"degradation"`` (see the module docstring); with
    ``"degradation"``, ``num_params`` is the number K of degradation levels, ``domain`` must
    be ``"cube"`` and ``reference_p`` (required) is the fixed p of the task's loss while
    training (the task's p, of the task's knob count).
    """

    condition: str = "p"
    reference_p: list | None = None


def _condition_layer(inputs: int, channels: int, sums_to_one: bool) -> nn.Linear:
    """Linear(inputs -> channels) with s ≡ 1 at init: W = 1, b = 0 for inputs that sum to 1, else W = 0, b = 1."""
    layer = nn.Linear(inputs, channels)
    with torch.no_grad():
        layer.weight.fill_(1.0 if sums_to_one else 0.0)
        layer.bias.fill_(0.0 if sums_to_one else 1.0)
    return layer


class CResMD(Baseline):
    """ResNet ``main`` with per-block residual scales ``scales[i]`` and ``global_scale``."""

    architecture = "cresmd"
    config_class = CResMDConfig
    one_control_value = False

    def __init__(self, config: CResMDConfig | None = None, **kwargs) -> None:
        super().__init__(config, kwargs)
        cfg = self.config
        if cfg.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {', '.join(CONDITIONS)}, got {cfg.condition!r}")
        if cfg.condition == "degradation":
            if cfg.domain != "cube":
                raise ValueError(f"a CResMD conditioned on the degradation takes its levels on the cube, got domain {cfg.domain!r}")
            ref = cfg.reference_p
            if not isinstance(ref, (list, tuple)) or not ref or any(not 0 <= v <= 1 for v in ref):
                raise ValueError(f"condition='degradation' needs reference_p, the task's p to train at (values in [0, 1]), got {ref}")
        unit_sum = cfg.condition == "p" and cfg.domain == "simplex"
        c = cfg.channels
        self.main = plain_resnet(cfg)
        self.scales = nn.ModuleList(_condition_layer(cfg.num_params, c, unit_sum) for _ in range(cfg.num_blocks))
        self.global_scale = _condition_layer(cfg.num_params, c, unit_sum)

    @property
    def conditioned_on(self) -> str:
        """``"condition"`` for the degradation-conditioned variant, else ``"p"``."""
        return "condition" if self.config.condition == "degradation" else "p"

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """x ``(B, C, H, W)``, c (p or the degradation levels) ``(K,)`` or ``(B, K)`` -> ``(B, C_out, H·s, W·s)``."""
        c = self.check(c, x)

        def body(z: Tensor) -> Tensor:
            for block, scale in zip(self.main.body, self.scales):
                s = scale(c)[..., None, None]  # (C, 1, 1) or (B, C, 1, 1)
                z = z + block.res_scale * s * block.conv2(block.act(block.conv1(z)))
            return z

        return run_resnet(self.main, x, body, long_scale=self.global_scale(c)[..., None, None])

    def training_stages(self, total_steps: int) -> list[Stage]:
        """One stage over every parameter: p sampled per sample (``"p"``), or fixed at
        ``reference_p`` (``"degradation"``)."""
        total_steps = int(total_steps)
        if total_steps < 1:
            raise ValueError(f"CResMD needs at least 1 training step, got {total_steps}")
        p = tuple(float(v) for v in self.config.reference_p) if self.config.condition == "degradation" else None
        return [Stage("joint", total_steps, p, parameters_of(exclude=True))]
