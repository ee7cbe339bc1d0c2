"""Plain architectures made tunable by :func:`~tunableconv.nn.make_tunable`, as model-file architectures.

The architecture files (``nafnet.py``, ``swinir.py``, ``stylenet.py``) hold plain networks with no tunable
code. This module turns each into an architecture that model files, recipes and the trainer
know, with the knob-space arguments next to the network's own::

    TunableNAFNetConfig = NAFNetConfig fields + ConversionConfig fields
    TunableNAFNet(config)  = NAFNet(plain fields)                     if num_params == 0 (the fixed twin)
                           = make_tunable(NAFNet(plain fields), ...)  otherwise

So ``TunableNAFNet(num_params=0)`` is the plain network itself (its state dict under
``net.``), and ``TunableNAFNet(num_params=2)`` is the converted one, called as
``model(x, p)`` like :class:`~tunableconv.models.ResNet`. At construction the converted
network computes the plain one for every p (:func:`make_tunable`'s initialisation);
:meth:`ConvertedNetwork.load_plain_weights` starts it from a trained plain twin (the warm
start of ``model.init`` and ``train --init-from``).

``tunable_norms=False`` keeps the normalisation layers (the architecture's ``norm_types``)
fixed, as the authors' reference keeps LayerNorm; everything else with floating-point
parameters becomes tunable (convolutions, linear layers, layer scales, relative position
bias tables). :meth:`ConvertedNetwork.conversion_report` lists every parameter.

Facts for tiling and the knob space come from the plain class: ``tiling_exact``,
``size_multiple`` (tiles aligned to it keep windowed attention exact) and
``receptive_field()`` when it has one.

Shapes: x ``(B, C_in, H, W)``, p ``(P,)``, ``(B, P)``, ``(P, H, W)`` or ``(B, P, H, W)`` ->
``(B, C_out, H·s, W·s)`` (s = the architecture's ``upscale``, 1 when it has none).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, ClassVar

from torch import Tensor, nn

from ..errors import InvalidParamsError
from ..nn import make_tunable
from ..nn.params import check_domain
from .nafnet import NAFNet, NAFNetConfig
from .stylenet import StyleNet, StyleNetConfig
from .swinir import SwinIR, SwinIRConfig


@dataclass
class ConversionConfig:
    """How a plain network is made tunable (the knob-space half of a converted config)."""

    num_params: int = 0  # 0: the plain (fixed) network
    domain: str = "simplex"
    mapping: str = "affine"
    expansion: int = 1
    tunable_norms: bool = True  # False: the architecture's norm layers stay fixed


_CONVERSION_FIELDS = tuple(f.name for f in fields(ConversionConfig))


class ConvertedNetwork(nn.Module):
    """A plain architecture, tunable through :func:`make_tunable` when ``num_params > 0``.

    Subclasses name the plain class and the combined config class; nothing else.
    """

    plain_class: ClassVar[type[nn.Module]]
    plain_config: ClassVar[type]
    config_class: ClassVar[type]
    architecture: ClassVar[str]

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__()
        cfg = replace(config if config is not None else self.config_class(), **kwargs)
        if not isinstance(cfg.num_params, int) or isinstance(cfg.num_params, bool) or cfg.num_params < 0:
            raise ValueError(f"num_params must be a non-negative integer, got {cfg.num_params!r}")
        if not isinstance(cfg.expansion, int) or isinstance(cfg.expansion, bool) or cfg.expansion < 1:
            raise ValueError(f"expansion must be a positive integer, got {cfg.expansion!r}")
        check_domain(cfg.domain)
        self.config = cfg
        plain = self.plain_class(self.plain_config(**self.plain_arguments()))
        self.num_params = cfg.num_params
        self.domain = cfg.domain
        if cfg.num_params == 0:
            self.net: nn.Module = plain
        else:
            self.net = self._convert(plain)

    # -- facts ---------------------------------------------------------------------------------
    @property
    def is_tunable(self) -> bool:
        return self.num_params > 0

    @property
    def plain(self) -> nn.Module:
        """The plain network (inside the converted wrapper when tunable)."""
        return self.net.module if self.is_tunable else self.net

    @property
    def tiling_exact(self) -> bool:
        return bool(getattr(self.plain_class, "tiling_exact", False))

    @property
    def size_multiple(self) -> int:
        return int(getattr(self.plain, "size_multiple", 1))

    def receptive_field(self) -> int | None:
        fn = getattr(self.plain, "receptive_field", None)
        return int(fn()) if callable(fn) and self.tiling_exact else None

    def plain_arguments(self) -> dict:
        """The plain network's constructor arguments (the config minus the conversion fields)."""
        return {f.name: getattr(self.config, f.name) for f in fields(self.plain_config)}

    def arguments(self) -> dict:
        """All constructor arguments, JSON-serialisable."""
        return asdict(self.config)

    def conversion_report(self):
        """Every parameter of the plain network: tunable or fixed, and why (tunable models only)."""
        if not self.is_tunable:
            raise ValueError(f"this {self.architecture} is a plain (fixed) network: nothing was converted")
        return self.net.conversion_report()

    # -- calls ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, p: Tensor | None = None) -> Tensor:
        if not self.is_tunable:
            if p is not None:
                raise ValueError(f"this {self.architecture} is a plain (fixed) network: it takes no p")
            return self.net(x)
        if p is None:
            raise InvalidParamsError(f"this {self.architecture} is tunable: call it as model(x, p)")
        return self.net(x, p)

    def sweep(self, x: Tensor, ps, chunk: int = 1) -> Tensor:
        """Outputs ``(N, B, C, H', W')`` for N settings ``ps (N, P)``."""
        if not self.is_tunable:
            raise ValueError(f"this {self.architecture} is a plain (fixed) network: it has no settings to sweep")
        return self.net.sweep(x, ps, chunk)

    def load_plain_weights(self, state: dict[str, Tensor]) -> None:
        """Start this tunable network from its trained plain twin's state dict (keys ``net.*``
        as a ``num_params=0`` model of the same architecture saves them, or the plain
        network's own keys). Afterwards the model computes the plain network at every p."""
        if not self.is_tunable:
            raise ValueError(f"this {self.architecture} is a plain network: load its state dict directly")
        plain_state = {k[4:] if k.startswith("net.") else k: v for k, v in state.items()}
        plain = self.plain_class(self.plain_config(**self.plain_arguments()))
        try:
            plain.load_state_dict(plain_state)
        except RuntimeError as exc:
            raise ValueError(f"the plain weights do not fit this {self.architecture} ({str(exc).splitlines()[0]})") from None
        self.net.load_state_dict(self._convert(plain).state_dict())

    def _convert(self, plain: nn.Module) -> nn.Module:
        cfg = self.config
        norms = list(getattr(self.plain_class, "norm_types", ()))
        exclude = None if cfg.tunable_norms or not norms else norms
        return make_tunable(plain, cfg.num_params, domain=cfg.domain, mapping=cfg.mapping, expansion=cfg.expansion,
                            exclude=exclude, inplace=True)


@dataclass
class TunableNAFNetConfig(NAFNetConfig, ConversionConfig):
    """:class:`~tunableconv.models.nafnet.NAFNetConfig` + :class:`ConversionConfig`."""


@dataclass
class TunableSwinIRConfig(SwinIRConfig, ConversionConfig):
    """:class:`~tunableconv.models.swinir.SwinIRConfig` + :class:`ConversionConfig`."""


@dataclass
class TunableStyleNetConfig(StyleNetConfig, ConversionConfig):
    """:class:`~tunableconv.models.stylenet.StyleNetConfig` + :class:`ConversionConfig`."""


class TunableNAFNet(ConvertedNetwork):
    """NAFNet (:mod:`tunableconv.models.nafnet`), plain or made tunable."""

    plain_class = NAFNet
    plain_config = NAFNetConfig
    config_class = TunableNAFNetConfig
    architecture = "nafnet"


class TunableSwinIR(ConvertedNetwork):
    """SwinIR (:mod:`tunableconv.models.swinir`), plain or made tunable."""

    plain_class = SwinIR
    plain_config = SwinIRConfig
    config_class = TunableSwinIRConfig
    architecture = "swinir"


class TunableStyleNet(ConvertedNetwork):
    """The style network (:mod:`tunableconv.models.stylenet`), plain or made tunable (every
    convolution, and the instance norms' affine parameters unless ``tunable_norms=False``)."""

    plain_class = StyleNet
    plain_config = StyleNetConfig
    config_class = TunableStyleNetConfig
    architecture = "stylenet"


CONVERTED = {
    "nafnet": (TunableNAFNet, TunableNAFNetConfig),
    "swinir": (TunableSwinIR, TunableSwinIRConfig),
    "stylenet": (TunableStyleNet, TunableStyleNetConfig),
}
