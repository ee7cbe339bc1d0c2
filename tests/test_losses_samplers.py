"""Samplers of the interactive parameters p (tunableconv.losses.samplers)."""

import pytest
import torch

from tunableconv import InputError
from tunableconv.losses import UniformCube, UniformSimplex, VertexEdgeMixture, make_sampler

N = 20_000


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("P", [2, 3, 5])
def test_simplex_distribution(P):
    p = UniformSimplex(P)(N, _gen())
    assert p.shape == (N, P) and p.dtype == torch.float32
    assert (p >= 0).all()
    torch.testing.assert_close(p.sum(1), torch.ones(N))
    assert torch.allclose(p.mean(0), torch.full((P,), 1.0 / P), atol=0.01)
    # Beta(1, P-1) marginal: variance (P-1) / (P² (P+1))
    var = (P - 1) / (P * P * (P + 1))
    assert torch.allclose(p.var(0), torch.full((P,), var), rtol=0.06)


def test_cube_distribution():
    p = UniformCube(3)(N, _gen())
    assert p.shape == (N, 3) and (p >= 0).all() and (p <= 1).all()
    assert torch.allclose(p.mean(0), torch.full((3,), 0.5), atol=0.01)
    assert torch.allclose(p.var(0), torch.full((3,), 1 / 12), rtol=0.05)
    # independent knobs: no correlation
    c = torch.corrcoef(p.T)
    assert (c - torch.eye(3)).abs().max() < 0.03


def test_simplex_mixture_shares():
    s = VertexEdgeMixture(UniformSimplex(3), vertex_share=0.2, edge_share=0.3)
    p = s(N, _gen(1))
    torch.testing.assert_close(p.sum(1), torch.ones(N))
    nonzero = (p > 0).sum(1)
    is_vertex = (p == 1).any(1)
    assert torch.equal(is_vertex, nonzero == 1)
    assert abs(is_vertex.float().mean().item() - 0.2) < 0.015
    assert abs((nonzero == 2).float().mean().item() - 0.3) < 0.015
    assert abs((nonzero == 3).float().mean().item() - 0.5) < 0.015
    # every vertex and every edge is used evenly
    verts = p[is_vertex].argmax(1)
    assert torch.allclose(torch.bincount(verts, minlength=3).float() / len(verts), torch.full((3,), 1 / 3), atol=0.03)
    edges = p[nonzero == 2]
    pairs = (edges > 0).float()
    for mask in ([1, 1, 0], [1, 0, 1], [0, 1, 1]):
        frac = (pairs == torch.tensor(mask).float()).all(1).float().mean().item()
        assert abs(frac - 1 / 3) < 0.03
    # edge positions uniform: mean of the first nonzero coordinate ≈ 1/2
    assert abs(edges.max(1).values.mean().item() - 0.75) < 0.02


def test_cube_mixture_shares():
    s = make_sampler("mixture", 3, vertex_share=0.25, edge_share=0.25, base="cube")
    p = s(N, _gen(2))
    assert (p >= 0).all() and (p <= 1).all()
    binary = ((p == 0) | (p == 1)).sum(1)
    assert abs((binary == 3).float().mean().item() - 0.25) < 0.015  # corners
    assert abs((binary == 2).float().mean().item() - 0.25) < 0.015  # edges: one free coordinate
    corners = p[binary == 3]
    # all 8 corners appear
    codes = (corners * torch.tensor([1.0, 2.0, 4.0])).sum(1).long()
    assert torch.bincount(codes, minlength=8).min() > 0.8 * len(codes) / 8


def test_seeding_reproducible():
    for s in (UniformCube(3), UniformSimplex(4), VertexEdgeMixture(UniformSimplex(3), 0.3, 0.3)):
        a = s(64, _gen(7))
        b = s(64, _gen(7))
        c = s(64, _gen(8))
        assert torch.equal(a, b) and not torch.equal(a, c)
    g = _gen(3)
    first, second = UniformSimplex(2)(8, g), UniformSimplex(2)(8, g)
    assert not torch.equal(first, second)  # the generator advances


def test_make_sampler_and_errors():
    assert isinstance(make_sampler("cube", 2), UniformCube)
    assert isinstance(make_sampler("simplex", 2), UniformSimplex)
    m = make_sampler("simplex", 3, vertex_share=0.1)
    assert isinstance(m, VertexEdgeMixture) and isinstance(m.base, UniformSimplex) and m.num_params == 3
    m2 = make_sampler("mixture", 2)
    assert isinstance(m2, VertexEdgeMixture) and (m2.vertex_share, m2.edge_share) == (0.1, 0.1)
    with pytest.raises(InputError, match="cube, simplex, mixture"):
        make_sampler("gaussian", 2)
    with pytest.raises(InputError):
        make_sampler("mixture", 2, base="ball")
    with pytest.raises(InputError):
        UniformSimplex(0)
    with pytest.raises(InputError):
        VertexEdgeMixture(UniformSimplex(2), 0.7, 0.5)
    with pytest.raises(InputError):
        UniformCube(2)(-1)
    # P = 1 simplex is the single vertex; dtype / device options
    torch.testing.assert_close(UniformSimplex(1)(5, _gen()), torch.ones(5, 1))
    assert UniformCube(2)(3, dtype=torch.float64).dtype == torch.float64
    assert UniformCube(2)(0).shape == (0, 2)
