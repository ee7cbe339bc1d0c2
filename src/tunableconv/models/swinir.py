"""SwinIR, the Swin-Transformer restoration network of Liang et al., "SwinIR: Image Restoration
Using Swin Transformer" (ICCVW 2021), as a plain network.

::

    x ─ pad ─ conv_first ─┬─ LN ─ [RSTB] × n ─ LN ─ conv_after_body ─(+)─ reconstruction ─ crop ─ y
                          └──────────────── long skip ────────────────┘

    RSTB (depth Swin layers, alternately regular and shifted windows):
        t ─┬─ Swin layer ─ Swin layer ─ … ─ 3×3 conv ─(+)─
           └───────────────────────────────────────────┘

    Swin layer (shift s = 0, or window // 2 in a shifted layer):
        t ─┬─ LN ─ roll(−s) ─ window MSA ─ roll(+s) ─(+)─┬─ LN ─ MLP ─(+)─
           └──────────────────────────────────────────┘  └─────────────┘

    reconstruction:
      ""                   conv_last (C → C_out), plus the input x     (denoising, JPEG; upscale 1)
      "pixelshuffle"       conv (C → num_feat) + LeakyReLU, [conv + PixelShuffle(2)] × log2 s
                           (or one conv + PixelShuffle(3)), conv_last (num_feat → C_out)   (classical SR)
      "pixelshuffledirect" conv (C → C_out·s²) + PixelShuffle(s)                          (SwinIR-light)

Window MSA: the features are cut into w×w windows (w = ``window_size``) and each window runs
multi-head self-attention, softmax(q kᵀ/√d + B) v, with B a learned relative position bias
read from a ``((2w−1)², heads)`` table. Every second layer first rolls the features by
s = w // 2 up and left, so its windows straddle the previous layer's; the windows that the
roll wrapped around the bottom/right border get an additive mask (−100, as the official code)
between tokens that come from opposite borders, so no token attends across the wrap.
MLP: Linear (C → mlp_ratio·C), GELU, Linear. No absolute position embedding, no drop path,
patch size 1 (the "patch embedding" is the flattening, then a LayerNorm).

No tunable-specific code: :func:`~tunableconv.nn.make_tunable` makes every parameter tunable
(convolutions, the linear layers qkv / proj / fc1 / fc2, LayerNorm affine parameters and the
bare relative-position bias tables) and runs this forward unchanged, under
``torch.func.vmap`` for per-sample p. The relative position index is a buffer; the shifted-
window mask is computed in every forward for the actual (padded) size, so nothing depends on
a size seen before. Samples are independent (the batch is only reshaped into windows).
Attention is the explicit softmax(q kᵀ·scale + bias + mask) v of the official code
(``F.scaled_dot_product_attention`` works under vmap as well, but gains nothing here).

Padding: the input is reflect-padded on the bottom/right to a multiple of the window
(:attr:`SwinIR.size_multiple`; replicate padding when the image is too small to reflect) and
the output cropped back, so any H, W works.

Differences from the official code (JingyunLiang/SwinIR, ``models/network_swinir.py``): no
mean subtraction and ``img_range`` 1, so inputs are in [0, 1] as they come (the official
network equals ``net(x − mean) + mean`` of this one); the window is never shrunk to a small
training size (the image is padded instead); features stay ``(B, H, W, C)`` between layers
instead of ``(B, H·W, C)``; only the "1conv" residual connection and no "nearest+conv"
upsampler. Parameter names follow the official ones (``patch_embed.norm``,
``layers.i.residual_group.blocks.j.attn.qkv`` …), so an official checkpoint's weights load
once its ``relative_position_index`` / ``attn_mask`` buffers are dropped (not needed here).

Parameter counts (exactly those of the official architecture): ``swinir-small`` 224,067;
``swinir-m`` 11,504,163; ``swinir-light-x4`` 929,628; ``swinir-m-x4`` 11,900,199. The paper's
897K for SwinIR-light ×4 is the count without the relative position bias tables (897,228;
the tables hold 24 · 15² · 6 = 32,400 entries), so the full count is 3.6 % above it. The
colour-denoising SwinIR (M) of the official code has 11,504,163 (11,455,563 without its
48,600 table entries), i.e. ≈11.5M; the figure 11.75M sometimes quoted for it is 2.1 % above
what the official code builds.

Shapes: x ``(B, C_in, H, W)`` -> ``(B, C_out, H·s, W·s)``, s = ``upscale``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .window_block import window_partition, window_reverse

MASK_VALUE = -100.0  # additive attention mask between tokens the cyclic shift brought together


@dataclass
class SwinIRConfig:
    """Constructor arguments of :class:`SwinIR` (stored in model files as metadata)."""

    in_channels: int = 3
    out_channels: int = 3
    embed_dim: int = 48
    depths: list[int] = field(default_factory=lambda: [4, 4])  # Swin layers per RSTB
    num_heads: list[int] = field(default_factory=lambda: [4, 4])  # attention heads per RSTB
    window_size: int = 8
    mlp_ratio: float = 2.0
    upscale: int = 1
    upsampler: str = ""  # "" (restoration, input residual), "pixelshuffle", "pixelshuffledirect"
    num_feat: int = 64  # channels of the "pixelshuffle" reconstruction


PRESETS: dict[str, SwinIRConfig] = {
    "swinir-small": SwinIRConfig(embed_dim=48, depths=[4, 4], num_heads=[4, 4], window_size=8, mlp_ratio=2.0),
    "swinir-m": SwinIRConfig(embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=8, mlp_ratio=2.0),
    "swinir-light-x4": SwinIRConfig(embed_dim=60, depths=[6] * 4, num_heads=[6] * 4, window_size=8, mlp_ratio=2.0,
                                    upscale=4, upsampler="pixelshuffledirect"),
    "swinir-m-x4": SwinIRConfig(embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=8, mlp_ratio=2.0,
                                upscale=4, upsampler="pixelshuffle"),
}


def shifted_window_mask(height: int, width: int, window: int, shift: int, *, device=None,
                        dtype: torch.dtype = torch.float32) -> Tensor:
    """Additive attention mask ``(nW, window², window²)`` of the shifted windows of an
    ``height × width`` map (multiples of ``window``) rolled by ``-shift``: 0 between two tokens
    that are neighbours in the image, :data:`MASK_VALUE` between tokens the roll brought
    together from opposite borders. Windows in the order of :func:`window_partition`."""

    def bands(n: int) -> Tensor:  # rolled rows [0, n−w) → 0, [n−w, n−s) → 1, [n−s, n) (wrapped) → 2
        i = torch.arange(n, device=device)
        return (i >= n - window).long() + (i >= n - shift).long()

    region = bands(height)[:, None] * 3 + bands(width)[None, :]  # (H, W): which part of the image
    tokens = window_partition(region[None, :, :, None], window)[..., 0]  # (nW, L)
    apart = tokens[:, :, None] != tokens[:, None, :]
    return torch.zeros(apart.shape, device=device, dtype=dtype).masked_fill(apart, MASK_VALUE)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a relative position bias.

    ``(N, L, C)`` window tokens (N = B·nW, L = w²) and an optional mask ``(nW, L, L)`` ->
    ``(N, L, C)``.
    """

    def __init__(self, dim: int, window: int, heads: int) -> None:
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # index[i, j]: the table row of the offset yx_i − yx_j of two tokens (row-major in the window)
        yx = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        offset = yx[:, :, None] - yx[:, None, :] + (window - 1)  # (2, L, L), each in [0, 2w−2]
        self.register_buffer("relative_position_index", offset[0] * (2 * window - 1) + offset[1], persistent=False)

    def forward(self, t: Tensor, mask: Tensor | None = None) -> Tensor:
        n, length, c = t.shape
        q, k, v = self.qkv(t).view(n, length, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = (q * self.scale) @ k.transpose(-2, -1) + bias.view(length, length, -1).permute(2, 0, 1)
        if mask is not None:  # (N, heads, L, L) seen as (B, nW, heads, L, L)
            nw = mask.shape[0]
            attn = (attn.view(n // nw, nw, self.heads, length, length) + mask[None, :, None]).view(attn.shape)
        out = attn.softmax(dim=-1) @ v  # (N, heads, L, d)
        return self.proj(out.transpose(1, 2).reshape(n, length, c))


class SwinLayer(nn.Module):
    """LN → (shifted) window MSA → residual; LN → MLP → residual. ``(B, H, W, C)`` -> same."""

    def __init__(self, dim: int, window: int, heads: int, mlp_ratio: float, shift: int) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, heads)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential()
        self.mlp.add_module("fc1", nn.Linear(dim, hidden))
        self.mlp.add_module("act", nn.GELU())
        self.mlp.add_module("fc2", nn.Linear(hidden, dim))

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """x ``(B, H, W, C)``, H and W multiples of the window; ``mask`` for a shifted layer."""
        b, h, w, _ = x.shape
        y = self.norm1(x)
        if self.shift:
            y = torch.roll(y, shifts=(-self.shift, -self.shift), dims=(1, 2))
        y = window_reverse(self.attn(window_partition(y, self.window), mask), self.window, b, h, w)
        if self.shift:
            y = torch.roll(y, shifts=(self.shift, self.shift), dims=(1, 2))
        x = x + y
        return x + self.mlp(self.norm2(x))


class RSTB(nn.Module):
    """Residual Swin Transformer block: ``depth`` Swin layers (regular, shifted, …), a 3×3
    conv, plus the block's input. ``(B, H, W, C)`` -> same."""

    def __init__(self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        layers = [SwinLayer(dim, window, heads, mlp_ratio, shift=(window // 2) * (i % 2)) for i in range(depth)]
        self.residual_group = nn.ModuleDict({"blocks": nn.ModuleList(layers)})  # the official names
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        y = x
        for layer in self.residual_group["blocks"]:
            y = layer(y, mask if layer.shift else None)
        return x + self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class SwinIR(nn.Module):
    """SwinIR: shallow conv, residual Swin Transformer blocks, long skip, reconstruction."""

    architecture = "swinir"
    # Tiles whose origins are multiples of size_multiple and whose overlap covers
    # receptive_field() give the untiled output: the windows (shifted or not) of a tile are
    # windows of the whole image, and the shifted-window wrap-around (and the padding) only
    # changes pixels near the tile's borders, inside the overlap.
    tiling_exact = True
    norm_types = (nn.LayerNorm,)  # the normalisation layers (kept fixed by a conversion with tunable_norms=False)

    def __init__(self, config: SwinIRConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = replace(config if config is not None else SwinIRConfig(), **kwargs)
        _validate(cfg)
        cfg = replace(cfg, depths=list(cfg.depths), num_heads=list(cfg.num_heads))
        self.config = cfg
        c, w = cfg.embed_dim, cfg.window_size
        self.conv_first = nn.Conv2d(cfg.in_channels, c, 3, padding=1)
        self.patch_embed = nn.ModuleDict({"norm": nn.LayerNorm(c)})  # the official name
        self.layers = nn.ModuleList([RSTB(c, d, h, w, cfg.mlp_ratio) for d, h in zip(cfg.depths, cfg.num_heads)])
        self.norm = nn.LayerNorm(c)
        self.conv_after_body = nn.Conv2d(c, c, 3, padding=1)
        s, out = cfg.upscale, cfg.out_channels
        if cfg.upsampler == "pixelshuffle":
            f = cfg.num_feat
            self.conv_before_upsample = nn.Sequential(nn.Conv2d(c, f, 3, padding=1), nn.LeakyReLU(inplace=True))
            stages = [(4, 2)] * {2: 1, 4: 2, 8: 3}[s] if s != 3 else [(9, 3)]
            self.upsample = nn.Sequential(*[m for k, r in stages for m in (nn.Conv2d(f, k * f, 3, padding=1),
                                                                            nn.PixelShuffle(r))])
            self.conv_last = nn.Conv2d(f, out, 3, padding=1)
        elif cfg.upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(nn.Conv2d(c, out * s * s, 3, padding=1), nn.PixelShuffle(s))
        else:
            self.conv_last = nn.Conv2d(c, out, 3, padding=1)
        self.apply(_init_weights)

    @property
    def size_multiple(self) -> int:
        """The padding multiple: the window size."""
        return self.config.window_size

    def receptive_field(self) -> int:
        """An upper bound of the receptive radius in input pixels.

        ``sum(depths) · (window_size − 1) + n_conv``: a Swin layer mixes only the tokens of
        the window that contains a pixel (shifted or not), at most ``window_size − 1`` pixels
        further in each direction; every 3×3 conv on the path adds 1 (conv_first, one per
        RSTB, conv_after_body and the reconstruction's convs; those after a pixel shuffle see
        less than one input pixel and count 1 too). LayerNorm and the MLP act per token.
        """
        cfg = self.config
        n_conv = 2 + len(cfg.depths)
        if cfg.upsampler == "pixelshuffle":
            n_conv += 2 + len(self.upsample) // 2
        else:  # conv_last, or the one conv of "pixelshuffledirect"
            n_conv += 1
        return sum(cfg.depths) * (cfg.window_size - 1) + n_conv

    def forward(self, x: Tensor) -> Tensor:
        """x ``(B, C_in, H, W)`` -> ``(B, C_out, H·s, W·s)``; H, W are padded internally."""
        cfg = self.config
        h, w = x.shape[-2:]
        x = _pad(x, cfg.window_size)
        hp, wp = x.shape[-2:]
        mask = shifted_window_mask(hp, wp, cfg.window_size, cfg.window_size // 2, device=x.device, dtype=x.dtype)
        feat = self.conv_first(x)
        t = self.patch_embed["norm"](feat.permute(0, 2, 3, 1))  # (B, H, W, C) tokens
        for layer in self.layers:
            t = layer(t, mask)
        feat = feat + self.conv_after_body(self.norm(t).permute(0, 3, 1, 2))
        if cfg.upsampler == "pixelshuffle":
            out = self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        elif cfg.upsampler == "pixelshuffledirect":
            out = self.upsample(feat)
        else:
            out = x + self.conv_last(feat)
        return out[..., : h * cfg.upscale, : w * cfg.upscale]

    def arguments(self) -> dict:
        """The constructor arguments, JSON-serialisable."""
        return asdict(self.config)


def _pad(x: Tensor, multiple: int) -> Tensor:
    """Reflect-pad ``(B, C, H, W)`` on the bottom/right to multiples of ``multiple``
    (replicate where the image is too small to reflect)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if not ph and not pw:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="reflect" if ph < h and pw < w else "replicate")


def _init_weights(m: nn.Module) -> None:
    """The official initialisation: linear weights N(0, 0.02²) truncated, biases 0; LayerNorm 1, 0."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def _validate(cfg: SwinIRConfig) -> None:
    """Raise ValueError for a configuration SwinIR cannot be built from."""

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    for name in ("in_channels", "out_channels", "embed_dim", "num_feat"):
        v = getattr(cfg, name)
        if not is_int(v) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not is_int(cfg.window_size) or cfg.window_size < 2:
        raise ValueError(f"window_size must be an integer >= 2, got {cfg.window_size!r}")
    for name in ("depths", "num_heads"):
        v = getattr(cfg, name)
        if not isinstance(v, (list, tuple)) or not v or not all(is_int(d) and d >= 1 for d in v):
            raise ValueError(f"{name} must be a non-empty list of positive integers (one per RSTB), got {v!r}")
    if len(cfg.depths) != len(cfg.num_heads):
        raise ValueError(f"depths and num_heads need one entry per RSTB each, got {len(cfg.depths)} and "
                         f"{len(cfg.num_heads)}")
    bad = [h for h in cfg.num_heads if cfg.embed_dim % h]
    if bad:
        raise ValueError(f"embed_dim ({cfg.embed_dim}) must be divisible by every num_heads entry, not by {bad[0]}")
    ratio = cfg.mlp_ratio
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1e6 \
            or int(cfg.embed_dim * ratio) < 1:
        raise ValueError(f"mlp_ratio must be a positive number (at least one hidden unit), got {cfg.mlp_ratio!r}")
    if cfg.upsampler not in ("", "pixelshuffle", "pixelshuffledirect"):
        raise ValueError(f"upsampler must be '', 'pixelshuffle' or 'pixelshuffledirect', got {cfg.upsampler!r}")
    if cfg.upscale not in (1, 2, 3, 4, 8) or not is_int(cfg.upscale):
        raise ValueError(f"upscale must be 1, 2, 3, 4 or 8, got {cfg.upscale!r}")
    if cfg.upsampler == "" and cfg.upscale != 1:
        raise ValueError(f"upscale {cfg.upscale} needs an upsampler ('pixelshuffle' or 'pixelshuffledirect'); "
                         "upsampler '' is for restoration at upscale 1")
    if cfg.upsampler and cfg.upscale == 1:
        raise ValueError(f"upsampler {cfg.upsampler!r} is for super-resolution: it needs upscale 2, 3, 4 or 8")
    if cfg.upsampler == "" and cfg.in_channels != cfg.out_channels:
        raise ValueError(f"upsampler '' adds the input to the output: in_channels ({cfg.in_channels}) must equal "
                         f"out_channels ({cfg.out_channels})")
