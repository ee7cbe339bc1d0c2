"""CFSNet: Controllable Feature Space Network (Wang et al., "CFSNet: Toward a Controllable
Feature Space for Image Restoration", ICCV 2019).

A main branch (our plain ResNet, ``main``) and a tuning branch of N residual blocks
(``tuning``) are coupled block by block. With z_0 = head(x) and α = p[..., 1]::

    z_i = (1 − a_i)·M_i(z_{i−1}) + a_i·T_i(z_{i−1})        (computed as M + a·(T − M))

M_i / T_i are the i-th main / tuning residual blocks; z_N goes on through the main branch's
body conv, long residual and tail. The coupling coefficients a_i ∈ R^C (one per channel and
block) come from α through a small linear control network::

    a_i(α) = α·(W_i·α + c_i)        (``control``: Linear(1 -> N·C), W = 0 and c = 1 at init)

Deviation: in the paper the coefficients are learned from the control input by fully
connected layers with no constraint at the end points, so the main branch alone is
recovered only approximately. The factor α here makes a_i = 0 at α = 0 exactly, so "CFSNet
at α = 0 is the main branch" holds bit for bit, while a_i(1) = W_i + c_i is as free as in
the paper (it starts at 1: the tuning branch alone). α = 0 is the objective-1 (main) end.

Training (total split 50/50): 1. ``"main"`` at p = (1, 0); 2. ``"tuning"``: tuning branch
and control network at p = (0, 1), main branch frozen. When every α is 0 the tuning branch
is skipped (same result, half the cost of stage 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..resnet import ResBlock
from ._backbone import Baseline, BaselineConfig, Stage, all_zero, parameters_of, plain_resnet, run_resnet, two_stages


@dataclass
class CFSNetConfig(BaselineConfig):
    """Constructor arguments of :class:`CFSNet` (the backbone fields only)."""


class CFSNet(Baseline):
    """Main ResNet ``main``, tuning blocks ``tuning[i]``, control network ``control``."""

    architecture = "cfsnet"
    config_class = CFSNetConfig

    def __init__(self, config: CFSNetConfig | None = None, **kwargs) -> None:
        super().__init__(config, kwargs)
        cfg = self.config
        c, k, n = cfg.channels, cfg.kernel_size, cfg.num_blocks
        self.main = plain_resnet(cfg)

        def make_conv(cin: int, cout: int, ks: int) -> nn.Conv2d:
            return nn.Conv2d(cin, cout, ks, padding=ks // 2)

        self.tuning = nn.ModuleList(ResBlock(make_conv, c, k, 1.0) for _ in range(n))
        self.control = nn.Linear(1, n * c)
        with torch.no_grad():
            self.control.weight.zero_()
            self.control.bias.fill_(1.0)

    def coefficients(self, alpha: Tensor) -> Tensor:
        """a(α) = α·(W·α + c): ``()`` -> ``(N, C)``, ``(B,)`` -> ``(B, N, C)``."""
        a = alpha.unsqueeze(-1)
        return (a * self.control(a)).unflatten(-1, (self.config.num_blocks, self.config.channels))

    def forward(self, x: Tensor, p: Tensor) -> Tensor:
        """x ``(B, C, H, W)``, p ``(P,)`` or ``(B, P)`` -> ``(B, C_out, H·s, W·s)``."""
        alpha = self.alpha(p, x)
        if all_zero(alpha):
            return self.main(x)
        coef = self.coefficients(alpha)  # (N, C) or (B, N, C)

        def body(z: Tensor) -> Tensor:
            for i, (m_block, t_block) in enumerate(zip(self.main.body, self.tuning)):
                a = coef[..., i, :, None, None]  # (C, 1, 1) or (B, C, 1, 1)
                m = m_block(z)
                z = m + a * (t_block(z) - m)
            return z

        return run_resnet(self.main, x, body)

    def training_stages(self, total_steps: int) -> list[Stage]:
        """Main branch at p = (1, 0), then tuning branch + control at p = (0, 1). 50/50 split."""
        return two_stages(total_steps, parameters_of("main"), parameters_of("tuning", "control"),
                          names=("main", "tuning"), endpoints=self.endpoints(), skip_first=self.config.pretrained_main)
