"""The map from interactive parameters p to aggregation weights.

The map turns p of shape ``(..., P)`` into aggregation weights w of shape ``(..., K)``; the
layer applies the kernel Σ_k w_k W_k. It depends on the knob domain.

**Simplex** (p mixes P objectives): K = P·E weight sets.

- ``"identity"``: w = p (needs E = 1);
- ``"affine"``: w = A p + b with a learned A of shape (K, P) and b of shape (K,), no
  activation (the paper's choice).

**Cube** (P independent knobs in [0, 1]^P): K = 1 + P·E weight sets, a base W_0 plus
per-knob directions, W(p) = W_0 + Σ_k w'_k(p) W_k.

- ``"identity"``: w = (1, p) (needs E = 1);
- ``"affine"``: w = (1, A p + b), A of shape (P·E, P), b of shape (P·E,); initialised with
  A = M (below) and b = 0, so at the start w = (1, p) for E = 1.

Tunable layers on the cube start with W_0 = the plain (or pretrained) weight and every
direction W_k = 0: the output does not depend on p until training, and knob i receives its
own gradient p_i ∂L/∂W̄ — distinct corners (0, 0), (1, 1), (½, ½) of the square get distinct
kernels as soon as the directions move, which no simplex map can give (there Σ w = 1).

Initialisation of the simplex's affine map: A = M − colmean(M), b = 1/K, where M[iE+e, i] = 2(e+1)/(E(E+1))
(distinct positive shares of parameter i over its E weight sets, summing to 1). Then Σ_k w_k = 1 for *every* p (so a layer whose weight sets are
all equal computes the same function for every p, which is what :func:`make_tunable` needs to
preserve a pretrained model), and for E = 1 the map equals the identity on the simplex.
The rows of A differ, so weight sets that start equal do not stay equal by symmetry.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from .params import check_domain

MappingKind = Literal["identity", "affine"]


def _shares(num_params: int, expansion: int) -> Tensor:
    """M (P·E, P): M[iE+e, i] = 2(e+1)/(E(E+1)), distinct positive shares summing to 1 over e."""
    m = torch.zeros(num_params * expansion, num_params)
    for i in range(num_params):
        for e in range(expansion):
            m[i * expansion + e, i] = 2.0 * (e + 1) / (expansion * (expansion + 1))
    return m


def affine_init(num_params: int, expansion: int = 1, domain: str = "simplex") -> tuple[Tensor, Tensor]:
    """The initial (A, b) of the affine map; see the module docstring."""
    m = _shares(num_params, expansion)
    if check_domain(domain) == "cube":
        return m, torch.zeros(num_params * expansion)
    k = num_params * expansion
    return m - m.mean(dim=0, keepdim=True), torch.full((k,), 1.0 / k)


def num_weight_sets(num_params: int, expansion: int = 1, domain: str = "simplex") -> int:
    """K: P·E on the simplex, 1 + P·E on the cube."""
    return num_params * expansion + (1 if check_domain(domain) == "cube" else 0)


class ParamMap(nn.Module):
    """Map p ``(..., P)`` to aggregation weights ``(..., K)`` (see the module docstring)."""

    def __init__(self, num_params: int, expansion: int = 1, kind: MappingKind = "affine", domain: str = "simplex") -> None:
        super().__init__()
        if num_params < 1:
            raise ValueError(f"num_params must be >= 1, got {num_params}")
        if expansion < 1:
            raise ValueError(f"expansion must be >= 1, got {expansion}")
        if kind not in ("identity", "affine"):
            raise ValueError(f"mapping must be 'identity' or 'affine', got {kind!r}")
        if kind == "identity" and expansion != 1:
            raise ValueError("the identity mapping needs expansion=1 (one weight set per parameter)")
        self.num_params = num_params
        self.expansion = expansion
        self.kind = kind
        self.domain = check_domain(domain)
        if kind == "affine":
            a, b = affine_init(num_params, expansion, domain)
            self.weight = nn.Parameter(a)
            self.bias = nn.Parameter(b)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    @property
    def num_weights(self) -> int:
        """K, the number of weight sets this map mixes."""
        return num_weight_sets(self.num_params, self.expansion, self.domain)

    def reset_parameters(self) -> None:
        if self.kind == "affine":
            a, b = affine_init(self.num_params, self.expansion, self.domain)
            with torch.no_grad():
                self.weight.copy_(a)
                self.bias.copy_(b)

    def forward(self, p: Tensor) -> Tensor:
        """p ``(..., P)`` -> w ``(..., K)``."""
        w = p if self.kind == "identity" else nn.functional.linear(p.to(self.weight.dtype), self.weight, self.bias)
        if self.domain == "cube":
            w = torch.cat([torch.ones_like(w[..., :1]), w], dim=-1)
        return w

    def extra_repr(self) -> str:
        return f"num_params={self.num_params}, expansion={self.expansion}, kind={self.kind!r}, domain={self.domain!r}"
