"""The map from interactive parameters p to aggregation weights.

A tunable layer with P parameters and expansion E holds K = P·E weight sets. The map turns
p of shape ``(..., P)`` into aggregation weights w of shape ``(..., K)``:

- ``"identity"``: w = p (needs E = 1);
- ``"affine"``: w = A p + b with a learned A of shape (K, P) and b of shape (K,), no
  activation (the paper's choice).

Initialisation of the affine map: A = M − colmean(M), b = 1/K, where M[iE+e, i] = 2(e+1)/(E(E+1))
(distinct positive shares of parameter i over its E weight sets, summing to 1). Then Σ_k w_k = 1 for *every* p (so a layer whose weight sets are
all equal computes the same function for every p, which is what :func:`make_tunable` needs to
preserve a pretrained model), and for E = 1 the map equals the identity on the simplex.
The rows of A differ, so weight sets that start equal do not stay equal by symmetry.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

MappingKind = Literal["identity", "affine"]


def affine_init(num_params: int, expansion: int = 1) -> tuple[Tensor, Tensor]:
    """The initial (A, b) of the affine map; see the module docstring."""
    k = num_params * expansion
    m = torch.zeros(k, num_params)
    for i in range(num_params):
        for e in range(expansion):
            # distinct, positive, summing to 1 over the expansion (1 when E = 1)
            m[i * expansion + e, i] = 2.0 * (e + 1) / (expansion * (expansion + 1))
    a = m - m.mean(dim=0, keepdim=True)
    b = torch.full((k,), 1.0 / k)
    return a, b


class ParamMap(nn.Module):
    """Map p ``(..., P)`` to aggregation weights ``(..., P·E)``."""

    def __init__(self, num_params: int, expansion: int = 1, kind: MappingKind = "affine") -> None:
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
        if kind == "affine":
            a, b = affine_init(num_params, expansion)
            self.weight = nn.Parameter(a)
            self.bias = nn.Parameter(b)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    @property
    def num_weights(self) -> int:
        return self.num_params * self.expansion

    def reset_parameters(self) -> None:
        if self.kind == "affine":
            a, b = affine_init(self.num_params, self.expansion)
            with torch.no_grad():
                self.weight.copy_(a)
                self.bias.copy_(b)

    def forward(self, p: Tensor) -> Tensor:
        if self.kind == "identity":
            return p
        return nn.functional.linear(p.to(self.weight.dtype), self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"num_params={self.num_params}, expansion={self.expansion}, kind={self.kind!r}"
