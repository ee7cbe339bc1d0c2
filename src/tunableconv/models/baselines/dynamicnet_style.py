"""Dynamic-Net on the style network (Shoshan et al., "Dynamic-Net: Tuning the Objective Without
Re-training for Synthesis Tasks", ICCV 2019): two styles, one control value.

Dynamic-Net was shown first on style transfer, with Johnson et al.'s network: a main network
trained for objective 1 (one style), plus tuning blocks trained for objective 2 (another style)
with the main network frozen; at inference α in [0, 1] scales the tuning blocks and moves the
output from one style towards the other. This is that method on this project's style network
(:class:`~tunableconv.models.stylenet.StyleNet`, the backbone of ``style3``), for one edge of the
style triangle. After latent residual block j (for every ``tuning_every``-th block:
j = e−1, 2e−1, ...)::

    z_j ← z_j + α·T_j(z_j),        α = p[..., 1],   p = (1 − α, α) on the 2-simplex

T_j is conv 3×3 – instance norm – ReLU – conv 3×3 at the latent width (our choice of tuning
block; the instance norm as everywhere in the style network), its last conv zero-initialised,
so a fresh tuning block adds nothing and stage 2 starts from the main network. At α = 0 the
output is exactly the main network's (the tuning blocks are skipped when every α is 0).

Training (:meth:`StyleDynamicNet.training_stages`, total split 50/50): 1. ``"main"`` at
p = (1, 0); 2. ``"tuning"``: the tuning blocks at p = (0, 1), everything else frozen. With
``pretrained_main`` the main network is a trained single-style network
(``model.init`` = a plain ``stylenet`` model file, e.g. a ``style3`` single-style twin, loaded by
:meth:`StyleDynamicNet.load_main`) and every step goes to the tuning blocks.

Like the style network, it is not exact in tiles (instance norm averages over the whole image).

Shapes: x ``(B, 3, H, W)``, p ``(2,)`` or ``(B, 2)`` -> ``(B, 3, H, W)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ...errors import InvalidParamsError
from ...nn.params import check_params
from ..stylenet import StyleNet, StyleNetConfig
from ._backbone import Stage, all_zero, parameters_of, spatial, two_stages, with_tuning_blocks

#: the knob space Dynamic-Net supports here: two styles on the simplex, α = p[..., 1]
NUM_PARAMS, DOMAIN = 2, "simplex"
ENDPOINTS = ((1.0, 0.0), (0.0, 1.0))


@dataclass
class StyleDynamicNetConfig(StyleNetConfig):
    """Constructor arguments of :class:`StyleDynamicNet`: the style network's fields, the task's
    knob count and domain (2 on the simplex only), and the method's own."""

    num_params: int = NUM_PARAMS
    domain: str = DOMAIN
    tuning_every: int = 1  # a tuning block after every tuning_every-th latent residual block
    #: the main network is trained already (``model.init``: a plain style network's file): the
    #: first stage is skipped and every step trains the tuning blocks
    pretrained_main: bool = False


class StyleTuningBlock(nn.Module):
    """``T(z) = conv(ReLU(IN(conv(z))))`` at ``c`` channels, last conv zero-initialised (T = 0
    at init): ``(B, c, h, w)`` -> ``(B, c, h, w)``."""

    def __init__(self, c: int, padding_mode: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, padding_mode=padding_mode)
        self.norm = nn.InstanceNorm2d(c, affine=True)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, padding_mode=padding_mode)
        with torch.no_grad():
            self.conv2.weight.zero_()
            self.conv2.bias.zero_()

    def forward(self, z: Tensor) -> Tensor:
        return self.conv2(self.act(self.norm(self.conv1(z))))


class StyleDynamicNet(nn.Module):
    """Main style network ``main`` + tuning blocks ``tuning["j"]`` after latent block j."""

    architecture: ClassVar[str] = "dynamicnet-style"
    config_class: ClassVar[type] = StyleDynamicNetConfig
    #: the architecture of the model file ``model.init`` may name for :meth:`load_main`
    main_architecture: ClassVar[str] = "stylenet"
    tiling_exact: ClassVar[bool] = False
    conditioned_on: ClassVar[str] = "p"

    def __init__(self, config: StyleDynamicNetConfig | None = None, **kwargs) -> None:
        super().__init__()
        if config is not None and kwargs:
            raise TypeError("pass either a config or keyword arguments, not both")
        cfg = config if config is not None else StyleDynamicNetConfig(**kwargs)
        if (cfg.num_params, cfg.domain) != (NUM_PARAMS, DOMAIN):
            raise ValueError(f"{self.architecture} has one control value between two styles: it needs "
                             f"{NUM_PARAMS} knobs on the {DOMAIN}, got {cfg.num_params} on the {cfg.domain}")
        plain = {k: getattr(cfg, k) for k in StyleNetConfig.__dataclass_fields__}
        self.main = StyleNet(StyleNetConfig(**plain))  # validates the style network's fields
        n_lat = cfg.blocks[1]
        if n_lat < 1:
            raise ValueError("dynamicnet-style puts its tuning blocks between latent residual blocks: blocks[1] must be >= 1")
        if not isinstance(cfg.tuning_every, int) or not 1 <= cfg.tuning_every <= n_lat:
            raise ValueError(f"tuning_every must be in [1, latent blocks = {n_lat}], got {cfg.tuning_every!r}")
        self.config = cfg
        width = cfg.width * 2 ** cfg.num_scales
        depths = range(cfg.tuning_every - 1, n_lat, cfg.tuning_every)
        self.tuning = nn.ModuleDict({str(j): StyleTuningBlock(width, cfg.padding_mode) for j in depths})

    # -- facts ---------------------------------------------------------------------------------
    @property
    def num_params(self) -> int:
        return self.config.num_params

    @property
    def domain(self) -> str:
        return self.config.domain

    @property
    def size_multiple(self) -> int:
        return self.main.size_multiple

    def receptive_field(self) -> None:
        """None: instance norm makes every output pixel depend on the whole image."""
        return None

    def arguments(self) -> dict:
        """The constructor arguments (the config as a dict), JSON-serialisable."""
        return asdict(self.config)

    def endpoints(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """p at α = 0 (style 1, the main network) and at α = 1 (style 2)."""
        return ENDPOINTS

    # -- calls ---------------------------------------------------------------------------------
    def alpha(self, p: Tensor | None, x: Tensor) -> Tensor:
        """α = p[..., 1]: ``()`` shared or ``(B,)`` per sample (p validated)."""
        if p is None:
            raise InvalidParamsError(f"{self.architecture} is controllable: call it as model(x, p) with {NUM_PARAMS} values")
        return check_params(p, NUM_PARAMS, x.shape[0], device=x.device, dtype=x.dtype)[..., 1]

    def forward(self, x: Tensor, p: Tensor | None = None) -> Tensor:
        """x ``(B, 3, H, W)`` RGB in [0, 1], p ``(2,)`` or ``(B, 2)`` -> ``(B, 3, H, W)`` (unclamped)."""
        alpha = self.alpha(p, x)
        if all_zero(alpha):
            return self.main(x)
        return self.main.run(x, with_tuning_blocks(self.main.latent, self.tuning, spatial(alpha)))

    # -- training ------------------------------------------------------------------------------
    def load_main(self, state: dict[str, Tensor]) -> None:
        """Load a plain style network's state dict (keys ``net.*`` as a ``stylenet`` model file
        with no knobs stores them, or the network's own keys) into :attr:`main`."""
        self.main.load_state_dict({k[4:] if k.startswith("net.") else k: v for k, v in state.items()})

    def training_stages(self, total_steps: int) -> list[Stage]:
        """The main network at p = (1, 0), then the tuning blocks at p = (0, 1), 50/50 (all the
        steps to the tuning blocks with ``pretrained_main``)."""
        return two_stages(total_steps, parameters_of("main"), parameters_of("tuning"), names=("main", "tuning"),
                          endpoints=ENDPOINTS, skip_first=self.config.pretrained_main)
