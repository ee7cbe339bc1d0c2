r"""The style-transfer network of the paper's Sec. 4.2 (after Johnson et al. 2016), as a plain network.

A U-Net *without* skip connections: ``S = num_scales`` strided-convolution downsamplings, residual
blocks at the lowest resolution (the latent space), then S nearest-neighbour upsamplings, each
followed by a convolution; the channels double at every scale (``c_s = width · 2^s``). Every
convolution but the last is followed by instance normalisation (affine) and a ReLU::

    x ─ pad ─ (x − μ)/σ ─ head k×k (3 → c_0) ─ IN ─ ReLU
      ─ for s = 0 … S−1:  3×3 stride 2 (c_s → c_{s+1}) ─ IN ─ ReLU,  then (n_enc − 1) × [3×3 ─ IN ─ ReLU]
      ─ n_lat × ResBlock(c_S)
      ─ for s = S−1 … 0:  nearest ×2 ─ 3×3 (c_{s+1} → c_s) ─ IN ─ ReLU,  then (n_dec − 1) × [3×3 ─ IN ─ ReLU]
      ─ tail k×k (c_0 → 3) ─ ·σ + μ ─ crop ─ y

    ResBlock(c):  x ─┬─ 3×3 ─ IN ─ ReLU ─ 3×3 ─ IN ─(+)─ ReLU
                     └───────────────────────────────┘

``blocks = [n_enc, n_lat, n_dec]``; k = ``outer_kernel`` (9, Johnson's). IN is
``nn.InstanceNorm2d(c, affine=True)``: per sample and channel, ``IN(z) = γ (z − mean_{HW} z) /
sqrt(var_{HW} z + 10⁻⁵) + β``. μ, σ are the ImageNet mean and std: the network works on
normalised colours and returns RGB in the input's range (unclamped).

Presets (:data:`PRESETS`):

- ``stylenet-small``: width 16, blocks [1, 5, 1] (16/32/64 channels, 5 residual blocks), sized for
  a CPU thread (measured costs in ``train/recipes.py``, ``style3-small``);
- ``stylenet-johnson``: width 32, blocks [1, 5, 1] (32/64/128 channels, 5 residual blocks): Johnson
  et al.'s transformation network with nearest-neighbour upsampling instead of fractionally
  strided convolutions and instance norm instead of batch norm (as in Ulyanov et al. and PyTorch's
  ``fast_neural_style``);
- ``stylenet-paper``: width 64, blocks [2, 6, 2] (64/128/256 channels): the authors' reference
  (mindspore-lab/mindediting ``TunableStyleNet``, whose ``num_blocks = [2, 6, 2]`` counts the
  convolutions per encoder scale, the latent residual blocks and the convolutions per decoder
  scale, exactly the ``blocks`` here).

There is no tunable-specific code here: :func:`~tunableconv.nn.make_tunable` makes every
convolution and instance-norm affine parameter tunable (:mod:`tunableconv.models.converted`,
``stylenet``; ``tunable_norms=False`` keeps the instance norms fixed, as the authors' reference
does) and runs this forward unchanged, under ``torch.func.vmap`` for per-sample p.

Padding: the input is padded on the bottom/right to a multiple of :attr:`StyleNet.size_multiple`
(``2^num_scales``), and to at least :attr:`StyleNet.min_padded_size` (so the latent map is at
least 2×2 and every reflection padding fits), by reflection (replication where the image is too small to reflect),
and the output is cropped back: any H, W >= 1 works. The convolutions pad by ``padding_mode``
(``reflect`` by default, as ``fast_neural_style``; the authors' reference pads with zeros).
Instance normalisation averages over the whole image, so an image stylised in tiles differs from
one stylised whole (``tiling_exact = False``).

Shapes: x ``(B, 3, H, W)`` -> ``(B, 3, H, W)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

#: the ImageNet colour statistics the network normalises its input with (and undoes at the output)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: how the convolutions pad (``nn.Conv2d`` padding modes)
PADDING_MODES = ("reflect", "zeros", "replicate")


@dataclass
class StyleNetConfig:
    """Constructor arguments of :class:`StyleNet` (stored in model files as metadata)."""

    width: int = 32  # channels at full resolution; doubled at every scale
    num_scales: int = 2  # strided downsamplings (and nearest-neighbour upsamplings)
    blocks: list[int] = field(default_factory=lambda: [1, 5, 1])  # [convs per encoder scale, latent ResBlocks, convs per decoder scale]
    outer_kernel: int = 9  # kernel size of the first and the last convolution
    padding_mode: str = "reflect"  # of every convolution: reflect, zeros or replicate


PRESETS: dict[str, StyleNetConfig] = {
    "stylenet-small": StyleNetConfig(width=16, blocks=[1, 5, 1]),
    "stylenet-johnson": StyleNetConfig(width=32, blocks=[1, 5, 1]),
    "stylenet-paper": StyleNetConfig(width=64, blocks=[2, 6, 2]),
}


class ConvNormReLU(nn.Sequential):
    """``k×k`` convolution (stride 1 or 2), instance norm (affine), ReLU: ``(B, c_in, H, W)`` ->
    ``(B, c_out, H/stride, W/stride)`` (H, W even when the stride is 2)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, padding_mode: str) -> None:
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, padding_mode=padding_mode),
                         nn.InstanceNorm2d(c_out, affine=True), nn.ReLU())


class ResBlock(nn.Module):
    """``ReLU(x + IN(conv(ReLU(IN(conv(x))))))``: ``(B, c, H, W)`` -> ``(B, c, H, W)``."""

    def __init__(self, c: int, padding_mode: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, padding_mode=padding_mode)
        self.norm1 = nn.InstanceNorm2d(c, affine=True)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, padding_mode=padding_mode)
        self.norm2 = nn.InstanceNorm2d(c, affine=True)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(x + self.norm2(self.conv2(y)))


class Upsample(nn.Module):
    """Nearest-neighbour ×2 upsampling: ``(B, C, H, W)`` -> ``(B, C, 2H, 2W)``."""

    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2, mode="nearest")


class StyleNet(nn.Module):
    """The feed-forward style network: encoder, latent residual blocks, decoder, no skips (see the module docs)."""

    architecture = "stylenet"
    tiling_exact = False  # instance norm averages over the whole image
    norm_types = (nn.InstanceNorm2d,)  # kept fixed by a conversion with tunable_norms=False

    def __init__(self, config: StyleNetConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = replace(config, **kwargs) if config is not None else StyleNetConfig(**kwargs)
        cfg = replace(cfg, blocks=list(cfg.blocks))
        _validate(cfg)
        self.config = cfg
        n_enc, n_lat, n_dec = cfg.blocks
        pm = cfg.padding_mode
        widths = [cfg.width * 2**s for s in range(cfg.num_scales + 1)]
        self.head = ConvNormReLU(3, widths[0], cfg.outer_kernel, 1, pm)
        encoder: list[nn.Module] = []
        for s in range(cfg.num_scales):
            encoder.append(ConvNormReLU(widths[s], widths[s + 1], 3, 2, pm))
            encoder += [ConvNormReLU(widths[s + 1], widths[s + 1], 3, 1, pm) for _ in range(n_enc - 1)]
        self.encoder = nn.Sequential(*encoder)
        self.latent = nn.Sequential(*[ResBlock(widths[-1], pm) for _ in range(n_lat)])
        decoder: list[nn.Module] = []
        for s in reversed(range(cfg.num_scales)):
            decoder += [Upsample(), ConvNormReLU(widths[s + 1], widths[s], 3, 1, pm)]
            decoder += [ConvNormReLU(widths[s], widths[s], 3, 1, pm) for _ in range(n_dec - 1)]
        self.decoder = nn.Sequential(*decoder)
        self.tail = nn.Conv2d(widths[0], 3, cfg.outer_kernel, padding=cfg.outer_kernel // 2, padding_mode=pm)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def size_multiple(self) -> int:
        """The internal padding multiple, ``2 ** num_scales``."""
        return 2 ** self.config.num_scales

    @property
    def min_padded_size(self) -> int:
        """The least side of the padded input: a multiple of :attr:`size_multiple`, at least twice
        it (a latent map of at least 2×2) and larger than ``outer_kernel // 2`` (so that every
        reflection padding fits)."""
        m = self.size_multiple
        return m * max(2, -(-(self.config.outer_kernel // 2 + 1) // m))

    def forward(self, x: Tensor) -> Tensor:
        """x ``(B, 3, H, W)`` RGB in [0, 1] -> ``(B, 3, H, W)`` (unclamped); H, W are padded internally."""
        return self.run(x, self.latent)

    def run(self, x: Tensor, latent: Callable[[Tensor], Tensor]) -> Tensor:
        """The forward with the latent residual blocks replaced by ``latent`` (``(B, c_S, h, w)``
        -> the same shape): ``run(x, self.latent)`` is ``forward(x)`` exactly. For methods
        that act between the latent blocks (Dynamic-Net's tuning blocks)."""
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"StyleNet takes RGB images (B, 3, H, W), got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        m, least = self.size_multiple, self.min_padded_size
        ph, pw = max(-(-h // m) * m, least) - h, max(-(-w // m) * m, least) - w
        mode = "reflect" if ph < h and pw < w else "replicate"
        z = F.pad(x, (0, pw, 0, ph), mode=mode) if ph or pw else x
        z = (z - self.mean) / self.std
        z = self.decoder(latent(self.encoder(self.head(z))))
        y = self.tail(z) * self.std + self.mean
        return y[..., :h, :w]

    def arguments(self) -> dict:
        """The constructor arguments, JSON-serialisable."""
        return asdict(self.config)


def _validate(cfg: StyleNetConfig) -> None:
    """Raise ValueError for a configuration StyleNet cannot be built from."""

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if not is_int(cfg.width) or cfg.width < 1:
        raise ValueError(f"width must be a positive integer, got {cfg.width!r}")
    if not is_int(cfg.num_scales) or not 0 <= cfg.num_scales <= 6:
        raise ValueError(f"num_scales must be an integer in [0, 6], got {cfg.num_scales!r}")
    b = cfg.blocks
    if len(b) != 3 or not all(is_int(n) for n in b) or b[0] < 1 or b[1] < 0 or b[2] < 1:
        raise ValueError(f"blocks must be [convs per encoder scale >= 1, latent residual blocks >= 0, "
                         f"convs per decoder scale >= 1], got {b!r}")
    if not is_int(cfg.outer_kernel) or cfg.outer_kernel < 1 or cfg.outer_kernel % 2 == 0:
        raise ValueError(f"outer_kernel must be an odd positive integer, got {cfg.outer_kernel!r}")
    if cfg.padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(PADDING_MODES)}, got {cfg.padding_mode!r}")
