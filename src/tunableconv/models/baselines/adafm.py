"""AdaFM: Adaptive Feature Modification layers (He et al., "Modulating Image Restoration
with Continual Levels via Adaptive Feature Modification Layers", CVPR 2019).

A basic network (our plain ResNet, ``main``) gets an AdaFM layer after each of the two convs
of every residual block: a depthwise k×k filter f plus a bias b per channel,
``AdaFM(x) = f ∗ x + b``, initialised to the identity (f = δ, b = 0). At inference the
layer is moved towards the identity I by α = p[..., 1]::

    f(α) = I + α·(f − I),      b(α) = α·b

Because a convolution is linear in its kernel and I ∗ x = x, this equals
``x + α·((f ∗ x + b) − x)``, which is what the layer computes: one depthwise conv, α may be
per sample, and at α = 0 the output is exactly x (the basic network).

Placement: after each conv of the residual blocks only (conv–AdaFM–ReLU–conv–AdaFM, + skip);
the head, body and tail convs get none. ``adafm_kernel_size`` is the filter size (the paper
compares several sizes, up to 5×5 and beyond; 3 is our default).

Training (total split 50/50): 1. ``"basic"``: ``main`` at p = (1, 0) (α = 0, the AdaFM layers
are the identity and get no gradient); 2. ``"adafm"``: only the AdaFM layers at p = (0, 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..resnet import ResBlock
from ._backbone import (
    Baseline,
    BaselineConfig,
    Stage,
    parameters_of,
    plain_resnet,
    resnet_receptive_field,
    run_resnet,
    spatial,
    two_stages,
)


@dataclass
class AdaFMConfig(BaselineConfig):
    """Constructor arguments of :class:`AdaFM`."""

    adafm_kernel_size: int = 3


class AdaFMLayer(nn.Module):
    """Depthwise k×k filter + bias, identity-initialised, interpolated towards the identity."""

    def __init__(self, channels: int, kernel_size: int) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"adafm_kernel_size must be odd, got {kernel_size}")
        self.weight = nn.Parameter(torch.zeros(channels, 1, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        with torch.no_grad():
            self.weight[:, 0, kernel_size // 2, kernel_size // 2] = 1.0

    def forward(self, x: Tensor, alpha: Tensor) -> Tensor:
        """``x + α·(f ∗ x + b − x)``; alpha broadcastable over x (``()`` or ``(B, 1, 1, 1)``)."""
        k = self.weight.shape[-1]
        y = F.conv2d(x, self.weight, self.bias, padding=k // 2, groups=x.shape[1])
        return x + alpha * (y - x)


class AdaFM(Baseline):
    """Basic ResNet ``main`` + AdaFM layers ``adafm[i][0|1]`` after conv1/conv2 of block i."""

    architecture = "adafm"
    config_class = AdaFMConfig

    def __init__(self, config: AdaFMConfig | None = None, **kwargs) -> None:
        super().__init__(config, kwargs)
        c, k = self.config.channels, self.config.adafm_kernel_size
        self.main = plain_resnet(self.config)
        self.adafm = nn.ModuleList(
            nn.ModuleList([AdaFMLayer(c, k), AdaFMLayer(c, k)]) for _ in range(self.config.num_blocks)
        )

    @staticmethod
    def _block(block: ResBlock, fm: nn.ModuleList, x: Tensor, alpha: Tensor) -> Tensor:
        r = fm[0](block.conv1(x), alpha)
        r = fm[1](block.conv2(block.act(r)), alpha)
        return x + block.res_scale * r

    def forward(self, x: Tensor, p: Tensor) -> Tensor:
        """x ``(B, C, H, W)``, p ``(P,)`` or ``(B, P)`` -> ``(B, C_out, H·s, W·s)``."""
        alpha = spatial(self.alpha(p, x))

        def body(z: Tensor) -> Tensor:
            for block, fm in zip(self.main.body, self.adafm):
                z = self._block(block, fm, z, alpha)
            return z

        return run_resnet(self.main, x, body)

    def receptive_field(self) -> int:
        """The ResNet's plus the two depthwise AdaFM filters of every block."""
        c = self.config
        return resnet_receptive_field(c.num_blocks, c.kernel_size, c.upscale,
                                      extra_radius=2 * c.num_blocks * (c.adafm_kernel_size // 2))

    def training_stages(self, total_steps: int) -> list[Stage]:
        """Basic network at p = (1, 0), then only the AdaFM layers at p = (0, 1). 50/50 split."""
        return two_stages(total_steps, parameters_of("main"), parameters_of("adafm"),
                          names=("basic", "adafm"), endpoints=self.endpoints(), skip_first=self.config.pretrained_main)
