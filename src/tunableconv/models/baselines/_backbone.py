"""What the six baselines share: config fields, the ResNet topology, p handling, stages.

Every baseline keeps its objective-1 network as a plain :class:`~tunableconv.models.ResNet`
(``num_params=0``), so the main network is, by construction, the same topology as the
tunable model (head conv, N ResBlocks, body conv + long residual, tail conv, input
residual) and can be compared against a plain ResNet tensor for tensor. A method adds its
own modules next to it and, where it must act between blocks, walks the same
``head`` / ``body`` / ``body_tail`` / ``tail`` modules with :func:`run_resnet`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ...errors import InvalidParamsError
from ...nn.params import _is_symbolic, check_params
from ..resnet import ResNet, ResNetConfig

NUM_PARAMS = 2  # p = (p_obj1, p_obj2); the methods' own control value is alpha = p[..., 1]


@dataclass
class BaselineConfig:
    """Backbone fields every baseline shares (same meaning and defaults as :class:`ResNetConfig`)."""

    in_channels: int = 3
    out_channels: int = 3
    channels: int = 64
    num_blocks: int = 16
    kernel_size: int = 3
    input_residual: bool = True


def _no_op(model: nn.Module) -> None:
    return None


@dataclass(frozen=True)
class Stage:
    """One training stage of a baseline.

    Attributes:
        name: a short label for logs.
        steps: optimiser steps in this stage; a model's stages sum to the requested total.
        p: the fixed ``(p_obj1, p_obj2)`` every sample gets in this stage, or ``None``:
            draw p per sample from the simplex (as the tunable model is trained).
        trainable: ``trainable(model)`` -> the parameters the optimiser updates in this
            stage; every other parameter stays frozen.
        on_start: ``on_start(model)``, run once when the stage begins (before the optimiser
            is built), e.g. DNI copies network A into network B.

    The trainer calls :meth:`begin` at the start of every stage (also one with 0 steps),
    builds a fresh optimiser on the list it returns, and trains ``steps`` steps.
    """

    name: str
    steps: int
    p: tuple[float, float] | None
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
) -> list[Stage]:
    """The usual two-stage schedule, split 50/50 (stage 1 takes the odd step, if any).

    Stage 1 trains ``first`` at p = (1, 0) (alpha = 0); stage 2 trains ``second`` at
    p = (0, 1) (alpha = 1) with everything else frozen.
    """
    total_steps = int(total_steps)
    if total_steps < 2:
        raise ValueError(f"a two-stage baseline needs at least 2 training steps, got {total_steps}")
    half = total_steps // 2
    return [
        Stage(names[0], total_steps - half, (1.0, 0.0), first),
        Stage(names[1], half, (0.0, 1.0), second, second_start),
    ]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of ``model`` (each shared tensor once).

    For the cost table: everything a model file stores and inference needs (DNI counts both
    networks, the two-branch methods both branches).
    """
    return sum(q.numel() for q in model.parameters() if q.requires_grad or not trainable_only)


def plain_resnet(cfg: BaselineConfig) -> ResNet:
    """The fixed (``num_params=0``) ResNet with the backbone size of ``cfg``."""
    return ResNet(ResNetConfig(
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, channels=cfg.channels,
        num_blocks=cfg.num_blocks, kernel_size=cfg.kernel_size, num_params=0,
        input_residual=cfg.input_residual,
    ))


def run_resnet(net: ResNet, x: Tensor, body: Callable[[Tensor], Tensor], long_scale: Tensor | None = None) -> Tensor:
    """``net``'s forward (no upsampler) with its residual blocks replaced by ``body``.

    ``y = tail(f + s ⊙ body_tail(body(f))) + x`` with ``f = head(x)``; ``s`` is
    ``long_scale`` (1 when None). ``run_resnet(net, x, net.body)`` equals ``net(x)`` exactly.
    """
    feat = net.head(x)
    res = net.body_tail(body(feat))
    feat = feat + (res if long_scale is None else long_scale * res)
    out = net.tail(feat)
    if net.config.input_residual and out.shape[1] == x.shape[1]:
        out = out + x
    return out


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
    """Common base: config handling, ``num_params = 2``, ``arguments()``, p validation."""

    architecture: ClassVar[str] = ""
    config_class: ClassVar[type[BaselineConfig]] = BaselineConfig
    num_params: int = NUM_PARAMS

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
        self.config = cfg

    def arguments(self) -> dict:
        """The constructor arguments (the config as a dict), JSON-serialisable."""
        return asdict(self.config)

    def check(self, p: Tensor | Iterable[float] | None, x: Tensor) -> Tensor:
        """Validate p (``(2,)`` or ``(B, 2)``, values in [0, 1]) and return it as a tensor like ``x``."""
        if p is None:
            raise InvalidParamsError(f"{self.architecture} is controllable: call it as model(x, p) with p = (p_obj1, p_obj2)")
        return check_params(p, NUM_PARAMS, x.shape[0], device=x.device, dtype=x.dtype)

    def alpha(self, p: Tensor | Iterable[float] | None, x: Tensor) -> Tensor:
        """The method's control value alpha = p[..., 1]: ``()`` shared or ``(B,)`` per sample."""
        return self.check(p, x)[..., 1]

    def training_stages(self, total_steps: int) -> list[Stage]:
        raise NotImplementedError
