"""Tunable layers: P·E weight sets in one tensor, mixed by aggregation weights from p.

Every layer is called as ``layer(x, p)`` with p explicit. p has shape ``(P,)`` (shared by the
batch: weights are mixed once and one ordinary op runs), ``(B, P)`` (per sample:
batch-as-groups op) or, for the spatial layers, a knob map ``(P, H, W)`` / ``(B, P, H, W)``
(the op once per weight set, outputs mixed per pixel; the map is resampled to the output
size). See :mod:`tunableconv.nn.functional` for the maths and :mod:`tunableconv.nn.params`
for the shapes. ``domain="cube"`` gives P independent knobs (K = 1 + P·E weight sets: a base
and one direction per knob, see :mod:`tunableconv.nn.mapping`).

For models you did not write, use :func:`tunableconv.nn.make_tunable` instead.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.modules.utils import _pair

from ..errors import InvalidParamsError
from . import functional as TF
from .mapping import MappingKind, ParamMap
import torch.nn.functional as F

from .params import ParamsLike, _is_symbolic, check_params, map_to_channels_last


class _TunableMixin:
    """Shared logic: validating p and turning it into aggregation weights."""

    param_map: ParamMap

    @property
    def num_params(self) -> int:
        return self.param_map.num_params

    @property
    def expansion(self) -> int:
        return self.param_map.expansion

    @property
    def num_weight_sets(self) -> int:
        return self.param_map.num_weights

    @property
    def domain(self) -> str:
        return self.param_map.domain

    def shared_mix(self, p: ParamsLike) -> tuple[Tensor, Tensor | None] | None:
        """The kernel and bias mixed at a shared p, cached for inference; None when not applicable.

        Outside autograd (``torch.no_grad()`` / inference mode) the mix of the last shared p is
        kept per layer, keyed by p's values and the parameters' storage and version counters,
        so a model run again and again at one setting (tiles of a large image, a batch of
        photos, a held slider) validates p and mixes the kernels once. Any in-place update of
        the weights (an optimiser step, ``load_state_dict``) bumps a version and invalidates it.
        """
        if torch.is_grad_enabled() or not isinstance(p, Tensor) or p.dim() != 1 or _is_symbolic(p):
            return None
        params = [self.weight, self.bias, self.param_map.weight, self.param_map.bias]  # type: ignore[attr-defined]
        key = (tuple(p.tolist()), str(p.device)) + tuple((q.data_ptr(), q._version) for q in params if q is not None)
        cache = self.__dict__.get("_shared_mix")
        if cache is not None and cache[0] == key:
            return cache[1]
        agg = self.aggregation_weights(p)
        mixed = (TF.mix(self.weight, agg), TF.mix(self.bias, agg) if self.bias is not None else None)  # type: ignore[attr-defined]
        self.__dict__["_shared_mix"] = (key, mixed)
        return mixed

    def aggregation_weights(self, p: ParamsLike | None, batch_size: int | None = None, allow_map: bool = False) -> Tensor:
        """Aggregation weights ``(K,)``, ``(B, K)`` or, for a knob map, ``(B, K, H, W)``."""
        if p is None:
            raise InvalidParamsError(f"{type(self).__name__} needs interactive parameters: call it as layer(x, p)")
        p = check_params(p, self.num_params, batch_size, allow_map=allow_map)
        p = p.to(device=self.weight.device)  # type: ignore[attr-defined]
        if p.dim() <= 2:
            return self.param_map(p)
        if p.dim() == 3:
            p = p.unsqueeze(0)
        return self.param_map(map_to_channels_last(p)).permute(0, 3, 1, 2)


def _init_like_torch(weight_sets: Tensor, bias_sets: Tensor | None, domain: str = "simplex") -> None:
    """Initialise each weight set as the matching torch layer initialises its weight.

    torch uses kaiming_uniform(a=sqrt(5)) on the weight and U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    on the bias, with fan_in computed on one weight (not on the stacked tensor). On the cube
    only the base (set 0) is initialised so; the knob directions start at zero.
    """
    with torch.no_grad():
        sets = 1 if domain == "cube" else weight_sets.shape[0]
        if domain == "cube":
            weight_sets[1:].zero_()
            if bias_sets is not None:
                bias_sets[1:].zero_()
        for k in range(sets):
            nn.init.kaiming_uniform_(weight_sets[k], a=math.sqrt(5))
            if bias_sets is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight_sets[k])
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                nn.init.uniform_(bias_sets[k], -bound, bound)


def fill_sets(sets: Tensor, value: Tensor, domain: str) -> None:
    """Start weight sets from a plain tensor: every set a copy (simplex), or base = value and
    directions = 0 (cube). Either way the layer computes ``value``'s op for every p."""
    with torch.no_grad():
        if domain == "cube":
            sets[0].copy_(value)
            sets[1:].zero_()
        else:
            sets.copy_(value.unsqueeze(0).expand_as(sets))


def _fill_from(layer: nn.Module, plain: nn.Module) -> nn.Module:
    """Copy a plain layer's weight and bias into ``layer``'s weight sets (see :func:`fill_sets`)."""
    fill_sets(layer.weight, plain.weight, layer.domain)
    if plain.bias is not None:
        fill_sets(layer.bias, plain.bias, layer.domain)
    return layer


def _bake_into(layer: "_TunableMixin", plain: nn.Module, p: ParamsLike) -> nn.Module:
    """Set ``plain``'s weight and bias to ``layer``'s mix at one shared setting ``p``."""
    agg = layer.aggregation_weights(check_params(p, layer.num_params))
    if agg.dim() != 1:
        raise InvalidParamsError("to_plain needs one shared setting p of shape (P,)")
    with torch.no_grad():
        plain.weight.copy_(TF.mix(layer.weight, agg))
        if layer.bias is not None:
            plain.bias.copy_(TF.mix(layer.bias, agg))
    return plain


class TunableConv2d(_TunableMixin, nn.Module):
    r"""2-D convolution whose kernel is a p-dependent mix of K = P·E kernels.

    .. math::
        y = \Big(\sum_k w_k(p)\, W_k\Big) \star x + \sum_k w_k(p)\, b_k,
        \qquad w(p) = A p + c \;\text{(affine)} \;\text{or}\; p \;\text{(identity)}

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
        padding_mode: as :class:`torch.nn.Conv2d` (``padding="same"``, depthwise included).
        num_params: P, the number of interactive parameters.
        mapping: ``"affine"`` (learned, default) or ``"identity"``.
        expansion: E weight sets per parameter (affine map only).
        domain: ``"simplex"`` (P objectives mixed, K = P·E) or ``"cube"`` (P independent
            knobs, K = 1 + P·E).

    Shapes:
        x ``(B, C_in, H, W)``, p ``(P,)``, ``(B, P)``, ``(P, H, W)`` or ``(B, P, H, W)``
        -> ``(B, C_out, H', W')``.
        ``weight``: ``(K, C_out, C_in/groups, kh, kw)``; ``bias``: ``(K, C_out)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        num_params: int,
        stride=1,
        padding=0,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        mapping: MappingKind = "affine",
        expansion: int = 1,
        domain: str = "simplex",
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"unknown padding_mode {padding_mode!r}")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
            if padding == "same" and any(s != 1 for s in _pair(stride)):
                raise ValueError("padding='same' is not supported for strided convolutions")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.padding_mode = padding_mode
        self.param_map = ParamMap(num_params, expansion, mapping, domain)
        k = self.param_map.num_weights
        self.weight = nn.Parameter(torch.empty(k, out_channels, in_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(k, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _init_like_torch(self.weight, self.bias, self.domain)
        self.param_map.reset_parameters()

    def forward(self, x: Tensor, p: ParamsLike) -> Tensor:
        mixed = self.shared_mix(p)
        if mixed is not None:
            xp, padding = TF._pad_for_conv(x, self.kernel_size, self.padding, self.dilation, self.padding_mode)
            return F.conv2d(xp, mixed[0], mixed[1], self.stride, padding, self.dilation, self.groups)
        agg = self.aggregation_weights(p, x.shape[0], allow_map=True)
        return TF.tunable_conv2d(
            x, self.weight, self.bias, agg, self.stride, self.padding, self.dilation, self.groups, self.padding_mode
        )

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, num_params: int, mapping: MappingKind = "affine", expansion: int = 1,
                  domain: str = "simplex") -> "TunableConv2d":
        """A tunable layer that computes ``conv`` for every p (see :func:`fill_sets`)."""
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, num_params, conv.stride, conv.padding,
            conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode, mapping, expansion, domain,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        return _fill_from(layer, conv)

    def to_plain(self, p: ParamsLike) -> nn.Conv2d:
        """A plain :class:`torch.nn.Conv2d` that computes this layer at a fixed shared p."""
        conv = nn.Conv2d(
            self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding, self.dilation,
            self.groups, self.bias is not None, self.padding_mode,
        ).to(device=self.weight.device, dtype=self.weight.dtype)
        return _bake_into(self, conv, p)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, num_params={self.num_params}"
        if self.stride != (1, 1):
            s += f", stride={self.stride}"
        if self.padding not in ((0, 0), "valid"):
            s += f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode!r}"
        return s + f", mapping={self.param_map.kind!r}, expansion={self.expansion}"


class TunableConvTranspose2d(_TunableMixin, nn.Module):
    r"""2-D transposed convolution with a p-dependent mix of K = P·E kernels.

    Args: as :class:`torch.nn.ConvTranspose2d` plus ``num_params``, ``mapping``, ``expansion``.

    Shapes:
        x ``(B, C_in, H, W)``, p ``(P,)`` or ``(B, P)`` -> ``(B, C_out, H', W')``.
        ``weight``: ``(K, C_in, C_out/groups, kh, kw)``; ``bias``: ``(K, C_out)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        num_params: int,
        stride=1,
        padding=0,
        output_padding=0,
        groups: int = 1,
        bias: bool = True,
        dilation=1,
        mapping: MappingKind = "affine",
        expansion: int = 1,
        domain: str = "simplex",
    ) -> None:
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"in_channels ({in_channels}) and out_channels ({out_channels}) must be divisible by groups ({groups})")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.output_padding = _pair(output_padding)
        self.dilation = _pair(dilation)
        self.groups = groups
        self.param_map = ParamMap(num_params, expansion, mapping, domain)
        k = self.param_map.num_weights
        self.weight = nn.Parameter(torch.empty(k, in_channels, out_channels // groups, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(k, out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _init_like_torch(self.weight, self.bias, self.domain)
        self.param_map.reset_parameters()

    def forward(self, x: Tensor, p: ParamsLike) -> Tensor:
        mixed = self.shared_mix(p)
        if mixed is not None:
            return F.conv_transpose2d(x, mixed[0], mixed[1], self.stride, self.padding, self.output_padding,
                                      self.groups, self.dilation)
        agg = self.aggregation_weights(p, x.shape[0], allow_map=True)
        return TF.tunable_conv_transpose2d(
            x, self.weight, self.bias, agg, self.stride, self.padding, self.output_padding, self.groups, self.dilation
        )

    @classmethod
    def from_conv(
        cls, conv: nn.ConvTranspose2d, num_params: int, mapping: MappingKind = "affine", expansion: int = 1,
        domain: str = "simplex",
    ) -> "TunableConvTranspose2d":
        """A tunable layer that computes ``conv`` for every p (see :func:`fill_sets`)."""
        if conv.padding_mode != "zeros":
            raise ValueError("ConvTranspose2d only supports padding_mode='zeros'")
        layer = cls(
            conv.in_channels, conv.out_channels, conv.kernel_size, num_params, conv.stride, conv.padding,
            conv.output_padding, conv.groups, conv.bias is not None, conv.dilation, mapping, expansion, domain,
        ).to(device=conv.weight.device, dtype=conv.weight.dtype)
        return _fill_from(layer, conv)

    def to_plain(self, p: ParamsLike) -> nn.ConvTranspose2d:
        """A plain :class:`torch.nn.ConvTranspose2d` at a fixed shared p."""
        conv = nn.ConvTranspose2d(
            self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding, self.output_padding,
            self.groups, self.bias is not None, self.dilation,
        ).to(device=self.weight.device, dtype=self.weight.dtype)
        return _bake_into(self, conv, p)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, num_params={self.num_params}, "
            f"stride={self.stride}, padding={self.padding}, output_padding={self.output_padding}, groups={self.groups}, "
            f"mapping={self.param_map.kind!r}, expansion={self.expansion}"
        )


class TunableLinear(_TunableMixin, nn.Module):
    r"""Linear layer with a p-dependent mix of K = P·E weight matrices.

    Shapes:
        shared p ``(P,)``: x ``(*, in)`` -> ``(*, out)``;
        per-sample p ``(B, P)``: x ``(B, *, in)`` -> ``(B, *, out)``;
        knob map ``(B, P, H, W)``: x ``(B, H, W, in)`` (channels last) -> ``(B, H, W, out)``.
        ``weight``: ``(K, out, in)``; ``bias``: ``(K, out)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        num_params: int,
        bias: bool = True,
        mapping: MappingKind = "affine",
        expansion: int = 1,
        domain: str = "simplex",
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.param_map = ParamMap(num_params, expansion, mapping, domain)
        k = self.param_map.num_weights
        self.weight = nn.Parameter(torch.empty(k, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(k, out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        _init_like_torch(self.weight, self.bias, self.domain)
        self.param_map.reset_parameters()

    def forward(self, x: Tensor, p: ParamsLike) -> Tensor:
        mixed = self.shared_mix(p)
        if mixed is not None:
            return F.linear(x, mixed[0], mixed[1])
        agg = self.aggregation_weights(p, x.shape[0] if x.dim() > 1 else None, allow_map=x.dim() == 4)
        return TF.tunable_linear(x, self.weight, self.bias, agg)

    @classmethod
    def from_linear(cls, lin: nn.Linear, num_params: int, mapping: MappingKind = "affine", expansion: int = 1,
                    domain: str = "simplex") -> "TunableLinear":
        """A tunable layer that computes ``lin`` for every p (see :func:`fill_sets`)."""
        layer = cls(lin.in_features, lin.out_features, num_params, lin.bias is not None, mapping, expansion, domain).to(
            device=lin.weight.device, dtype=lin.weight.dtype
        )
        return _fill_from(layer, lin)

    def to_plain(self, p: ParamsLike) -> nn.Linear:
        """A plain :class:`torch.nn.Linear` at a fixed shared p."""
        lin = nn.Linear(self.in_features, self.out_features, self.bias is not None).to(
            device=self.weight.device, dtype=self.weight.dtype
        )
        return _bake_into(self, lin, p)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, num_params={self.num_params}, "
            f"bias={self.bias is not None}, mapping={self.param_map.kind!r}, expansion={self.expansion}"
        )


class TunableParameter(_TunableMixin, nn.Module):
    r"""Any tensor made tunable: K = P·E copies mixed by p (layer scales, attention bias tables).

    Args:
        init: the initial value ``(*S)`` (copied into every set) or a shape.
        num_params, mapping, expansion: as the other tunable layers.

    Call ``param(p)``: returns ``(*S)`` for a shared p and ``(B, *S)`` for a per-sample p —
    the caller broadcasts the leading B. A bare tensor has no spatial layout, so knob maps
    are refused here (for a converted model, :func:`make_tunable` handles maps per layer).
    """

    def __init__(
        self,
        init: Tensor | tuple[int, ...] | list[int],
        num_params: int,
        mapping: MappingKind = "affine",
        expansion: int = 1,
        domain: str = "simplex",
    ) -> None:
        super().__init__()
        self.param_map = ParamMap(num_params, expansion, mapping, domain)
        k = self.param_map.num_weights
        if isinstance(init, Tensor):
            data = init.detach().clone().unsqueeze(0).repeat((k,) + (1,) * init.dim())
        else:
            data = torch.zeros((k,) + tuple(init))
        self.weight = nn.Parameter(data)

    @property
    def shape(self) -> torch.Size:
        return self.weight.shape[1:]

    def forward(self, p: ParamsLike) -> Tensor:
        return TF.mix(self.weight, self.aggregation_weights(p))

    def extra_repr(self) -> str:
        return f"shape={tuple(self.shape)}, num_params={self.num_params}, mapping={self.param_map.kind!r}, expansion={self.expansion}"


def load_plain_weights(model: nn.Module, state_dict: "dict[str, Tensor]") -> list[str]:
    r"""Start a tunable model from the weights of its plain (fixed) twin, in place.

    Every entry of ``state_dict`` must name an entry of ``model.state_dict()``: one of the
    same shape is copied; the weight or bias of a tunable layer (``(K, *shape)``) gets the
    plain ``shape`` tensor in all its K sets (:func:`fill_sets`), so the layer then computes
    the plain layer for every p. The model's entries that ``state_dict`` lacks must be the
    p maps of tunable layers (``param_map.*``, which keep their initialisation).

    Use: ESRGAN-style training that starts the perceptual phase from the L1 network, or
    fine-tuning a pretrained fixed network into a tunable one.

    Returns:
        The names filled from a plain tensor (the tunable weight sets).

    Raises:
        ValueError: a name the model lacks, a shape that fits neither way, or a model entry
            (other than a p map) that ``state_dict`` does not give.
    """
    own = model.state_dict()
    owners = {name: module for name, module in model.named_modules()}
    unknown = [k for k in state_dict if k not in own]
    if unknown:
        raise ValueError(f"the plain weights hold {len(unknown)} entries the model lacks, e.g. {unknown[0]!r}")
    missing = [k for k in own if k not in state_dict and ".param_map." not in f".{k}"]
    if missing:
        raise ValueError(f"the plain weights lack {len(missing)} entries of the model, e.g. {missing[0]!r}")
    filled: list[str] = []
    with torch.no_grad():
        for key, value in state_dict.items():
            target = own[key]
            owner_name, _, leaf = key.rpartition(".")
            owner = owners.get(owner_name)
            if tuple(target.shape) == tuple(value.shape):
                target.copy_(value)
            elif isinstance(owner, _TunableMixin) and leaf in ("weight", "bias") and tuple(target.shape[1:]) == tuple(value.shape):
                fill_sets(getattr(owner, leaf), value.to(target.dtype), owner.domain)
                filled.append(key)
            else:
                raise ValueError(f"{key}: the plain weights have shape {tuple(value.shape)}, the model "
                                 f"{tuple(target.shape)}")
    return filled
