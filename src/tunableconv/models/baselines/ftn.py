"""FTN: Filter Transition Network (Lee et al., "Smoother Network Tuning and Interpolation
for Continuous-level Image Processing", 2020).

Every conv kernel W (C_out × C_in × k × k) of the main network (our plain ResNet, ``main``)
gets a small network that maps kernels to kernels. The kernel is processed as a batch of
C_out images with C_in channels and k×k pixels::

    FTN(W) = W + R(W),      R = 1×1 conv (C_in -> C_in) ∘ PReLU ∘ 1×1 grouped conv (C_in -> C_in)
    W(α)   = (1 − α)·W + α·FTN(W) = W + α·R(W),        α = p[..., 1]

The last 1×1 conv of R is zero-initialised, so FTN starts as the identity: an untrained FTN
equals the main network at *every* α, and at α = 0 it equals the main network whatever R is
(exactly: W + 0·R(W) = W). Biases are not transformed. The grouped conv uses
``gcd(ftn_groups, C_in)`` groups (fewer groups = more freedom, more groups = smoother).

Training (total split 50/50): 1. ``"main"`` at p = (1, 0); 2. ``"ftn"``: only the FTNs at
p = (0, 1). Per-sample p ``(B, 2)``: the kernels depend on α, so the batch is split by
distinct α and the main network runs once per distinct value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ._backbone import Baseline, BaselineConfig, Stage, parameters_of, per_alpha, plain_resnet, two_stages


@dataclass
class FTNConfig(BaselineConfig):
    """Constructor arguments of :class:`FTN`."""

    ftn_groups: int = 16


class FilterTransition(nn.Module):
    """R(W) = conv1×1(PReLU(grouped conv1×1(W))) on a kernel W ``(C_out, C_in, k, k)``; FTN(W) = W + R(W)."""

    def __init__(self, in_channels: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 1, groups=math.gcd(groups, in_channels))
        self.act = nn.PReLU(in_channels)
        self.conv2 = nn.Conv2d(in_channels, in_channels, 1)
        with torch.no_grad():
            self.conv2.weight.zero_()
            self.conv2.bias.zero_()

    def residual(self, weight: Tensor) -> Tensor:
        """R(W), same shape as W."""
        return self.conv2(self.act(self.conv1(weight)))

    def forward(self, weight: Tensor) -> Tensor:
        """FTN(W) = W + R(W)."""
        return weight + self.residual(weight)


class FTN(Baseline):
    """Main ResNet ``main`` + one :class:`FilterTransition` per conv in ``ftn`` (keyed by conv name, '.' -> '_')."""

    architecture = "ftn"
    config_class = FTNConfig

    def __init__(self, config: FTNConfig | None = None, **kwargs) -> None:
        super().__init__(config, kwargs)
        if self.config.ftn_groups < 1:
            raise ValueError(f"ftn_groups must be >= 1, got {self.config.ftn_groups}")
        self.main = plain_resnet(self.config)
        self._convs = [name for name, m in self.main.named_modules() if isinstance(m, nn.Conv2d)]
        self.ftn = nn.ModuleDict({
            name.replace(".", "_"): FilterTransition(self.main.get_submodule(name).in_channels, self.config.ftn_groups)
            for name in self._convs
        })

    def kernels(self, alpha: Tensor) -> dict[str, Tensor]:
        """W(α) = W + α·R(W) for every conv of ``main`` (α a scalar tensor), keyed ``"<conv>.weight"``."""
        out = {}
        for name in self._convs:
            w = self.main.get_submodule(name).weight
            out[f"{name}.weight"] = w + alpha * self.ftn[name.replace(".", "_")].residual(w)
        return out

    def forward(self, x: Tensor, p: Tensor) -> Tensor:
        """x ``(B, C, H, W)``, p ``(P,)`` or ``(B, P)`` -> ``(B, C_out, H·s, W·s)``."""
        alpha = self.alpha(p, x)
        return per_alpha(x, alpha, lambda xs, a: functional_call(self.main, self.kernels(a), (xs,)))

    def training_stages(self, total_steps: int) -> list[Stage]:
        """Main network at p = (1, 0), then only the FTNs at p = (0, 1). 50/50 split."""
        return two_stages(total_steps, parameters_of("main"), parameters_of("ftn"),
                          names=("main", "ftn"), endpoints=self.endpoints(), skip_first=self.config.pretrained_main)
