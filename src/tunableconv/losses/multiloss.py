r"""Parametric multi-loss: the same p that drives the network mixes the objectives.

With P objectives ``L_1 … L_P`` (each per-sample, ``(B,)``), static weights ``w_i`` and
interactive parameters ``p`` (``(B, P)`` per sample or ``(P,)`` shared by the batch)::

    loss = (1/B) Σ_b Σ_i p[b, i] · w_i · L_i(output_b, batch_b)

Usage in a training step::

    crit = ParametricMultiLoss([Fidelity("l1"), NoisePreservation(beta=0.9)])
    p = sampler(B, generator)                 # (B, P), e.g. UniformSimplex(2)
    out = model(batch["noisy"], p)
    loss, terms = crit(out, batch, p)         # scalar tensor, {name: float} for logging
    loss.backward(); opt.step()
    for disc, d_opt in zip(crit.discriminators(), d_opts):   # GAN objectives only
        d_opt.zero_grad()
        crit.discriminator_loss(disc, out.detach(), batch).backward()
        d_opt.step()

On the **cube** (``domain="cube"``: P independent knobs, each in [0, 1], not a mixture) the
objectives are the targets of the ``2^P`` corners of ``[0, 1]^P`` and p weighs them
multilinearly (:func:`cube_corner_weights`): corner k has the knob values ``c_i = bit i of
k`` and the weight ``Π_i (p_i if c_i = 1 else 1 − p_i)``; the weights are >= 0 and sum to 1,
and at a corner p only that corner's objective counts. P = 2, objectives in the order
(0, 0), (1, 0), (0, 1), (1, 1)::

    loss = mean_b Σ_k a_k(p_b) · w_k · L_k[b],
    a(p) = ((1 − p_1)(1 − p_2), p_1 (1 − p_2), (1 − p_1) p_2, p_1 p_2)

The call returns a :class:`MultiLossResult`, which unpacks as ``(total, terms)`` and also
carries the per-objective per-sample values; the last result is kept in
:attr:`ParametricMultiLoss.last` (``last_terms`` for the logging dict).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..errors import InputError
from ..nn.params import check_params
from .gan import AdversarialObjective
from .objectives import Batch, Objective, PixelObjective
from .vgg import FeatureExtractor

__all__ = ["ParametricMultiLoss", "BlendedTargetLoss", "CompositeObjective", "MultiLossResult", "cube_corner_weights",
           "LOSS_DOMAINS"]

#: the domains of p a multi-loss understands: mixing weights (simplex) or independent knobs (cube)
LOSS_DOMAINS = ("simplex", "cube")


def cube_corner_weights(p: Tensor) -> Tensor:
    r"""Multilinear weights of the ``2^P`` corners of the cube at p.

    Corner k (``0 <= k < 2^P``) has the knob values ``c_i = (k >> i) & 1`` (knob 0 is the
    lowest bit: for P = 2 the order is (0, 0), (1, 0), (0, 1), (1, 1)) and the weight

    .. math:: a_k(p) = \prod_{i=1}^{P} \bigl(c_i\, p_i + (1 - c_i)(1 - p_i)\bigr).

    The weights are >= 0 for p in [0, 1]^P and sum to 1; ``Σ_k a_k(p) t_k`` is the
    multilinear (P = 2: bilinear) interpolation of corner values ``t_k``, and equals ``t_k``
    at corner k.

    Args:
        p: ``(P,)`` or ``(B, P)``.

    Returns:
        ``(2^P,)`` or ``(B, 2^P)``, p's dtype and device.
    """
    single = p.dim() == 1
    q = p.unsqueeze(0) if single else p
    a = torch.ones(q.shape[0], 1, dtype=q.dtype, device=q.device)
    for i in range(q.shape[1]):  # corners so far (bit i = 0) then the same with bit i = 1
        pi = q[:, i : i + 1]
        a = torch.cat([a * (1 - pi), a * pi], dim=1)
    return a[0] if single else a


def _objective_name(obj: nn.Module, index: int) -> str:
    name = getattr(obj, "name", None)
    return str(name) if isinstance(name, str) and name else f"objective{index}"


class CompositeObjective(Objective):
    r"""A weighted sum of objectives used as one: ``L[b] = Σ_k c_k · L_k[b]``.

    Example: the perceptual–adversarial objective of SR,
    ``CompositeObjective([(PerceptualObjective(), 1.0), (AdversarialObjective(), 0.005)])``.

    Args:
        parts: ``(objective, weight)`` pairs, or a mapping ``{name: (objective, weight)}``.

    ``last_parts`` maps each part's name to its detached, unweighted per-sample values.
    """

    name = "composite"

    def __init__(
        self,
        parts: Sequence[tuple[nn.Module, float]] | Mapping[str, tuple[nn.Module, float]],
        name: str | None = None,
    ) -> None:
        super().__init__(name)
        items = list(parts.items()) if isinstance(parts, Mapping) else [
            (None, pair) for pair in parts
        ]
        if not items:
            raise InputError("a CompositeObjective needs at least one part")
        names: list[str] = []
        mods: list[nn.Module] = []
        coefs: list[float] = []
        for i, (nm, pair) in enumerate(items):
            try:
                obj, c = pair
            except (TypeError, ValueError):
                raise InputError(f"composite part {i} must be an (objective, weight) pair, got {pair!r}") from None
            if not isinstance(obj, nn.Module):
                raise InputError(f"composite part {i} is not an nn.Module: {obj!r}")
            names.append(nm if nm is not None else _objective_name(obj, i))
            mods.append(obj)
            coefs.append(float(c))
        self.part_names = _dedupe(names)
        self.parts = nn.ModuleList(mods)
        self.coefficients = coefs

    def forward(self, output: Tensor, batch: Batch) -> Tensor:
        total: Tensor | None = None
        parts: dict[str, Tensor] = {}
        for nm, obj, c in zip(self.part_names, self.parts, self.coefficients):
            v = _check_per_sample(obj(output, batch), output.shape[0], nm)
            parts[nm] = v.detach()
            total = c * v if total is None else total + c * v
        self.last_parts = parts
        assert total is not None
        return total

    def extra_repr(self) -> str:
        return ", ".join(f"{n}×{c:g}" for n, c in zip(self.part_names, self.coefficients))


def _dedupe(names: Sequence[str]) -> list[str]:
    """Make names unique by suffixing repeats with ``_2``, ``_3`` …"""
    seen: dict[str, int] = {}
    out = []
    for n in names:
        if n in seen:
            seen[n] += 1
            out.append(f"{n}_{seen[n]}")
        else:
            seen[n] = 1
            out.append(n)
    return out


def _check_per_sample(v: Tensor, batch_size: int, name: str) -> Tensor:
    if not isinstance(v, Tensor):
        raise TypeError(f"objective {name!r} returned {type(v).__name__}, not a tensor")
    if v.dim() == 2 and v.shape[1] == 1:
        v = v[:, 0]
    if tuple(v.shape) != (batch_size,):
        raise ValueError(f"objective {name!r} must return a per-sample loss of shape ({batch_size},), got {tuple(v.shape)}")
    return v


@dataclass
class MultiLossResult:
    """Result of :class:`ParametricMultiLoss`; unpacks as ``total, terms = result``.

    Attributes:
        total: the scalar loss to backpropagate, ``mean_b Σ_i p[b,i] w_i L_i[b]``.
        per_sample: ``(B, P)`` detached, unweighted ``L_i[b]`` (NaN for objectives skipped
            because their p column was all zero).
        p: the ``(B, P)`` mixing parameters used (after broadcasting).
        names: the P objective names.
        parts: detached per-sample values of the parts of composite objectives, keyed
            ``"<objective>.<part>"``.
        weighted_per_sample: ``(B, P)`` detached ``p[b,i] w_i L_i[b]`` (NaN where skipped).
    """

    total: Tensor
    per_sample: Tensor
    p: Tensor
    names: list[str]
    parts: dict[str, Tensor] = field(default_factory=dict)
    weighted_per_sample: Tensor | None = None

    @property
    def terms(self) -> dict[str, float]:
        """Batch means of the unweighted objective values (and composite parts), as floats,
        for logging; skipped objectives are left out."""
        keys = list(self.names) + list(self.parts)
        vals = torch.cat([self.per_sample.float().mean(0)] + [v.float().mean().reshape(1) for v in self.parts.values()])
        return {k: float(v) for k, v in zip(keys, vals.tolist()) if v == v}

    @property
    def weighted(self) -> Tensor:
        """``(P,)`` detached contribution of each objective to ``total`` (``mean_b p[b,i] w_i L_i[b]``)."""
        w = self.weighted_per_sample if self.weighted_per_sample is not None else self.per_sample * self.p
        return torch.nan_to_num(w).mean(0)

    def __iter__(self) -> Iterator:
        yield self.total
        yield self.terms


class ParametricMultiLoss(nn.Module):
    r"""``loss = (1/B) Σ_b Σ_i p[b, i] · w_i · L_i(output_b, batch_b)``.

    Args:
        objectives: the P objectives, a sequence or a mapping ``{name: objective}``. Each is
            called as ``obj(output, batch)`` and returns a per-sample ``(B,)`` loss.
        weights: the static ``w_i`` (default all 1).
        skip_zero: skip evaluating objective i when its mixing weight (``p[:, i]``; on the
            cube its corner weight) is all zero in the batch (it would contribute nothing); its
            logged value is then left out for that step.
        domain: ``"simplex"`` (default): objective i is weighted by ``p_i``, P = the number of
            objectives; ``"cube"``: the objectives are the ``2^P`` corners of [0, 1]^P, in the
            order of :func:`cube_corner_weights`, weighted by the corner weights ``a_k(p)``
            (P = log2 of the number of objectives).

    Call ``crit(output, batch, p)``:

    - ``output``: ``(B, C, H, W)`` network output (anything objectives accept);
    - ``batch``: dict with ``"clean"`` and task keys;
    - ``p``: ``(B, P)`` per sample, ``(P,)`` shared (broadcast to the batch), values in
      [0, 1]. ``None`` or a tensor with zero columns (a fixed network without knobs) means
      p = (1, …, 1): on the simplex every objective weighted by ``w_i`` alone, on the cube
      the corner (1, …, 1) alone.

    Returns a :class:`MultiLossResult` (unpacks as ``total, terms``), also kept in :attr:`last`.

    Raises:
        InvalidParamsError: p has a wrong shape, a wrong P or B, NaNs or values outside [0, 1].
    """

    def __init__(
        self,
        objectives: Sequence[nn.Module] | Mapping[str, nn.Module],
        weights: Sequence[float] | None = None,
        *,
        skip_zero: bool = True,
        domain: str = "simplex",
    ) -> None:
        super().__init__()
        if isinstance(objectives, Mapping):
            names, objs = [str(k) for k in objectives], list(objectives.values())
        else:
            objs = list(objectives)
            names = [_objective_name(o, i) for i, o in enumerate(objs)]
        if not objs:
            raise InputError("ParametricMultiLoss needs at least one objective")
        for i, o in enumerate(objs):
            if not isinstance(o, nn.Module):
                raise InputError(f"objective {i} is not an nn.Module: {o!r}")
        self.names: list[str] = _dedupe(names)
        self.objectives = nn.ModuleList(objs)
        w = [1.0] * len(objs) if weights is None else [float(x) for x in weights]
        if len(w) != len(objs):
            raise InputError(f"{len(objs)} objectives but {len(w)} weights")
        self.register_buffer("objective_weights", torch.tensor(w, dtype=torch.float32), persistent=False)
        self.skip_zero = bool(skip_zero)
        if domain not in LOSS_DOMAINS:
            raise InputError(f"the multi-loss domain must be one of {', '.join(LOSS_DOMAINS)}, got {domain!r}")
        n = len(objs)
        if domain == "cube" and (n < 2 or n & (n - 1)):
            raise InputError(f"a multi-loss on the cube needs 2^P objectives (one per corner, P >= 1), got {n}")
        self.domain = domain
        self.last: MultiLossResult | None = None

    @property
    def num_params(self) -> int:
        """P, the number of interactive parameters: the number of objectives on the simplex,
        log2 of it on the cube."""
        n = len(self.objectives)
        return n.bit_length() - 1 if self.domain == "cube" else n

    def mixing(self, p: Tensor) -> Tensor:
        """The weight of each objective at p ``(B, P)``: p itself on the simplex, the corner
        weights :func:`cube_corner_weights` ``(B, 2^P)`` on the cube."""
        return cube_corner_weights(p) if self.domain == "cube" else p

    @property
    def last_terms(self) -> dict[str, float]:
        """The logging dict of the last call (empty before the first)."""
        return self.last.terms if self.last is not None else {}

    # --- p ---------------------------------------------------------------------------------
    def _params(self, p: Tensor | Sequence[float] | None, batch_size: int, device: torch.device) -> Tensor:
        P = self.num_params
        if p is None or (isinstance(p, Tensor) and p.dim() >= 1 and p.shape[-1] == 0):
            return torch.ones(batch_size, P, device=device)
        t = check_params(p, num_params=P, batch_size=batch_size)
        t = t.to(device=device, dtype=torch.float32)
        return t.expand(batch_size, P) if t.dim() == 1 else t

    # --- forward ---------------------------------------------------------------------------
    def forward(self, output: Tensor, batch: Batch, p: Tensor | Sequence[float] | None = None) -> MultiLossResult:
        if not isinstance(batch, Mapping):
            raise InputError(f"batch must be a dict of tensors, got {type(batch).__name__}")
        B = output.shape[0]
        pp = self._params(p, B, output.device)
        mix = self.mixing(pp)  # (B, number of objectives)
        w = self.objective_weights.to(output.device)
        coef = mix * w
        per_sample = torch.full((B, len(self.objectives)), float("nan"), device=output.device)
        weighted = torch.full_like(per_sample, float("nan"))
        parts: dict[str, Tensor] = {}
        total: Tensor | None = None
        with contextlib.ExitStack() as stack:
            for vgg in {id(m): m for m in self.modules() if isinstance(m, FeatureExtractor)}.values():
                stack.enter_context(vgg.caching())
            for i, (name, obj) in enumerate(zip(self.names, self.objectives)):
                if self.skip_zero and not bool((mix[:, i] != 0).any()):
                    continue
                v = _check_per_sample(obj(output, batch), B, name).float()
                contrib = coef[:, i] * v
                per_sample[:, i] = v.detach()
                weighted[:, i] = contrib.detach()
                for pn, pv in (getattr(obj, "last_parts", None) or {}).items():
                    parts[f"{name}.{pn}"] = pv
                total = contrib.sum() if total is None else total + contrib.sum()
        if total is None:  # every objective skipped: a zero that still reaches the output
            total = (output * 0).sum().float()
        total = total / B
        res = MultiLossResult(total=total, per_sample=per_sample, p=pp.detach(), names=list(self.names), parts=parts,
                              weighted_per_sample=weighted)
        self.last = res
        return res

    # --- helpers for trainers / validation -------------------------------------------------
    def targets(self, batch: Batch) -> dict[str, Tensor]:
        """``{name: target}`` of the objectives with a pixel target (for per-objective PSNR)."""
        with torch.no_grad():
            return {n: o.target(batch) for n, o in zip(self.names, self.objectives) if isinstance(o, PixelObjective)}

    def adversarial_objectives(self) -> list[AdversarialObjective]:
        """The :class:`AdversarialObjective` s anywhere inside (also within composites), in order."""
        seen: dict[int, AdversarialObjective] = {}
        for m in self.modules():
            if isinstance(m, AdversarialObjective) and id(m) not in seen:
                seen[id(m)] = m
        return list(seen.values())

    def discriminators(self) -> list[nn.Module]:
        """The discriminators of :meth:`adversarial_objectives` (one optimiser each)."""
        return [o.discriminator for o in self.adversarial_objectives()]

    def discriminator_loss(self, discriminator: nn.Module | AdversarialObjective, fake: Tensor, batch: Batch) -> Tensor:
        """Scalar loss of one discriminator (given itself or its objective) on ``fake`` (detached) vs
        the batch's real images."""
        for o in self.adversarial_objectives():
            if discriminator is o or discriminator is o.discriminator:
                return o.discriminator_loss(fake.detach(), batch)
        raise InputError("this discriminator does not belong to any adversarial objective of the multi-loss")

    def discriminator_step(self, fake: Tensor, batch: Batch, optimizers: Sequence[torch.optim.Optimizer]) -> dict[str, float]:
        """One step of every discriminator (``optimizers`` in :meth:`discriminators` order);
        returns ``{"disc<i>": loss}``."""
        advs = self.adversarial_objectives()
        if len(optimizers) != len(advs):
            raise InputError(f"{len(advs)} discriminators but {len(optimizers)} optimizers")
        out = {}
        for i, (o, opt) in enumerate(zip(advs, optimizers)):
            out[f"disc{i}"] = float(o.discriminator_step(fake.detach(), batch, opt))
        return out

    def extra_repr(self) -> str:
        return (f"names={self.names}, weights={self.objective_weights.tolist()}, skip_zero={self.skip_zero}, "
                f"domain={self.domain}")


class BlendedTargetLoss(ParametricMultiLoss):
    r"""Mix the *targets* instead of the losses: ``loss = (1/B) Σ_b d(output_b, t̄_b)`` with
    ``t̄_b = Σ_i c[b, i] · target_i(batch_b)``, ``c[b, i] = p[b, i] w_i / Σ_j p[b, j] w_j``.

    For pixel objectives that share one distance ``d``. With ``d = L2`` this has the same
    gradient as :class:`ParametricMultiLoss` (``Σ_i c_i |o − t_i|² = |o − t̄|² + const``); with
    L1 or Charbonnier it does not: the minimiser of the mixed losses ``Σ_i c_i |o − t_i|`` is a
    weighted *median* of the targets, which jumps from one target to the other as p crosses
    the middle (an uneven knob), while the minimiser of ``|o − t̄|`` is the blend ``t̄``
    itself, which moves linearly with p. Same call and result as the parent; ``per_sample``
    logs each objective's own (unmixed) loss, for comparison.

    On the cube (``domain="cube"``) the objectives are the ``2^P`` corners and ``c[b, k]`` is
    ``a_k(p_b) w_k / Σ_j a_j(p_b) w_j`` with the corner weights of :func:`cube_corner_weights`
    (with all ``w_k = 1``: ``t̄_b`` is the multilinear interpolation of the corner targets,
    exactly corner k's target at corner k).

    Args:
        objectives: :class:`~tunableconv.losses.objectives.PixelObjective` s with the same distance.
        weights: the static ``w_i`` (default all 1).
        domain: ``"simplex"`` (default) or ``"cube"``, as for :class:`ParametricMultiLoss`.
    """

    def __init__(self, objectives: Sequence[nn.Module] | Mapping[str, nn.Module],
                 weights: Sequence[float] | None = None, *, domain: str = "simplex") -> None:
        super().__init__(objectives, weights, skip_zero=False, domain=domain)
        kinds = set()
        for name, o in zip(self.names, self.objectives):
            if not isinstance(o, PixelObjective):
                raise InputError(f"blended targets need pixel objectives; {name!r} is a {type(o).__name__}")
            kinds.add((o.distance_name, getattr(o, "eps", None)))
        if len(kinds) != 1:
            raise InputError(f"blended targets need one distance for every objective, got {sorted(map(str, kinds))}")
        self.distance = self.objectives[0].distance

    def forward(self, output: Tensor, batch: Batch, p: Tensor | Sequence[float] | None = None) -> MultiLossResult:
        if not isinstance(batch, Mapping):
            raise InputError(f"batch must be a dict of tensors, got {type(batch).__name__}")
        B = output.shape[0]
        pp = self._params(p, B, output.device)
        coef = self.mixing(pp) * self.objective_weights.to(output.device)
        norm = coef.sum(dim=1, keepdim=True)
        if bool((norm <= 0).any()):
            raise InputError("blended targets need p with at least one positive weighted entry per sample")
        coef = coef / norm
        with torch.no_grad():
            targets = [o.target(batch).to(dtype=output.dtype) for o in self.objectives]
            blend = sum(coef[:, i].view(B, *([1] * (output.dim() - 1))) * t for i, t in enumerate(targets))
        v = _check_per_sample(self.distance(output, blend), B, "blended target").float()
        total = v.sum() / B
        with torch.no_grad():
            per_sample = torch.stack([self.distance(output, t).float() for t in targets], dim=1)
        res = MultiLossResult(total=total, per_sample=per_sample, p=pp.detach(), names=list(self.names),
                              weighted_per_sample=coef * per_sample)
        self.last = res
        return res
