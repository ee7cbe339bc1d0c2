"""What the six baselines share: config fields, the ResNet topology, p handling, stages.

Every baseline keeps its objective-1 network as a plain :class:`~tunableconv.models.ResNet`
(``num_params=0``), so the main network is, by construction, the same topology as the
tunable model (head conv, N ResBlocks, body conv + long residual, optional upsampler, tail
conv, input residual) and can be compared against a plain ResNet tensor for tensor. A
method adds its own modules next to it and, where it must act between blocks, walks the
same ``head`` / ``body`` / ``body_tail`` / ``upsampler`` / ``tail`` modules with
:func:`run_resnet`.

Knobs. The knob count ``num_params`` and domain ``domain`` come from the task (the trainer's
task fills them in; the defaults, 2 on the simplex, are denoising's). The five methods with
one control value α (DNI, AdaFM, CFSNet, Dynamic-Net, FTN) support the two knob spaces that
are one path between two objectives:

- 2 knobs on the simplex, p = (1 − α, α): α = p[..., 1], the stages train at (1, 0) then (0, 1);
- 1 knob on the cube, p = (α,): α = p[..., 0], the stages train at (0,) then (1,).

CResMD takes the whole p (any count, either domain) or, as published, the degradation levels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ...errors import InvalidParamsError
from ...nn.params import _is_symbolic, check_domain, check_params
from ..resnet import ResNet, ResNetConfig

NUM_PARAMS = 2  # the default knob count (denoising: p = (p_obj1, p_obj2), alpha = p[..., 1])

#: the knob spaces of the one-control-value methods: (num_params, domain) -> (index of alpha in p, p at alpha = 0, p at alpha = 1)
ALPHA_SPACES: dict[tuple[int, str], tuple[int, tuple[float, ...], tuple[float, ...]]] = {
    (2, "simplex"): (1, (1.0, 0.0), (0.0, 1.0)),
    (1, "cube"): (0, (0.0,), (1.0,)),
}


@dataclass
class BaselineConfig:
    """Backbone fields every baseline shares (same meaning and defaults as :class:`ResNetConfig`),
    and the task's knob count and domain."""

    in_channels: int = 3
    out_channels: int = 3
    channels: int = 64
    num_blocks: int = 16
    kernel_size: int = 3
    input_residual: bool = True
    upscale: int = 1
    num_params: int = NUM_PARAMS
    domain: str = "simplex"
    #: the main network is trained already (loaded from a plain ResNet's model file, e.g. the
    #: L1 network of super-resolution: :meth:`Baseline.load_main`): the first training stage is
    #: skipped and every step goes to the second
    pretrained_main: bool = False


def _no_op(model: nn.Module) -> None:
    return None


@dataclass(frozen=True)
class Stage:
    """One training stage of a baseline.

    Attributes:
        name: a short label for logs.
        steps: optimiser steps in this stage; a model's stages sum to the requested total.
        p: the fixed p every sample gets in this stage (e.g. ``(1.0, 0.0)``), or ``None``:
            draw p per sample (as the tunable model is trained).
        trainable: ``trainable(model)`` -> the parameters the optimiser updates in this
            stage; every other parameter stays frozen.
        on_start: ``on_start(model)``, run once when the stage begins (before the optimiser
            is built), e.g. DNI copies network A into network B.

    The trainer calls :meth:`begin` at the start of every stage (also one with 0 steps),
    builds a fresh optimiser on the list it returns, and trains ``steps`` steps.
    """

    name: str
    steps: int
    p: tuple[float, ...] | None
    trainable: Callable[[nn.Module], list[nn.Parameter]]
    on_start: Callable[[nn.Module], None] = _no_op

    def begin(self, model: nn.Module) -> list[nn.Parameter]:
        """Run :attr:`on_start`, freeze all but :attr:`trainable` (``requires_grad``), return those."""
        with torch.no_grad():
            self.on_start(model)
        params = self.trainable(model)
        keep = {id(q) for q in params}
        for q in model.parameters():
            q.requires_grad_(id(q) in keep)
        return params


def parameters_of(*names: str, exclude: bool = False) -> Callable[[nn.Module], list[nn.Parameter]]:
    """``trainable`` for a :class:`Stage`: the parameters of the named submodules.

    With ``exclude=True``: every parameter *not* in the named submodules.
    """

    def trainable(model: nn.Module) -> list[nn.Parameter]:
        chosen = {id(q) for n in names for q in getattr(model, n).parameters()}
        return [q for q in model.parameters() if (id(q) in chosen) != exclude]

    return trainable


def two_stages(
    total_steps: int,
    first: Callable[[nn.Module], list[nn.Parameter]],
    second: Callable[[nn.Module], list[nn.Parameter]],
    second_start: Callable[[nn.Module], None] = _no_op,
    names: tuple[str, str] = ("objective 1", "objective 2"),
    endpoints: tuple[tuple[float, ...], tuple[float, ...]] = ((1.0, 0.0), (0.0, 1.0)),
    skip_first: bool = False,
) -> list[Stage]:
    """The usual two-stage schedule, split 50/50 (stage 1 takes the odd step, if any).

    Stage 1 trains ``first`` at p = ``endpoints[0]`` (alpha = 0; default (1, 0)); stage 2
    trains ``second`` at p = ``endpoints[1]`` (alpha = 1; default (0, 1)) with everything
    else frozen. ``skip_first`` (a pretrained main network): stage 2 alone, all the steps.
    """
    total_steps = int(total_steps)
    if skip_first:
        return [Stage(names[1], max(1, total_steps), tuple(endpoints[1]), second, second_start)]
    if total_steps < 2:
        raise ValueError(f"a two-stage baseline needs at least 2 training steps, got {total_steps}")
    half = total_steps // 2
    return [
        Stage(names[0], total_steps - half, tuple(endpoints[0]), first),
        Stage(names[1], half, tuple(endpoints[1]), second, second_start),
    ]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (each shared tensor once).

    For the cost table: everything a model file stores and inference needs (DNI counts both
    networks, the two-branch methods both branches).
    """
    return sum(q.numel() for q in model.parameters() if q.requires_grad or not trainable_only)


def plain_resnet(cfg: BaselineConfig) -> ResNet:
    """The fixed (``num_params=0``) ResNet with the backbone size (and upscale) of ``cfg``."""
    return ResNet(ResNetConfig(
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, channels=cfg.channels,
        num_blocks=cfg.num_blocks, kernel_size=cfg.kernel_size, num_params=0,
        input_residual=cfg.input_residual, upscale=cfg.upscale,
    ))


def resnet_receptive_field(num_blocks: int, kernel_size: int, upscale: int = 1, extra_convs: int = 0,
                           extra_radius: int = 0) -> int:
    r"""Receptive-field radius, in input pixels, of the :class:`~tunableconv.models.ResNet` topology.

    With r = ⌊k/2⌋: the head, the 2N block convs and the body conv run at the input's
    resolution (2N + 2 convs, plus ``extra_convs`` more of radius r and ``extra_radius``
    pixels of other input-resolution layers, e.g. AdaFM's depthwise filters); the upsampler's
    stage j conv at scale 2^j (one conv at scale 1 for ×3) and the tail at scale s count
    r / scale each. The bilinear input residual of a ×s model reaches 1 input pixel.
    Radius = ⌈(2N + 2 + extra_convs)·r + extra_radius + Σ r / scale⌉ (scale 1: (2N + 3)·r + …).
    """
    r = kernel_size // 2
    total = (2 * num_blocks + 2 + extra_convs) * r + extra_radius
    stages = {1: [], 2: [1], 3: [1], 4: [1, 2], 8: [1, 2, 4]}[upscale]
    total += sum(r / s for s in stages) + r / upscale
    return max(math.ceil(total), 1 if upscale > 1 else 0)


def run_resnet(net: ResNet, x: Tensor, body: Callable[[Tensor], Tensor], long_scale: Tensor | None = None) -> Tensor:
    """``net``'s forward with its residual blocks replaced by ``body``.

    ``y = tail(up(f + s ⊙ body_tail(body(f)))) + skip(x)`` with ``f = head(x)``; ``s`` is
    ``long_scale`` (1 when None), ``up`` the upsampler (identity at scale 1) and ``skip`` the
    input residual (x, bilinearly upscaled for a ×s backbone). ``run_resnet(net, x, net.body)``
    equals ``net(x)`` exactly.
    """
    feat = net.head(x)
    res = net.body_tail(body(feat))
    feat = feat + (res if long_scale is None else long_scale * res)
    feat = net.upsampler(feat)
    out = net.tail(feat)
    if net.config.input_residual:
        scale = net.config.upscale
        skip = x if scale == 1 else nn.functional.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
        if skip.shape[1] == out.shape[1]:
            out = out + skip
    return out


def with_tuning_blocks(blocks: Iterable[nn.Module], tuning: nn.ModuleDict, alpha: Tensor) -> Callable[[Tensor], Tensor]:
    """Dynamic-Net's body: ``blocks`` in turn, and after block j with a tuning block
    ``tuning[str(j)]``, ``z ← z + α·T_j(z)`` (α broadcastable over the features)."""

    def body(z: Tensor) -> Tensor:
        for j, block in enumerate(blocks):
            z = block(z)
            if str(j) in tuning:
                z = z + alpha * tuning[str(j)](z)
        return z

    return body


def spatial(v: Tensor) -> Tensor:
    """A per-sample scalar ``()``/``(B,)`` -> shape broadcastable over ``(B, C, H, W)``."""
    return v.reshape(-1, 1, 1, 1) if v.dim() == 1 else v


def all_zero(alpha: Tensor) -> bool:
    """True when every alpha is 0 (a shortcut that skips dead branches; never while tracing)."""
    return not _is_symbolic(alpha) and not bool(alpha.any())


def per_alpha(x: Tensor, alpha: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``fn(x_group, a)`` once per distinct alpha, results put back in batch order.

    For the methods whose *weights* depend on alpha (DNI, FTN). A shared alpha ``()`` or a
    per-sample ``(B,)`` whose entries are all equal (the fixed-p training stages) costs one
    call; k distinct values cost k calls on the matching sub-batches.
    """
    if alpha.dim() == 0:
        return fn(x, alpha)
    values, inverse = torch.unique(alpha, return_inverse=True)
    if values.numel() == 1:
        return fn(x, values[0])
    outs, order = [], []
    for i, a in enumerate(values):
        idx = (inverse == i).nonzero().squeeze(1)
        outs.append(fn(x.index_select(0, idx), a))
        order.append(idx)
    return torch.cat(outs)[torch.argsort(torch.cat(order))]


class Baseline(nn.Module):
    """Common base: config handling, the knob space, ``arguments()``, p validation, α.

    ``one_control_value``: the method has one control value α and needs one of
    :data:`ALPHA_SPACES` (CResMD does not). ``conditioned_on``: what ``model(x, ·)`` takes
    besides x, ``"p"`` or (CResMD with ``condition="degradation"``) ``"condition"``.
    """

    architecture: ClassVar[str] = ""
    config_class: ClassVar[type[BaselineConfig]] = BaselineConfig
    one_control_value: ClassVar[bool] = True
    conditioned_on: str = "p"

    def __init__(self, config: BaselineConfig | None, kwargs: dict) -> None:
        super().__init__()
        if config is not None and kwargs:
            raise TypeError("pass either a config or keyword arguments, not both")
        cfg = config if config is not None else self.config_class(**kwargs)
        if not isinstance(cfg, self.config_class):
            raise TypeError(f"{type(self).__name__} takes a {self.config_class.__name__}, got {type(cfg).__name__}")
        if cfg.channels < 1 or cfg.num_blocks < 1:
            raise ValueError(f"channels and num_blocks must be >= 1, got {cfg.channels}, {cfg.num_blocks}")
        if cfg.kernel_size < 1 or cfg.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd, got {cfg.kernel_size}")
        check_domain(cfg.domain)
        if cfg.num_params < 1:
            raise ValueError(f"num_params must be >= 1 (a rival is controllable), got {cfg.num_params}")
        if self.one_control_value and (cfg.num_params, cfg.domain) not in ALPHA_SPACES:
            raise ValueError(f"{self.architecture} has one control value: it needs 2 knobs on the simplex or 1 on the cube, "
                             f"got {cfg.num_params} on the {cfg.domain}")
        self.config = cfg

    @property
    def num_params(self) -> int:
        """The length of what ``model(x, ·)`` takes: the knob count P (the condition size
        for a model conditioned on the degradation)."""
        return self.config.num_params

    @property
    def domain(self) -> str:
        return self.config.domain

    def arguments(self) -> dict:
        """The constructor arguments (the config as a dict), JSON-serialisable."""
        return asdict(self.config)

    def receptive_field(self) -> int:
        """Receptive-field radius in input pixels (the ResNet's; methods adding depth override)."""
        c = self.config
        return resnet_receptive_field(c.num_blocks, c.kernel_size, c.upscale)

    def check(self, p: Tensor | Iterable[float] | None, x: Tensor) -> Tensor:
        """Validate p (``(P,)`` or ``(B, P)``, values in [0, 1]) and return it as a tensor like ``x``."""
        if p is None:
            raise InvalidParamsError(f"{self.architecture} is controllable: call it as model(x, p) with {self.num_params} value(s)")
        return check_params(p, self.num_params, x.shape[0], device=x.device, dtype=x.dtype)

    def endpoints(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """p at α = 0 and at α = 1 (the two training stages' settings)."""
        return ALPHA_SPACES[(self.config.num_params, self.config.domain)][1:]

    def alpha(self, p: Tensor | Iterable[float] | None, x: Tensor) -> Tensor:
        """The method's control value α (p[..., 1] on the 2-simplex, p[..., 0] on the 1-cube):
        ``()`` shared or ``(B,)`` per sample."""
        index = ALPHA_SPACES[(self.config.num_params, self.config.domain)][0]
        return self.check(p, x)[..., index]

    #: the attributes holding a plain ResNet of the backbone size that :meth:`load_main` fills
    main_networks: ClassVar[tuple[str, ...]] = ("main",)
    #: the architecture of the model file ``model.init`` may name for :meth:`load_main`
    main_architecture: ClassVar[str] = "resnet"

    def load_main(self, state: dict[str, Tensor]) -> None:
        """Load a plain ResNet's state dict (the backbone size) into every main network."""
        for name in self.main_networks:
            getattr(self, name).load_state_dict(state)

    def training_stages(self, total_steps: int) -> list[Stage]:
        raise NotImplementedError
