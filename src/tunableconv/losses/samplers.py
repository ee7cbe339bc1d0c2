r"""Samplers of the interactive parameters p used in training.

In parametric multi-loss optimisation every training sample gets its own random p, and the
*same* p both drives the tunable network and mixes the objectives. A sampler is a callable

    ``sampler(batch_size, generator=None) -> Tensor`` of shape ``(B, P)``, values in [0, 1],

seedable with a :class:`torch.Generator` (every random number comes from it, so the same
generator state gives the same draws on every machine).

- :class:`UniformCube` — P independent knobs, ``p ~ U([0, 1]^P)``.
- :class:`UniformSimplex` — ``p ~ Dirichlet(1, …, 1)``, uniform on the probability simplex
  ``{p ≥ 0, Σ_i p_i = 1}``, drawn as normalised exponentials ``p_i = e_i / Σ_j e_j`` with
  ``e_i ~ Exp(1)``.
- :class:`VertexEdgeMixture` — puts extra mass on the extreme settings of a base sampler:
  with probability ``vertex_share`` a vertex (a one-hot p on the simplex, a corner of the
  cube), with probability ``edge_share`` a point drawn uniformly on a uniformly chosen edge
  (segment between two adjacent vertices), otherwise a draw of the base sampler.
- :func:`make_sampler` — build one by name (``"cube"``, ``"simplex"``, ``"mixture"``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from ..errors import InputError

__all__ = ["ParamSampler", "UniformCube", "UniformSimplex", "VertexEdgeMixture", "make_sampler", "SAMPLERS"]


def _check_num_params(num_params: int) -> int:
    if isinstance(num_params, bool) or not isinstance(num_params, int) or num_params < 1:
        raise InputError(f"a sampler needs a number of parameters P >= 1, got {num_params!r}")
    return num_params


def _check_batch(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise InputError(f"batch_size must be an integer >= 0, got {batch_size!r}")
    return batch_size


def _device_of(generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else torch.device("cpu")


class ParamSampler(ABC):
    """Base class: draws ``(B, P)`` interactive parameters.

    Subclasses implement :meth:`sample` (the distribution itself) and, to be usable as the
    base of a :class:`VertexEdgeMixture`, :meth:`sample_vertices` and :meth:`sample_edges`.
    Draws are made on the generator's device (CPU when no generator is given) in float32,
    then moved to ``device``/``dtype`` if given.
    """

    num_params: int

    def __call__(
        self,
        batch_size: int,
        generator: torch.Generator | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """``(batch_size, P)`` parameters in [0, 1]."""
        p = self.sample(_check_batch(batch_size), generator)
        return p.to(device=device if device is not None else p.device, dtype=dtype)

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        """``(n, P)`` float32 draws of this distribution."""

    def sample_vertices(self, n: int, generator: torch.Generator | None) -> Tensor:
        """``(n, P)`` vertices of the domain, uniformly chosen."""
        raise NotImplementedError(f"{type(self).__name__} has no vertices")

    def sample_edges(self, n: int, generator: torch.Generator | None) -> Tensor:
        """``(n, P)`` points uniform on a uniformly chosen edge of the domain."""
        raise NotImplementedError(f"{type(self).__name__} has no edges")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.num_params})"


class UniformCube(ParamSampler):
    r"""Independent knobs: ``p ~ U([0, 1]^P)``; ``E[p_i] = 1/2``.

    Vertices are the ``2^P`` corners ``{0, 1}^P``; edges join corners differing in one
    coordinate (``P · 2^(P-1)`` edges): on an edge one coordinate is ``U(0, 1)`` and the
    others are fixed random bits.
    """

    def __init__(self, num_params: int) -> None:
        self.num_params = _check_num_params(num_params)

    def sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        return torch.rand(n, self.num_params, generator=generator, device=_device_of(generator))

    def sample_vertices(self, n: int, generator: torch.Generator | None) -> Tensor:
        dev = _device_of(generator)
        return torch.randint(0, 2, (n, self.num_params), generator=generator, device=dev).float()

    def sample_edges(self, n: int, generator: torch.Generator | None) -> Tensor:
        dev = _device_of(generator)
        corners = self.sample_vertices(n, generator)
        axis = torch.randint(0, self.num_params, (n,), generator=generator, device=dev)
        t = torch.rand(n, generator=generator, device=dev)
        corners[torch.arange(n, device=dev), axis] = t
        return corners


class UniformSimplex(ParamSampler):
    r"""Uniform on the simplex ``Δ^{P-1} = {p ≥ 0, Σ_i p_i = 1}`` (Dirichlet(1, …, 1)).

    ``p_i = e_i / Σ_j e_j`` with i.i.d. ``e_i ~ Exp(1)``; marginals are Beta(1, P-1), so
    ``E[p_i] = 1/P``. Vertices are the one-hot vectors; an edge joins two of them
    (``P(P-1)/2`` edges): ``p_i = t, p_j = 1 - t``, ``t ~ U(0, 1)``. For P = 2 the simplex
    is a single edge, so an edge draw has the same law as a base draw.
    """

    def __init__(self, num_params: int) -> None:
        self.num_params = _check_num_params(num_params)

    def sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        e = torch.empty(n, self.num_params, device=_device_of(generator)).exponential_(generator=generator)
        # Exp(1) draws are > 0 almost surely; guard the (float) zero anyway.
        e = e.clamp_min(torch.finfo(e.dtype).tiny)
        return e / e.sum(dim=1, keepdim=True)

    def sample_vertices(self, n: int, generator: torch.Generator | None) -> Tensor:
        dev = _device_of(generator)
        idx = torch.randint(0, self.num_params, (n,), generator=generator, device=dev)
        return torch.nn.functional.one_hot(idx, self.num_params).float()

    def sample_edges(self, n: int, generator: torch.Generator | None) -> Tensor:
        dev = _device_of(generator)
        P = self.num_params
        if P == 1:
            return torch.ones(n, 1, device=dev)
        i = torch.randint(0, P, (n,), generator=generator, device=dev)
        # j uniform among the P-1 other vertices: unordered pair {i, j} is uniform.
        j = (i + torch.randint(1, P, (n,), generator=generator, device=dev)) % P
        t = torch.rand(n, generator=generator, device=dev)
        out = torch.zeros(n, P, device=dev)
        rows = torch.arange(n, device=dev)
        out[rows, i] = t
        out[rows, j] = 1.0 - t
        return out


class VertexEdgeMixture(ParamSampler):
    r"""Mixture of a base sampler with its vertices and edges.

    Each sample independently is

    - a vertex of the base domain with probability ``vertex_share``,
    - a point on an edge (uniform edge, uniform position) with probability ``edge_share``,
    - a draw of ``base`` otherwise (probability ``1 - vertex_share - edge_share``).

    Training on the extremes more often makes the network reach each objective's own
    optimum at the corners of the slider space.
    """

    def __init__(self, base: ParamSampler, vertex_share: float = 0.1, edge_share: float = 0.1) -> None:
        if not isinstance(base, ParamSampler):
            raise InputError(f"the base of a mixture must be a ParamSampler, got {type(base).__name__}")
        vs, es = float(vertex_share), float(edge_share)
        if not (0.0 <= vs <= 1.0 and 0.0 <= es <= 1.0 and vs + es <= 1.0 + 1e-12):
            raise InputError(
                f"vertex_share and edge_share must be in [0, 1] with a sum <= 1, got {vertex_share} and {edge_share}"
            )
        self.base, self.vertex_share, self.edge_share = base, vs, es
        self.num_params = base.num_params

    def sample(self, n: int, generator: torch.Generator | None) -> Tensor:
        dev = _device_of(generator)
        u = torch.rand(n, generator=generator, device=dev)
        # A fixed number of draws per call (all three kinds for every sample), so the
        # generator advances identically whatever the outcome.
        base = self.base.sample(n, generator)
        vert = self.base.sample_vertices(n, generator)
        edge = self.base.sample_edges(n, generator)
        is_vert = (u < self.vertex_share).unsqueeze(1)
        is_edge = ((u >= self.vertex_share) & (u < self.vertex_share + self.edge_share)).unsqueeze(1)
        return torch.where(is_vert, vert, torch.where(is_edge, edge, base))

    def sample_vertices(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self.base.sample_vertices(n, generator)

    def sample_edges(self, n: int, generator: torch.Generator | None) -> Tensor:
        return self.base.sample_edges(n, generator)

    def __repr__(self) -> str:
        return f"VertexEdgeMixture({self.base!r}, vertex_share={self.vertex_share}, edge_share={self.edge_share})"


SAMPLERS: dict[str, type[ParamSampler]] = {"cube": UniformCube, "simplex": UniformSimplex}


def make_sampler(
    name: str,
    num_params: int,
    *,
    vertex_share: float | None = None,
    edge_share: float | None = None,
    base: str = "simplex",
) -> ParamSampler:
    """Build a sampler by name.

    Args:
        name: ``"cube"`` (:class:`UniformCube`), ``"simplex"`` (:class:`UniformSimplex`) or
            ``"mixture"`` (:class:`VertexEdgeMixture` around ``base``).
        num_params: P.
        vertex_share, edge_share: extra mass on vertices / edges (None: 0.1 each for
            ``"mixture"``, 0 otherwise). With ``"cube"`` or ``"simplex"`` and a nonzero share,
            the sampler is wrapped in a mixture too (so a recipe's
            ``sampler: simplex, vertex_share: 0.1`` does what it says).
        base: the base domain of ``"mixture"`` (``"simplex"`` or ``"cube"``).
    """
    if name == "mixture":
        if base not in SAMPLERS:
            raise InputError(f"unknown mixture base {base!r}; choose one of: {', '.join(SAMPLERS)}")
        return VertexEdgeMixture(
            SAMPLERS[base](num_params),
            0.1 if vertex_share is None else vertex_share,
            0.1 if edge_share is None else edge_share,
        )
    if name not in SAMPLERS:
        raise InputError(f"unknown p sampler {name!r}; choose one of: cube, simplex, mixture")
    sampler = SAMPLERS[name](num_params)
    if vertex_share or edge_share:
        return VertexEdgeMixture(sampler, vertex_share or 0.0, edge_share or 0.0)
    return sampler
