"""The paper's ResNet backbone, tunable or plain from the same code.

::

    x ─ head conv ─┬─ [ResBlock] × N ─ body conv ─(+)─ [upsampler] ─ tail conv ─(+ x)─ y
                   └──────────── long residual ─────┘                      (input residual)

ResBlock: conv–ReLU–conv plus skip. The optional upsampler is conv + pixel shuffle per ×2
(or one ×3 stage), as used for super-resolution. With ``num_params=0`` every conv is a plain
``nn.Conv2d`` (the fixed reference network); with ``num_params=P`` every conv is a
:class:`~tunableconv.nn.TunableConv2d` with P interactive parameters on the knob domain
``domain`` ("simplex" or "cube"), and p is passed to every layer explicitly.

``trunk_blocks = n`` declares a p-independent trunk: the head conv and the first n
residual blocks are plain convolutions, so :meth:`ResNet.sweep` computes them once for any
number of settings (see :mod:`tunableconv.nn.trunk`).

Shapes: x ``(B, C_in, H, W)``, p ``(P,)``, ``(B, P)`` or a knob map ``(P, H, W)`` /
``(B, P, H, W)`` -> ``(B, C_out, H·s, W·s)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from torch import Tensor, nn

from ..nn import TunableConv2d, check_params, sweep_outputs
from ..nn.params import check_domain


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
    domain: str = "simplex"
    trunk_blocks: int = 0  # head + this many blocks are plain convs, computed once by sweep()


def _apply(layer: nn.Module, x: Tensor, p: Tensor | None) -> Tensor:
    """Call a conv with p if it is tunable (p given), plainly otherwise."""
    return layer(x, p) if isinstance(layer, TunableConv2d) else layer(x)


class ResBlock(nn.Module):
    """conv – ReLU – conv, plus the skip: ``x + res_scale · conv(relu(conv(x)))``."""

    def __init__(self, make_conv, channels: int, kernel_size: int, res_scale: float) -> None:
        super().__init__()
        self.conv1 = make_conv(channels, channels, kernel_size)
        self.act = nn.ReLU(inplace=True)
        self.conv2 = make_conv(channels, channels, kernel_size)
        self.res_scale = res_scale

    def forward(self, x: Tensor, p: Tensor | None = None) -> Tensor:
        return x + self.res_scale * _apply(self.conv2, self.act(_apply(self.conv1, x, p)), p)


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
        check_domain(cfg.domain)
        if not 0 <= cfg.trunk_blocks <= cfg.num_blocks:
            raise ValueError(f"trunk_blocks must be in [0, num_blocks={cfg.num_blocks}], got {cfg.trunk_blocks}")
        self.config = cfg
        self.num_params = cfg.num_params
        self.domain = cfg.domain

        def make_conv(cin: int, cout: int, k: int, plain: bool = False) -> nn.Module:
            if cfg.num_params == 0 or plain:
                return nn.Conv2d(cin, cout, k, padding=k // 2)
            return TunableConv2d(cin, cout, k, cfg.num_params, padding=k // 2, mapping=cfg.mapping,
                                 expansion=cfg.expansion, domain=cfg.domain)

        def make_plain(cin: int, cout: int, k: int) -> nn.Module:
            return make_conv(cin, cout, k, plain=True)

        c, k = cfg.channels, cfg.kernel_size
        trunk = cfg.trunk_blocks > 0
        self.head = make_conv(cfg.in_channels, c, k, plain=trunk)
        self.body = nn.Sequential(*[
            ResBlock(make_plain if i < cfg.trunk_blocks else make_conv, c, k, cfg.res_scale)
            for i in range(cfg.num_blocks)
        ])
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

    def trunk(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The p-independent part: ``(x, head(x), first trunk_blocks blocks)``."""
        head = _apply(self.head, x, None)
        feat = head
        for block in self.body[: self.config.trunk_blocks]:
            feat = block(feat)
        return x, head, feat

    def rest(self, state: tuple[Tensor, Tensor, Tensor], p: Tensor | None) -> Tensor:
        """The rest of the network from :meth:`trunk`'s state (p already validated)."""
        x, head, feat = state
        for block in self.body[self.config.trunk_blocks :]:
            feat = block(feat, p)
        feat = head + _apply(self.body_tail, feat, p)
        for layer in self.upsampler:
            feat = _apply(layer, feat, p)
        out = _apply(self.tail, feat, p)
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
            return self.rest(self.trunk(x), None)
        if p is None:
            _missing()
        p = check_params(p, self.num_params, x.shape[0], size=tuple(x.shape[-2:]), allow_map=True, device=x.device)
        if self.config.trunk_blocks == 0:  # the head is tunable: no trunk to split off
            head = self.head(x, p)
            return self.rest((x, head, head), p)
        return self.rest(self.trunk(x), p)

    def sweep(self, x: Tensor, ps, chunk: int = 1) -> Tensor:
        """Outputs ``(N, B, C, H', W')`` for N settings ``ps (N, P)``; the trunk runs once."""
        if not self.is_tunable:
            raise ValueError("this ResNet is a plain (fixed) network: it has no settings to sweep")
        ps = check_params(ps, self.num_params, device=x.device)
        if ps.dim() != 2:
            from ..errors import InvalidParamsError

            raise InvalidParamsError(f"sweep takes N settings as ps of shape (N, P), got {tuple(ps.shape)}")
        if self.config.trunk_blocks == 0:
            return sweep_outputs(None, lambda s, p: self.forward(s, p), x, ps, chunk)
        return sweep_outputs(self.trunk, self.rest, x, ps, chunk)

    def arguments(self) -> dict:
        """The constructor arguments, JSON-serialisable."""
        return asdict(self.config)


def _missing():
    from ..errors import InvalidParamsError

    raise InvalidParamsError("this ResNet is tunable: call it as model(x, p)")
