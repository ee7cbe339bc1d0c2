"""NAFNet, the nonlinear-activation-free U-Net of Chen et al., "Simple Baselines for Image
Restoration" (ECCV 2022), as a plain network.

NAFBlock (c channels; ``d = dw_expand·c``, ``f = ffn_expand·c``)::

    x ─┬─ LN ─ 1×1 (c→d) ─ 3×3 dw (d) ─ SimpleGate (d→d/2) ─ SCA ─ 1×1 (d/2→c) ─ ·β ─(+)─ y
       └─────────────────────────────────────────────────────────────────────────┘
    y ─┬─ LN ─ 1×1 (c→f) ─ SimpleGate (f→f/2) ─ 1×1 (f/2→c) ─ ·γ ─(+)─ z
       └──────────────────────────────────────────────────────┘

    SimpleGate(x) = x[:, :C/2] · x[:, C/2:]        SCA(x) = x · conv1×1(avgpool(x))

NAFNet (``n = len(enc_blocks)`` levels; channels double at every down-sampling)::

    x ─ pad ─ intro 3×3 ─ [enc 0] ─ down ─ [enc 1] ─ down ─ … ─ [middle] ─ up ─(+)─ [dec] ─ … ─ ending 3×3 ─(+ x)─ crop ─ y
                            │                                                │
                            └────────────── skip (same level) ───────────────┘

    down: 2×2 conv, stride 2 (c → 2c)       up: 1×1 conv without bias (c → 2c) + PixelShuffle(2) (→ c/2)

There is no tunable-specific code here: :func:`~tunableconv.nn.make_tunable` makes every
parameter (convolutions, LayerNorm2d weight/bias, the layer scales β/γ) tunable and runs this
forward unchanged, under ``torch.func.vmap`` for per-sample p. Hence only ordinary autograd
ops, no in-place ops on parameters, and every sample of a batch is processed independently.
β and γ are owned by the block (not by a leaf layer), so knob maps (per-pixel p) are not
supported for a converted NAFNet; shared and per-sample p are.

Padding: the input is zero-padded on the bottom/right to a multiple of :attr:`NAFNet.size_multiple`
(``2 ** len(enc_blocks)``), as the official code does, and the output cropped back, so any
H, W works. The simplified channel attention averages over the whole (padded) image, so an
image restored in tiles differs from one restored whole (``tiling_exact = False``).

Differences from the official code (megvii-research/NAFNet, ``NAFNet_arch.py``): LayerNorm2d
uses ordinary autograd ops instead of a custom ``autograd.Function`` (needed for vmap), there
is no dropout (the official models use rate 0) and no TLC test-time local converter
(``NAFNetLocal``), and the output channels may differ from the input channels (the global
residual is then dropped). Parameter names follow the official ones, so an official
checkpoint loads with ``load_state_dict``. Parameter counts (the same as the official
architecture's; a NAFBlock has ``7c² + 33c``): ``nafnet-small`` 1,137,203; ``nafnet-width32``
(the official SIDD configuration) 29,159,715; ``nafnet-width64`` 115,982,915. (The often-quoted
17.1M / 67.9M are the GoPro models: enc [1, 1, 1, 28], middle 1, dec [1, 1, 1, 1].)

Shapes: x ``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class NAFNetConfig:
    """Constructor arguments of :class:`NAFNet` (stored in model files as metadata)."""

    in_channels: int = 3
    out_channels: int = 3
    width: int = 16
    enc_blocks: list[int] = field(default_factory=lambda: [1, 1, 1, 1])  # NAFBlocks per encoder level
    middle_blocks: int = 1
    dec_blocks: list[int] = field(default_factory=lambda: [1, 1, 1, 1])  # NAFBlocks per decoder level
    dw_expand: int = 2  # depthwise branch channels = dw_expand · c
    ffn_expand: int = 2  # feed-forward branch channels = ffn_expand · c
    layer_scale_init: float = 0.0  # β, γ start here (0: every block starts as the identity)


PRESETS: dict[str, NAFNetConfig] = {
    "nafnet-small": NAFNetConfig(width=16, enc_blocks=[1, 1, 1, 1], middle_blocks=1, dec_blocks=[1, 1, 1, 1]),
    "nafnet-width32": NAFNetConfig(width=32, enc_blocks=[2, 2, 4, 8], middle_blocks=12, dec_blocks=[2, 2, 2, 2]),
    "nafnet-width64": NAFNetConfig(width=64, enc_blocks=[2, 2, 4, 8], middle_blocks=12, dec_blocks=[2, 2, 2, 2]),
}


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channels of every pixel: ``(B, C, H, W)`` -> ``(B, C, H, W)``.

    The same as ``F.layer_norm`` on the channels-last tensor; weight and bias are ``(C,)``.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        centred = x - x.mean(dim=1, keepdim=True)
        var = centred.square().mean(dim=1, keepdim=True)
        y = centred * torch.rsqrt(var + self.eps)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class SimpleGate(nn.Module):
    """``(B, 2C, H, W)`` -> ``(B, C, H, W)``: the first half of the channels times the second."""

    def forward(self, x: Tensor) -> Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """The NAFNet block (see the module diagram): ``(B, c, H, W)`` -> ``(B, c, H, W)``."""

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2, layer_scale_init: float = 0.0) -> None:
        super().__init__()
        d, f = c * dw_expand, c * ffn_expand
        self.norm1 = LayerNorm2d(c)
        self.conv1 = nn.Conv2d(c, d, 1)
        self.conv2 = nn.Conv2d(d, d, 3, padding=1, groups=d)  # depthwise
        self.sg = SimpleGate()
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(d // 2, d // 2, 1))
        self.conv3 = nn.Conv2d(d // 2, c, 1)
        self.norm2 = LayerNorm2d(c)
        self.conv4 = nn.Conv2d(c, f, 1)
        self.conv5 = nn.Conv2d(f // 2, c, 1)
        self.beta = nn.Parameter(torch.full((1, c, 1, 1), float(layer_scale_init)))
        self.gamma = nn.Parameter(torch.full((1, c, 1, 1), float(layer_scale_init)))

    def forward(self, x: Tensor) -> Tensor:
        t = self.sg(self.conv2(self.conv1(self.norm1(x))))
        y = x + self.conv3(t * self.sca(t)) * self.beta
        t = self.conv5(self.sg(self.conv4(self.norm2(y))))
        return y + t * self.gamma


class NAFNet(nn.Module):
    """NAFNet: intro conv, a U-Net of NAFBlocks, ending conv, global residual (see the module docs)."""

    architecture = "nafnet"
    tiling_exact = False  # simplified channel attention pools over the whole image
    norm_types = (LayerNorm2d,)  # the normalisation layers (kept fixed by a conversion with tunable_norms=False)

    def __init__(self, config: NAFNetConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = replace(config, **kwargs) if config is not None else NAFNetConfig(**kwargs)
        cfg = replace(cfg, enc_blocks=list(cfg.enc_blocks), dec_blocks=list(cfg.dec_blocks))
        _validate(cfg)
        self.config = cfg

        def blocks(c: int, n: int) -> nn.Sequential:
            return nn.Sequential(*[NAFBlock(c, cfg.dw_expand, cfg.ffn_expand, cfg.layer_scale_init) for _ in range(n)])

        c = cfg.width
        self.intro = nn.Conv2d(cfg.in_channels, c, 3, padding=1)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        for n in cfg.enc_blocks:
            self.encoders.append(blocks(c, n))
            self.downs.append(nn.Conv2d(c, 2 * c, 2, stride=2))
            c *= 2
        self.middle_blks = blocks(c, cfg.middle_blocks)
        self.ups, self.decoders = nn.ModuleList(), nn.ModuleList()
        for n in cfg.dec_blocks:
            self.ups.append(nn.Sequential(nn.Conv2d(c, 2 * c, 1, bias=False), nn.PixelShuffle(2)))
            c //= 2
            self.decoders.append(blocks(c, n))
        self.ending = nn.Conv2d(cfg.width, cfg.out_channels, 3, padding=1)

    @property
    def size_multiple(self) -> int:
        """The internal padding multiple, ``2 ** len(enc_blocks)``."""
        return 2 ** len(self.config.enc_blocks)

    def forward(self, x: Tensor) -> Tensor:
        """x ``(B, C_in, H, W)`` -> ``(B, C_out, H, W)``; H, W are zero-padded internally."""
        h, w = x.shape[-2:]
        m = self.size_multiple
        inp = F.pad(x, (0, (-w) % m, 0, (-h) % m))
        feat = self.intro(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            feat = encoder(feat)
            skips.append(feat)
            feat = down(feat)
        feat = self.middle_blks(feat)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            feat = decoder(up(feat) + skip)
        out = self.ending(feat)
        if self.config.in_channels == self.config.out_channels:
            out = out + inp
        return out[..., :h, :w]

    def arguments(self) -> dict:
        """The constructor arguments, JSON-serialisable."""
        return asdict(self.config)


def _validate(cfg: NAFNetConfig) -> None:
    """Raise ValueError for a configuration NAFNet cannot be built from."""

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for name in ("in_channels", "out_channels", "width", "dw_expand", "ffn_expand"):
        v = getattr(cfg, name)
        if not is_int(v) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not is_int(cfg.middle_blocks) or cfg.middle_blocks < 0:
        raise ValueError(f"middle_blocks must be a non-negative integer, got {cfg.middle_blocks!r}")
    for name in ("enc_blocks", "dec_blocks"):
        if any(not is_int(n) or n < 0 for n in getattr(cfg, name)):
            raise ValueError(f"{name} must be a list of non-negative integers, got {getattr(cfg, name)!r}")
    if len(cfg.enc_blocks) != len(cfg.dec_blocks):
        raise ValueError(f"enc_blocks and dec_blocks must have the same length (one decoder level per encoder "
                         f"level), got {len(cfg.enc_blocks)} and {len(cfg.dec_blocks)}")
    for name in ("dw_expand", "ffn_expand"):
        if (cfg.width * getattr(cfg, name)) % 2:
            raise ValueError(f"width · {name} must be even (SimpleGate halves the channels), "
                             f"got {cfg.width} · {getattr(cfg, name)}")
    if not isinstance(cfg.layer_scale_init, (int, float)) or not math.isfinite(cfg.layer_scale_init):
        raise ValueError(f"layer_scale_init must be a finite number, got {cfg.layer_scale_init!r}")
