"""A small Swin-style transformer block: window attention with a relative position bias, MLP.

::

    x ─┬─ LayerNorm ─ window partition ─ W-MSA (qkv, + relative position bias, proj) ─ reverse ─(+)─┬─ LayerNorm ─ MLP ─(+)─ y
       └──────────────────────────────────────────────────────────────────────────────────────┘   └───────────────────┘

Plain PyTorch with no tunable-specific code: it exists to test and benchmark
:func:`~tunableconv.nn.make_tunable` on attention models — its parameters are linear layers,
LayerNorms and a bare relative-position bias table, and its forward reshapes the batch
(B → B·nW windows), which per-sample p must survive.

Shapes: x ``(B, H, W, C)`` with H and W multiples of ``window`` -> ``(B, H, W, C)``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def window_partition(x: Tensor, window: int) -> Tensor:
    """``(B, H, W, C)`` -> ``(B·nW, window², C)``, windows of one image consecutive."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, window * window, c)


def window_reverse(t: Tensor, window: int, b: int, h: int, w: int) -> Tensor:
    """Inverse of :func:`window_partition`."""
    c = t.shape[-1]
    t = t.view(b, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return t.reshape(b, h, w, c)


class WindowAttentionBlock(nn.Module):
    """LayerNorm → window multi-head self-attention (relative position bias) → MLP, both residual."""

    def __init__(self, channels: int = 32, heads: int = 2, window: int = 8, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"channels ({channels}) must be divisible by heads ({heads})")
        self.channels, self.heads, self.window = channels, heads, window
        self.norm1 = nn.LayerNorm(channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = nn.Linear(channels, channels)
        self.rel_bias = nn.Parameter(0.02 * torch.randn((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer("rel_index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)
        self.norm2 = nn.LayerNorm(channels)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))

    def attention(self, t: Tensor) -> Tensor:
        """``(N, L, C)`` window tokens -> ``(N, L, C)``."""
        n, length, c = t.shape
        d = c // self.heads
        q, k, v = self.qkv(t).view(n, length, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        bias = self.rel_bias[self.rel_index.reshape(-1)].view(length, length, self.heads).permute(2, 0, 1)
        attn = torch.softmax(q @ k.transpose(-2, -1) * d**-0.5 + bias, dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(n, length, c))

    def forward(self, x: Tensor) -> Tensor:
        b, h, w, _ = x.shape
        if h % self.window or w % self.window:
            raise ValueError(f"H and W ({h}, {w}) must be multiples of the window ({self.window})")
        t = self.attention(window_partition(self.norm1(x), self.window))
        x = x + window_reverse(t, self.window, b, h, w)
        return x + self.mlp(self.norm2(x))
