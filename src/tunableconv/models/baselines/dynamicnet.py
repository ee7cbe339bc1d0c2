"""Dynamic-Net (Shoshan et al., "Dynamic-Net: Tuning the Objective Without Re-training for
Synthesis Tasks", ICCV 2019).

A main network (our plain ResNet, ``main``) trained for objective 1, plus tuning blocks T_j
added at a few depths and trained for objective 2 with the main network frozen. After
residual block j (for every ``tuning_every``-th block: j = e−1, 2e−1, ...)::

    z_j ← z_j + α·T_j(z_j),        α = p[..., 1]

T_j is conv–ReLU–conv (our choice of tuning block) with its last conv zero-initialised, so a fresh tuning block is the
identity and stage 2 starts from the main network. At α = 0 the output is exactly the main
network's (tuning blocks are skipped when every α is 0).

Training (total split 50/50): 1. ``"main"`` at p = (1, 0); 2. ``"tuning"``: the tuning blocks
at p = (0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ._backbone import (
    Baseline,
    BaselineConfig,
    Stage,
    all_zero,
    parameters_of,
    plain_resnet,
    resnet_receptive_field,
    run_resnet,
    spatial,
    two_stages,
    with_tuning_blocks,
)


@dataclass
class DynamicNetConfig(BaselineConfig):
    """Constructor arguments of :class:`DynamicNet`."""

    tuning_every: int = 2  # a tuning block after every tuning_every-th residual block


class TuningBlock(nn.Module):
    """T(z) = conv(ReLU(conv(z))), last conv zero-initialised (T = 0 at init)."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        with torch.no_grad():
            self.conv2.weight.zero_()
            self.conv2.bias.zero_()

    def forward(self, z: Tensor) -> Tensor:
        return self.conv2(self.act(self.conv1(z)))


class DynamicNet(Baseline):
    """Main ResNet ``main`` + tuning blocks ``tuning["j"]`` after residual block j."""

    architecture = "dynamicnet"
    config_class = DynamicNetConfig

    def __init__(self, config: DynamicNetConfig | None = None, **kwargs) -> None:
        super().__init__(config, kwargs)
        cfg = self.config
        if not 1 <= cfg.tuning_every <= cfg.num_blocks:
            raise ValueError(f"tuning_every must be in [1, num_blocks={cfg.num_blocks}], got {cfg.tuning_every}")
        self.main = plain_resnet(cfg)
        depths = range(cfg.tuning_every - 1, cfg.num_blocks, cfg.tuning_every)
        self.tuning = nn.ModuleDict({str(j): TuningBlock(cfg.channels, cfg.kernel_size) for j in depths})

    def forward(self, x: Tensor, p: Tensor) -> Tensor:
        """x ``(B, C, H, W)``, p ``(P,)`` or ``(B, P)`` -> ``(B, C_out, H·s, W·s)``."""
        alpha = self.alpha(p, x)
        if all_zero(alpha):
            return self.main(x)
        return run_resnet(self.main, x, with_tuning_blocks(self.main.body, self.tuning, spatial(alpha)))

    def receptive_field(self) -> int:
        """The ResNet's plus the two convs of every tuning block (they run in sequence with the blocks)."""
        c = self.config
        return resnet_receptive_field(c.num_blocks, c.kernel_size, c.upscale, extra_convs=2 * len(self.tuning))

    def training_stages(self, total_steps: int) -> list[Stage]:
        """Main network at p = (1, 0), then the tuning blocks at p = (0, 1). 50/50 split."""
        return two_stages(total_steps, parameters_of("main"), parameters_of("tuning"),
                          names=("main", "tuning"), endpoints=self.endpoints(), skip_first=self.config.pretrained_main)
