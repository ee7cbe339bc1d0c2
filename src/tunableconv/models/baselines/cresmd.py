"""CResMD: Conditional Residual networks for Multi-Dimension modulation (He et al.,
"Interactive Multi-Dimension Modulation with Dynamic Controllable Residual Learning for
Image Restoration", ECCV 2020).

A ResNet whose residual connections are scaled per channel by a condition network of the
control vector. Here the control vector is p = (p_obj1, p_obj2) itself. For residual block i
and for the long residual::

    z_i = z_{i−1} + s_i(p) ⊙ R_i(z_{i−1}),     s_i(p) = W_i·p + b_i ∈ R^C   (``scales[i]``)
    f   = f_0 + s_g(p) ⊙ body_conv(z_N),       s_g(p) = W_g·p + b_g        (``global_scale``)

(R_i is conv–ReLU–conv.) Each s is one linear layer 2 -> C; they start at W = 1, b = 0,
so s = p_obj1 + p_obj2 = 1 on the simplex and the untrained model is the plain ResNet for
every p. Per-sample p ``(B, 2)`` gives per-sample scales ``(B, C, 1, 1)``.

Training: ONE stage over all parameters with p drawn per sample (``Stage.p = None``), like
the tunable model; the paper's condition vector encodes degradation levels, ours the
objective weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._backbone import NUM_PARAMS, Baseline, BaselineConfig, Stage, parameters_of, plain_resnet, run_resnet


@dataclass
class CResMDConfig(BaselineConfig):
    """Constructor arguments of :class:`CResMD` (the backbone fields only)."""


def _condition(channels: int) -> nn.Linear:
    layer = nn.Linear(NUM_PARAMS, channels)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.zero_()
    return layer


class CResMD(Baseline):
    """ResNet ``main`` with per-block residual scales ``scales[i]`` and ``global_scale``."""

    architecture = "cresmd"
    config_class = CResMDConfig

    def __init__(self, config: CResMDConfig | None = None, **kwargs) -> None:
        super().__init__(config, kwargs)
        c = self.config.channels
        self.main = plain_resnet(self.config)
        self.scales = nn.ModuleList(_condition(c) for _ in range(self.config.num_blocks))
        self.global_scale = _condition(c)

    def forward(self, x: Tensor, p: Tensor) -> Tensor:
        """x ``(B, C, H, W)``, p ``(2,)`` or ``(B, 2)`` -> ``(B, C_out, H, W)``."""
        p = self.check(p, x)

        def body(z: Tensor) -> Tensor:
            for block, scale in zip(self.main.body, self.scales):
                s = scale(p)[..., None, None]  # (C, 1, 1) or (B, C, 1, 1)
                z = z + block.res_scale * s * block.conv2(block.act(block.conv1(z)))
            return z

        return run_resnet(self.main, x, body, long_scale=self.global_scale(p)[..., None, None])

    def training_stages(self, total_steps: int) -> list[Stage]:
        """One stage: every parameter, p sampled per sample from the simplex."""
        total_steps = int(total_steps)
        if total_steps < 1:
            raise ValueError(f"CResMD needs at least 1 training step, got {total_steps}")
        return [Stage("joint", total_steps, None, parameters_of(exclude=True))]
