"""Make any model tunable, and call it as ``model(x, p)``.

:func:`make_tunable` swaps the ``nn.Conv2d`` / ``nn.ConvTranspose2d`` / ``nn.Linear`` layers of
a model for tunable ones whose weight sets all start as copies of the original weights, with
the affine map initialised so that its weights sum to one for every p. A freshly converted
pretrained model therefore computes exactly what the original did, for every p; fine-tuning
starts from the pretrained behaviour, and because the rows of the affine map differ, the
weight sets receive different gradients and become different knobs.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .layers import TunableConv2d, TunableConvTranspose2d, TunableLinear, TunableParameter
from .mapping import MappingKind
from .params import ParamsLike, check_params, tunable_params

Selector = Sequence[str | type[nn.Module]] | Callable[[str, nn.Module], bool] | None

TUNABLE_TYPES = (TunableConv2d, TunableConvTranspose2d, TunableLinear, TunableParameter)


def _matches(selector: Selector, name: str, module: nn.Module) -> bool:
    if callable(selector) and not isinstance(selector, (list, tuple)):
        return bool(selector(name, module))
    for item in selector or ():
        if isinstance(item, str):
            if fnmatch.fnmatchcase(name, item) or name == item or name.startswith(item + "."):
                return True
        elif isinstance(item, type) and isinstance(module, item):
            return True
    return False


def _convert_one(module: nn.Module, num_params: int, mapping: MappingKind, expansion: int) -> nn.Module | None:
    # exact types only: subclasses (e.g. LazyLinear, quantised layers) may change forward
    if type(module) is nn.Conv2d:
        return TunableConv2d.from_conv(module, num_params, mapping, expansion)
    if type(module) is nn.ConvTranspose2d:
        return TunableConvTranspose2d.from_conv(module, num_params, mapping, expansion)
    if type(module) is nn.Linear:
        return TunableLinear.from_linear(module, num_params, mapping, expansion)
    return None


class TunableModel(nn.Module):
    """A model called as ``model(x, p, *args, **kwargs)``.

    Validates p once (shape ``(P,)`` or ``(B, P)``, values in [0, 1], no NaN), makes it the
    current interactive parameters for the duration of the call, and runs the wrapped module
    unchanged. Safe to call from several threads with different p at the same time.

    Args:
        module: the network, containing tunable layers.
        num_params: P.
        knobs: optional names of the P parameters (shown by tools, stored in weight metadata).
    """

    def __init__(self, module: nn.Module, num_params: int, knobs: Sequence[str] | None = None) -> None:
        super().__init__()
        if knobs is not None and len(knobs) != num_params:
            raise ValueError(f"{len(knobs)} knob names for {num_params} parameters")
        self.module = module
        self.num_params = num_params
        self.knobs = list(knobs) if knobs is not None else [f"p{i}" for i in range(num_params)]

    def forward(self, x: Tensor, p: ParamsLike, *args: Any, **kwargs: Any) -> Any:
        p = check_params(p, self.num_params, x.shape[0] if x.dim() > 1 else None, device=x.device)
        with tunable_params(p):
            return self.module(x, *args, **kwargs)

    def tunable_layers(self) -> list[tuple[str, nn.Module]]:
        """(name, layer) of every tunable layer inside."""
        return [(n, m) for n, m in self.module.named_modules() if isinstance(m, TUNABLE_TYPES)]

    def freeze(self, p: ParamsLike) -> nn.Module:
        """A plain copy of the wrapped module with every tunable layer baked at the shared ``p``.

        The copy has ordinary ``nn.Conv2d`` / ``nn.Linear`` layers, the cost of the original
        network, and is called without p. :class:`TunableParameter` layers cannot be baked
        and raise ``TypeError``.
        """
        p = check_params(p, self.num_params)
        if p.dim() != 1:
            raise ValueError("freeze needs one shared setting p of shape (P,)")
        frozen = copy.deepcopy(self.module)
        memo: dict[int, nn.Module] = {}
        for parent in list(frozen.modules()):
            for name, child in list(parent.named_children()):
                if isinstance(child, TunableParameter):
                    raise TypeError("a TunableParameter cannot be frozen into a plain layer")
                if isinstance(child, (TunableConv2d, TunableConvTranspose2d, TunableLinear)):
                    if id(child) not in memo:
                        memo[id(child)] = child.to_plain(p)
                    setattr(parent, name, memo[id(child)])
        return frozen


def make_tunable(
    model: nn.Module,
    num_params: int,
    mapping: MappingKind = "affine",
    expansion: int = 1,
    include: Selector = None,
    exclude: Selector = None,
    knobs: Sequence[str] | None = None,
    inplace: bool = False,
) -> TunableModel:
    """Replace the Conv2d / ConvTranspose2d / Linear layers of ``model`` by tunable ones.

    Args:
        model: any ``nn.Module``; nested containers and shared submodules are handled (a
            layer used in two places becomes one tunable layer used in both).
        num_params: P, the number of interactive parameters.
        mapping: ``"affine"`` (default) preserves the model's outputs for every p;
            ``"identity"`` (w = p) preserves them only for p on the simplex (Σ p = 1).
        expansion: weight sets per parameter.
        include: convert only layers whose qualified name matches one of these names /
            glob patterns (a name also selects everything below it) or whose type is one of
            these types; or a predicate ``f(name, module) -> bool``. None: all layers.
        exclude: same forms; wins over ``include``.
        knobs: optional names of the P parameters.
        inplace: modify ``model`` itself instead of a deep copy.

    Returns:
        A :class:`TunableModel` called as ``model(x, p)``. Layers inside
        ``nn.MultiheadAttention`` are left alone (it reads their weights directly).

    Raises:
        ValueError: nothing was converted.
    """
    if num_params < 1:
        raise ValueError(f"num_params must be >= 1, got {num_params}")
    if not inplace:
        model = copy.deepcopy(model)
    root = _convert_one(model, num_params, mapping, expansion)
    if root is not None:  # the model is itself a single layer
        return TunableModel(root, num_params, knobs)
    names: dict[int, str] = {}
    skip: set[int] = set()
    for name, mod in model.named_modules():
        names.setdefault(id(mod), name)
        if isinstance(mod, nn.MultiheadAttention):
            skip.update(id(m) for m in mod.modules())
    converted: dict[int, nn.Module] = {}
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if id(child) in converted:
                setattr(parent, child_name, converted[id(child)])
                continue
            if id(child) in skip:
                continue
            qual = names.get(id(child), child_name)
            if include is not None and not _matches(include, qual, child):
                continue
            if exclude is not None and _matches(exclude, qual, child):
                continue
            new = _convert_one(child, num_params, mapping, expansion)
            if new is not None:
                converted[id(child)] = new
                setattr(parent, child_name, new)
    if not converted:
        raise ValueError("make_tunable found no Conv2d, ConvTranspose2d or Linear layer to convert")
    return TunableModel(model, num_params, knobs)
