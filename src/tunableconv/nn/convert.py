r"""Make any model tunable, and call it as ``model(x, p)``.

:func:`make_tunable` turns **every floating-point parameter** of the selected submodules into
K weight sets mixed by p — convolution and linear weights and biases, the affine parameters
of LayerNorm / GroupNorm / InstanceNorm / BatchNorm, bare ``nn.Parameter``\ s (layer scales,
relative-position bias tables), ``nn.MultiheadAttention``'s projections. Buffers (running
statistics) stay shared. Each layer (each module that owns parameters directly) gets its own
p -> w map. Nothing is skipped silently: :meth:`TunableModel.conversion_report` lists every
parameter, tunable or not, and why not.

How p reaches the layers (the one mechanism): the network keeps its own, unchanged
``forward``. On a call ``model(x, p)`` the tunable parameters are mixed from p and
substituted into a per-call copy of the module structure (a few microseconds per submodule;
it shares every tensor with the model), then that copy runs:

- shared p ``(P,)``: each parameter is mixed once, W̄ = Σ_k w_k(p) W_k, and the module runs
  as the plain network (the inference and export path);
- per-sample p ``(B, P)``, ``per_sample="vmap"`` (default): the same function under
  :func:`torch.func.vmap` over the batch, so each sample runs with its own parameters. Any
  forward that treats samples independently works, whatever it does with the batch inside
  (window partition, reshapes, sequence-first attention); vmap turns convolutions with
  per-sample kernels into one grouped convolution. ``per_sample="loop"``: one shared-p call
  per distinct setting (needed with activation checkpointing, see :func:`make_tunable`).
  Batch-coupled layers in training mode (BatchNorm) are not per-sample by nature;
- knob map ``(P, H, W)`` / ``(B, P, H, W)``: every tunable layer runs once per weight set
  and its K outputs are mixed per output pixel, y(i,j) = Σ_k w_k(p(i,j)) y_k(i,j), with the
  map resampled (bilinear, align_corners=False) to the layer's output size. For layers
  whose output is affine in their parameters (convolutions, linear layers, norm affine
  parameters, layer scales) this is exactly the per-pixel mix of the parameters. It needs
  every tunable layer to be a leaf (no tunable layer inside it) with a spatial output:
  ``(B, C, H, W)``, or ``(B, H, W, C)`` for ``nn.Linear`` / ``nn.LayerNorm``; otherwise
  :class:`~tunableconv.InvalidParamsError` says which layer stops it (attention, whose
  tokens have lost their pixel positions, and bare parameters read by a parent module).

Nothing is stored in global or thread state, and nothing is swapped back after the call:
two threads calling one model with different p never mix; activation checkpointing
recomputes in the backward pass with the very parameters of the forward pass (the copy
lives as long as the graph refers to it); under ``torch.compile(fullgraph=True)`` and
``torch.export`` the substitution goes through :func:`torch.func.functional_call`, so p is
an ordinary graph input and ONNX keeps working. Hand-written models use the explicit layers
(:class:`TunableConv2d` …) and pass p themselves.

Initialisation keeps a converted pretrained model's output for every p: on the simplex every
weight set starts as a copy of the original and the affine map's weights sum to 1; on the
cube the base set is the original and every knob direction is 0.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.utils._pytree import tree_map

from ..errors import InvalidParamsError
from . import functional as TF
from .layers import TunableConv2d, TunableConvTranspose2d, TunableLinear, TunableParameter, fill_sets
from .mapping import MappingKind, ParamMap
from .params import ParamsLike, check_domain, check_params, map_to_channels_last, params_kind, resample_map
from .trunk import sweep_outputs

Selector = Sequence[str | type[nn.Module]] | Callable[[str, nn.Module], bool] | None

TUNABLE_TYPES = (TunableConv2d, TunableConvTranspose2d, TunableLinear, TunableParameter)
_CHANNELS_LAST_TYPES = (nn.Linear, nn.LayerNorm)


@dataclass(frozen=True)
class ConversionEntry:
    """One parameter of a converted model: whether it became tunable and, if not, why."""

    name: str
    shape: tuple[int, ...]
    tunable: bool
    reason: str = ""


class ConversionReport(list):
    """The list of :class:`ConversionEntry`; ``str(report)`` is a readable table."""

    @property
    def tunable(self) -> list[ConversionEntry]:
        return [e for e in self if e.tunable]

    @property
    def fixed(self) -> list[ConversionEntry]:
        return [e for e in self if not e.tunable]

    def __str__(self) -> str:
        width = max([len(e.name) for e in self] + [9])
        lines = [f"{'parameter':<{width}}  {'shape':<18} status", "-" * (width + 40)]
        for e in self:
            status = "tunable" if e.tunable else f"fixed: {e.reason}"
            lines.append(f"{e.name:<{width}}  {str(list(e.shape)):<18} {status}")
        n_t = sum(1 for e in self if e.tunable)
        lines.append(f"{n_t} of {len(self)} parameters tunable")
        return "\n".join(lines)


def _matches(selector: Selector, name: str, module: nn.Module, ancestors: Sequence[tuple[str, nn.Module]] = ()) -> bool:
    """Does ``selector`` pick ``module`` (qualified ``name``) or one of its ``ancestors``?"""
    if callable(selector) and not isinstance(selector, (list, tuple)):
        return bool(selector(name, module))
    chain = [(name, module), *ancestors]
    for item in selector or ():
        for n, m in chain:
            if isinstance(item, str):
                if fnmatch.fnmatchcase(n, item) or n == item:
                    return True
            elif isinstance(item, type) and isinstance(m, item):
                return True
    return False


class TunableSlot(nn.Module):
    """The weight sets of one layer's tunable parameters and that layer's p -> w map.

    ``sets[name]`` has shape ``(K, *shape of the original parameter)``.
    """

    def __init__(self, params: dict[str, Tensor], num_params: int, mapping: MappingKind, expansion: int, domain: str) -> None:
        super().__init__()
        self.param_map = ParamMap(num_params, expansion, mapping, domain)
        k = self.param_map.num_weights
        self.sets = nn.ParameterDict()
        for local, value in params.items():
            sets = nn.Parameter(torch.empty((k,) + tuple(value.shape), dtype=value.dtype, device=value.device))
            fill_sets(sets, value.detach(), domain)
            self.sets[local] = sets

    def mixed(self, agg: Tensor) -> dict[str, Tensor]:
        """Each parameter mixed by shared (or, under vmap, per-sample) weights ``agg (K,)``."""
        return {local: TF.mix(s, agg) for local, s in self.sets.items()}

    def weight_set(self, k: int) -> dict[str, Tensor]:
        return {local: s[k] for local, s in self.sets.items()}


def _slot_key(owner: str) -> str:
    return owner.replace(".", "/") or "/"


def _full(owner: str, local: str) -> str:
    return f"{owner}.{local}" if owner else local


_HOOK_DICTS = ("_forward_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called",
               "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs")


def _clone_structure(module: nn.Module, memo: dict[int, nn.Module] | None = None) -> nn.Module:
    """A copy of the module tree that shares every tensor (parameters, buffers) with it.

    Each submodule is copied shallowly with its own parameter, buffer, submodule and hook
    dictionaries, so assigning a tensor or registering a hook on the copy leaves the original
    untouched; shared submodules stay shared.
    """
    memo = {} if memo is None else memo
    if id(module) in memo:
        return memo[id(module)]
    new = copy.copy(module)
    d = new.__dict__
    d["_parameters"] = dict(module._parameters)
    d["_buffers"] = dict(module._buffers)
    for name in _HOOK_DICTS:
        if name in d:
            d[name] = type(d[name])(d[name])
    memo[id(module)] = new
    d["_modules"] = {k: (_clone_structure(v, memo) if v is not None else None) for k, v in module._modules.items()}
    return new


class _Method(nn.Module):
    """Call a method other than ``forward`` of a module through ``functional_call``."""

    def __init__(self, module: nn.Module, method: str) -> None:
        super().__init__()
        self.m = module
        self.method = method

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.m, self.method)(*args, **kwargs)


def _is_tracing() -> bool:
    is_exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return torch.compiler.is_compiling() or is_exporting() or torch.jit.is_tracing()


class TunableModel(nn.Module):
    """A converted model, called as ``model(x, p, *args, **kwargs)`` (made by :func:`make_tunable`).

    Attributes:
        module: the network; its tunable parameters live in :attr:`tunable` (in ``module``
            they are non-persistent placeholders showing weight set 0).
        tunable: one :class:`TunableSlot` per layer, keyed by the layer's name with ``/``
            for ``.`` (``"/"`` for the root module).
        num_params, domain, knobs: the knob space.
    """

    def __init__(self, module: nn.Module, num_params: int, domain: str, knobs: Sequence[str] | None,
                 slots: dict[str, TunableSlot], report: ConversionReport,
                 aliases: dict[tuple[str, str], list[tuple[str, str]]], per_sample: str = "vmap") -> None:
        super().__init__()
        if knobs is not None and len(knobs) != num_params:
            raise ValueError(f"{len(knobs)} knob names for {num_params} parameters")
        if per_sample not in ("vmap", "loop"):
            raise ValueError(f"per_sample must be 'vmap' or 'loop', got {per_sample!r}")
        self.per_sample = per_sample
        self._aliases = aliases
        self.module = module
        self.num_params = num_params
        self.domain = check_domain(domain)
        self.knobs = list(knobs) if knobs is not None else [f"p{i}" for i in range(num_params)]
        self.tunable = nn.ModuleDict({_slot_key(owner): slot for owner, slot in slots.items()})
        self._owners = list(slots)
        self._report = report

    # -- substitution ------------------------------------------------------------------------
    def _bind(self, values: dict[str, Tensor]) -> nn.Module:
        """A per-call copy of the module structure with the given tunable parameter values.

        ``values`` maps each layer's name + ``"."`` + parameter name (as in :attr:`tunable`'s
        owners) to a tensor. The copy shares every other tensor with :attr:`module`, costs a
        few microseconds per submodule, and lives as long as something (for instance the
        autograd graph of activation checkpointing) refers to it, so a recomputation in the
        backward pass sees the same parameters as the forward pass did.
        """
        clone = _clone_structure(self.module)
        for (owner, local), value in values.items():
            for alias_owner, alias_local in self._aliases[(owner, local)]:
                clone.get_submodule(alias_owner)._buffers[alias_local] = value
        return clone

    def _slot(self, owner: str) -> TunableSlot:
        return self.tunable[_slot_key(owner)]  # type: ignore[return-value]

    def _mixed(self, p: Tensor) -> dict[tuple[str, str], Tensor]:
        out: dict[tuple[str, str], Tensor] = {}
        for owner in self._owners:
            slot = self._slot(owner)
            for local, value in slot.mixed(slot.param_map(p)).items():
                out[(owner, local)] = value
        return out

    def mixed_parameters(self, p: ParamsLike) -> dict[str, Tensor]:
        """Every tunable parameter, by qualified name in :attr:`module`, mixed at shared p ``(P,)``."""
        p = check_params(p, self.num_params)
        if p.dim() != 1:
            raise InvalidParamsError("mixed_parameters needs one shared setting p of shape (P,)")
        return {_full(o, n): v for (o, n), v in self._mixed(p).items()}

    def _call_shared(self, method: str, args: tuple, kwargs: dict, p: Tensor) -> Any:
        if _is_tracing():  # compile / export trace functionally: substitute in place, restored after
            params = {_full(o, n): v for (o, n), v in self._mixed(p).items()}
            target = self.module if method == "forward" else _Method(self.module, method)
            prefix = "" if method == "forward" else "m."
            return functional_call(target, {prefix + k: v for k, v in params.items()}, args, kwargs,
                                   strict=False, tie_weights=True)
        return getattr(self._bind(self._mixed(p)), method)(*args, **kwargs)

    def _run(self, method: str, args: tuple, kwargs: dict, p: Tensor) -> Any:
        kind = params_kind(p)
        if kind == "shared":
            return self._call_shared(method, args, kwargs, p)
        if kind == "map":
            return self._run_map(method, args, kwargs, p if p.dim() == 4 else p.unsqueeze(0))
        if self.per_sample == "loop":
            return self._run_loop(method, args, kwargs, p)

        def one(p_i: Tensor, first: Any) -> Any:
            first = tree_map(lambda t: t.unsqueeze(0) if isinstance(t, Tensor) else t, first)
            out = self._call_shared(method, (first,) + args[1:], kwargs, p_i)
            return tree_map(lambda t: t.squeeze(0) if isinstance(t, Tensor) else t, out)

        try:
            return vmap(one, in_dims=(0, 0), randomness="different")(p, args[0])
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise RuntimeError(
                f"per-sample p runs the model under torch.func.vmap, which failed: {first} — layers that mix "
                "the samples of a batch (BatchNorm in training mode) cannot take per-sample p; use shared p, "
                "or make_tunable(..., per_sample='loop')") from err

    def _run_loop(self, method: str, args: tuple, kwargs: dict, p: Tensor) -> Any:
        """Per-sample p as one shared-p call per distinct setting, results put back in batch order."""
        if _is_tracing():
            raise InvalidParamsError("per_sample='loop' cannot be traced; use per_sample='vmap' to compile or export")
        values, inverse = torch.unique(p, dim=0, return_inverse=True)
        first = args[0]
        pieces, order = [], []
        for i in range(values.shape[0]):
            idx = (inverse == i).nonzero().squeeze(1)
            part = tree_map(lambda t: t.index_select(0, idx) if isinstance(t, Tensor) else t, first)
            pieces.append(self._call_shared(method, (part,) + args[1:], kwargs, values[i]))
            order.append(idx)
        back = torch.argsort(torch.cat(order))
        return tree_map(lambda *ts: torch.cat(ts).index_select(0, back), *pieces)

    def _run_map(self, method: str, args: tuple, kwargs: dict, pmap: Tensor) -> Any:
        problem = self._map_problem()
        if problem:
            raise InvalidParamsError(problem)
        clone = self._bind({key: s for key, s in self._weight_set(0).items()})
        guard = {"inside": False}

        def make_hook(owner: str):
            slot = self._slot(owner)

            def hook(module: nn.Module, inputs: tuple, hook_kwargs: dict, output: Any) -> Any:
                if guard["inside"]:
                    return None
                if not isinstance(output, Tensor) or output.dim() != 4:
                    shape = tuple(output.shape) if isinstance(output, Tensor) else type(output).__name__
                    raise InvalidParamsError(
                        f"knob maps need every tunable layer to output a (B, C, H, W) map; layer '{owner or '<root>'}' "
                        f"({type(module).__name__}) outputs {shape}")
                outs = [output]
                guard["inside"] = True
                try:
                    for k in range(1, slot.param_map.num_weights):
                        outs.append(functional_call(module, slot.weight_set(k), inputs, hook_kwargs, strict=False))
                finally:
                    guard["inside"] = False
                channels_last = isinstance(module, _CHANNELS_LAST_TYPES)
                size = output.shape[1:3] if channels_last else output.shape[-2:]
                pm = resample_map(pmap.to(output.dtype), size)
                agg = slot.param_map(map_to_channels_last(pm)).permute(0, 3, 1, 2)
                return TF.mix_outputs(outs, agg, channels_last)

            return hook

        for owner in self._owners:
            clone.get_submodule(owner).register_forward_hook(make_hook(owner), with_kwargs=True)
        if method == "forward":  # through __call__, so that hooks on the root fire too
            return clone(*args, **kwargs)
        return getattr(clone, method)(*args, **kwargs)

    def _weight_set(self, k: int) -> dict[tuple[str, str], Tensor]:
        return {(o, n): v for o in self._owners for n, v in self._slot(o).weight_set(k).items()}

    def _map_problem(self) -> str:
        owners = set(self._owners)
        for owner in self._owners:
            inner = [o for o in owners if o != owner and (owner == "" or o.startswith(owner + "."))]
            if inner:
                return (f"knob maps need every tunable layer to be a leaf; layer '{owner or '<root>'}' "
                        f"({type(self.module.get_submodule(owner)).__name__}) has tunable layers inside ('{inner[0]}')")
        return ""

    def _apply(self, fn, recurse: bool = True):  # .to(), .half(): keep the placeholders views of set 0
        out = super()._apply(fn, recurse)
        for owner in self._owners:
            for local, s in self._slot(owner).sets.items():
                for alias_owner, alias_local in self._aliases[(owner, local)]:
                    self.module.get_submodule(alias_owner)._buffers[alias_local] = s.detach()[0]
        return out

    # -- public API -------------------------------------------------------------------------
    def forward(self, x: Tensor, p: ParamsLike, *args: Any, **kwargs: Any) -> Any:
        """x ``(B, C, H, W)``; p ``(P,)``, ``(B, P)``, ``(P, H, W)`` or ``(B, P, H, W)``."""
        size = tuple(x.shape[-2:]) if x.dim() == 4 else None
        p = check_params(p, self.num_params, x.shape[0] if x.dim() > 1 else None, size=size, allow_map=True,
                         device=x.device)
        return self._run("forward", (x,) + args, kwargs, p)

    @property
    def has_trunk(self) -> bool:
        """Whether the wrapped network declares a p-independent trunk (see :mod:`tunableconv.nn.trunk`)."""
        return all(callable(getattr(self.module, n, None)) for n in ("trunk", "rest"))

    def sweep(self, x: Tensor, ps: ParamsLike, chunk: int = 1) -> Tensor:
        """Outputs for N settings ``ps (N, P)``: ``(N, B, ...)``, equal to N calls ``model(x, ps[i])``.

        With a declared trunk it runs once and only the rest runs per setting; ``chunk``
        settings share one batched call (per-sample p); ``chunk=1`` runs one shared-p call each.
        """
        ps = check_params(ps, self.num_params, device=x.device)
        if ps.dim() != 2:
            raise InvalidParamsError(f"sweep takes N settings as ps of shape (N, P), got {tuple(ps.shape)}")
        if self.has_trunk:
            return sweep_outputs(self.module.trunk, lambda s, p: self._run("rest", (s,), {}, p), x, ps, chunk)
        return sweep_outputs(None, lambda s, p: self._run("forward", (s,), {}, p), x, ps, chunk)

    def conversion_report(self) -> ConversionReport:
        """Every parameter of the original model: tunable or not, and why not."""
        return self._report

    def tunable_layers(self) -> list[tuple[str, TunableSlot]]:
        """(layer name, its :class:`TunableSlot`) for every layer with tunable parameters."""
        return [(owner, self._slot(owner)) for owner in self._owners]

    def freeze(self, p: ParamsLike) -> nn.Module:
        """A plain copy of the wrapped module with every tunable parameter baked at shared ``p``.

        The copy is an ordinary ``nn.Module`` with the original parameter names, the cost of
        the original network, and is called without p.
        """
        p = check_params(p, self.num_params)
        if p.dim() != 1:
            raise ValueError("freeze needs one shared setting p of shape (P,)")
        frozen = copy.deepcopy(self.module)
        with torch.no_grad():
            for owner in self._owners:
                slot = self._slot(owner)
                device = next(iter(slot.sets.values())).device
                for local, value in slot.mixed(slot.param_map(p.to(device))).items():
                    prm = nn.Parameter(value.detach().clone())
                    for alias_owner, alias_local in self._aliases[(owner, local)]:
                        alias = frozen.get_submodule(alias_owner)
                        del alias._buffers[alias_local]
                        alias.register_parameter(alias_local, prm)
        return frozen

    def extra_repr(self) -> str:
        n = len(self._report.tunable)
        return f"num_params={self.num_params}, domain={self.domain!r}, knobs={self.knobs}, tunable parameters={n}/{len(self._report)}"


def make_tunable(
    model: nn.Module,
    num_params: int,
    *,
    domain: str = "simplex",
    include: Selector = None,
    exclude: Selector = None,
    mapping: MappingKind = "affine",
    expansion: int = 1,
    knobs: Sequence[str] | None = None,
    per_sample: str = "vmap",
    inplace: bool = False,
) -> TunableModel:
    """Make every floating-point parameter of ``model`` (or of the selected part) tunable.

    Args:
        model: any ``nn.Module``. Shared submodules and tied parameters stay shared (one
            set of weight sets). A network that declares a trunk (``trunk_modules``, a list
            of submodule names, plus ``trunk(x)`` / ``rest(state)`` methods) keeps the trunk
            fixed and gets a fast :meth:`TunableModel.sweep`.
        num_params: P, the number of knobs.
        domain: ``"simplex"`` (P objectives mixed; K = P·E weight sets per parameter) or
            ``"cube"`` (P independent knobs; K = 1 + P·E: a base and a direction per knob).
        include: make tunable only the parameters of submodules whose qualified name matches
            one of these names / glob patterns (a name also selects everything below it; a
            pattern may also match a parameter's full name, e.g. ``"*.bias"``), or whose type
            (or an ancestor's type) is one of these types; or a predicate
            ``f(name, module) -> bool`` on the owning module. None: everything.
        exclude: the same forms; wins over ``include``.
        mapping: ``"affine"`` (default, learned) or ``"identity"`` (w = p on the simplex,
            w = (1, p) on the cube; E = 1). Both preserve the model's output at conversion
            on the cube; on the simplex ``"identity"`` preserves it only for Σ p = 1.
        expansion: E weight sets per knob.
        knobs: optional names of the P knobs.
        per_sample: how per-sample p ``(B, P)`` runs: ``"vmap"`` (default; one batched call,
            kernels per sample as one grouped convolution) or ``"loop"`` (one shared-p call
            per distinct setting). Use ``"loop"`` with activation checkpointing
            (``torch.utils.checkpoint``): functorch cannot recompute a checkpointed region
            outside the vmap that made it. Shared p and knob maps work with checkpointing
            either way.
        inplace: modify ``model`` itself instead of a deep copy.

    Returns:
        A :class:`TunableModel`; :meth:`~TunableModel.conversion_report` says what became
        tunable and what stayed fixed.

    Raises:
        ValueError: no parameter was made tunable, or a bad argument.
    """
    if num_params < 1:
        raise ValueError(f"num_params must be >= 1, got {num_params}")
    check_domain(domain)
    if not inplace:
        model = copy.deepcopy(model)
    trunk_names = [str(n) for n in getattr(model, "trunk_modules", ()) or ()]
    modules = dict(model.named_modules())
    report = ConversionReport()
    chosen: dict[str, dict[str, Tensor]] = {}
    seen: dict[int, str] = {}
    first_use: dict[int, tuple[str, str]] = {}
    aliases: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for owner, mod in modules.items():
        ancestors = []
        parts = owner.split(".") if owner else []
        for i in range(len(parts) - 1, -1, -1):
            a = ".".join(parts[:i])
            ancestors.append((a, modules[a]))
        for local, prm in list(mod._parameters.items()):
            if prm is None:
                continue
            name = _full(owner, local)
            if id(prm) in seen:
                key = first_use[id(prm)]
                tied = key in aliases
                if tied:
                    aliases[key].append((owner, local))
                why = f"tied to {seen[id(prm)]}" + (" (shares its weight sets)" if tied else "")
                report.append(ConversionEntry(name, tuple(prm.shape), tied, "" if tied else why))
                continue
            seen[id(prm)] = name
            first_use[id(prm)] = (owner, local)
            in_layer = isinstance(mod, TUNABLE_TYPES + (ParamMap,)) or any(isinstance(m, TUNABLE_TYPES) for _, m in ancestors)
            with_name = [(name, mod)] + [(owner, mod)] + ancestors
            reason = ""
            if in_layer:
                reason = "inside an explicit tunable layer (it takes p as an argument)"
            elif not prm.is_floating_point():
                reason = f"not floating point ({prm.dtype})"
            elif any(owner == t or owner.startswith(t + ".") for t in trunk_names):
                reason = "in the declared p-independent trunk"
            elif exclude is not None and _sel(exclude, with_name):
                reason = "excluded"
            elif include is not None and not _sel(include, with_name):
                reason = "not selected by include"
            report.append(ConversionEntry(name, tuple(prm.shape), not reason, reason))
            if not reason:
                chosen.setdefault(owner, {})[local] = prm
                aliases[(owner, local)] = [(owner, local)]
    if not chosen:
        raise ValueError("make_tunable found no parameter to make tunable (see the include/exclude selection)")
    slots: dict[str, TunableSlot] = {}
    for owner, params in chosen.items():
        mod = modules[owner]
        slot = TunableSlot(params, num_params, mapping, expansion, domain)
        slots[owner] = slot
        for local in params:
            for alias_owner, alias_local in aliases[(owner, local)]:
                alias = modules[alias_owner]
                del alias._parameters[alias_local]
                alias.register_buffer(alias_local, slot.sets[local].detach()[0], persistent=False)
    return TunableModel(model, num_params, domain, knobs, slots, report, aliases, per_sample)


def _sel(selector: Selector, chain: list[tuple[str, nn.Module]]) -> bool:
    """``selector`` against a parameter: its full name, its owner, the owner's ancestors."""
    if callable(selector) and not isinstance(selector, (list, tuple)):
        _, owner_name = chain[0][0], chain[1][0]
        return bool(selector(owner_name, chain[1][1]))
    return _matches(selector, chain[0][0], chain[0][1], chain[1:])
