"""The paper's ResNet backbone, tunable or plain from the same code.

::

    x ─ head conv ─┬─ [ResBlock] × N ─ body conv ─(+)─ [upsampler] ─ tail conv ─(+ x)─ y
                   └──────────── long residual ─────┘                      (input residual)

ResBlock: conv–ReLU–conv plus skip. The optional upsampler is conv + pixel shuffle per ×2
(or one ×3 stage), as used for super-resolution. With ``num_params=0`` every conv is a plain
``nn.Conv2d`` (the fixed reference network); with ``num_params=P`` every conv is a
:class:`~tunableconv.nn.TunableConv2d` with P interactive parameters.

Shapes: x ``(B, C_in, H, W)``, p ``(P,)`` or ``(B, P)`` -> ``(B, C_out, H·s, W·s)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn

from ..nn import TunableConv2d, check_params, tunable_params


@dataclass
class ResNetConfig:
    """Constructor arguments of :class:`ResNet` (stored in model files as metadata)."""

    in_channels: int = 3
    out_channels: int = 3
    channels: int = 64
    num_blocks: int = 16
    kernel_size: int = 3
    num_params: int = 2  # 0: plain network
    mapping: str = "affine"
    expansion: int = 1
    input_residual: bool = True
    upscale: int = 1
    res_scale: float = 1.0


class ResBlock(nn.Module):
    """conv – ReLU – conv, plus the skip: ``x + res_scale · conv(relu(conv(x)))``."""

    def __init__(self, make_conv, channels: int, kernel_size: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = make_conv(channels, channels, kernel_size)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = make_conv(channels, channels, kernel_size)
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res_scale * self.conv2(self.act(self.conv1(x)))


class ResNet(nn.Module):
    """The paper's ResNet: head, N residual blocks, long skip, optional upsampler, tail."""

    architecture = "resnet"

    def __init__(self, config: ResNetConfig | None = None, **kwargs) -> None:
        super().__init__()
        cfg = config or ResNetConfig(**kwargs)
        if config is not None and kwargs:
            raise TypeError("pass either a ResNetConfig or keyword arguments, not both")
        if cfg.upscale not in (1, 2, 3, 4, 8):
            raise ValueError(f"upscale must be 1, 2, 3, 4 or 8, got {cfg.upscale}")
        self.config = cfg
        self.num_params = cfg.num_params

        def make_conv(cin: int, cout: int, k: int) -> nn.Module:
            if cfg.num_params == 0:
                return nn.Conv2d(cin, cout, k, padding=k // 2)
            return TunableConv2d(cin, cout, k, cfg.num_params, padding=k // 2, mapping=cfg.mapping, expansion=cfg.expansion)

        c, k = cfg.channels, cfg.kernel_size
        self.head = make_conv(cfg.in_channels, c, k)
        self.body = nn.Sequential(*[ResBlock(make_conv, c, k, cfg.res_scale) for _ in range(cfg.num_blocks)])
        self.body_tail = make_conv(c, c, k)
        up: list[nn.Module] = []
        if cfg.upscale in (2, 4, 8):
            for _ in range({2: 1, 4: 2, 8: 3}[cfg.upscale]):
                up += [make_conv(c, 4 * c, k), nn.PixelShuffle(2)]
        elif cfg.upscale == 3:
            up += [make_conv(c, 9 * c, k), nn.PixelShuffle(3)]
        self.upsampler = nn.Sequential(*up)
        self.tail = make_conv(c, cfg.out_channels, k)

    @property
    def is_tunable(self) -> bool:
        return self.num_params > 0

    def _forward(self, x: Tensor) -> Tensor:
        feat = self.head(x)
        feat = feat + self.body_tail(self.body(feat))
        out = self.tail(self.upsampler(feat))
        if self.config.input_residual:
            skip = x if self.config.upscale == 1 else nn.functional.interpolate(
                x, scale_factor=self.config.upscale, mode="bilinear", align_corners=False)
            if skip.shape[1] == out.shape[1]:
                out = out + skip
        return out

    def forward(self, x: Tensor, p: Tensor | None = None) -> Tensor:
        if not self.is_tunable:
            if p is not None:
                raise ValueError("this ResNet is a plain (fixed) network: it takes no p")
            return self._forward(x)
        p = check_params(p if p is not None else _missing(), self.num_params, x.shape[0], device=x.device)
        with tunable_params(p):
            return self._forward(x)

    def arguments(self) -> dict:
        """The constructor arguments, JSON-serialisable."""
        return asdict(self.config)


def _missing():
    from ..errors import InvalidParamsError

    raise InvalidParamsError("this ResNet is tunable: call it as model(x, p)")
