"""Many settings of one image: ``sweep`` with a p-independent trunk computed once.

An architecture *declares a trunk* by having two methods, ``trunk(x) -> state`` and
``rest(state, p) -> y`` (for :func:`~tunableconv.nn.make_tunable` models ``rest(state)``,
p being substituted into its weights), with ``forward(x, p) == rest(trunk(x), p)`` and no
tunable parameter inside ``trunk``. ``state`` is a tensor or a tuple/list/dict of tensors
whose first dimension is the batch.

:func:`sweep_outputs` runs the trunk once and the tunable rest for N settings, ``chunk``
settings per call: a chunk of c settings is one batched call over c·B samples with
per-sample p; ``chunk=1`` is one shared-p call per setting (the cheapest path per setting on
a CPU: plain convolutions instead of grouped ones).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils._pytree import tree_map

from ..errors import InvalidParamsError


def _repeat(state: Any, times: int) -> Any:
    """Each tensor ``(B, ...)`` -> ``(times·B, ...)``, the whole batch repeated ``times`` times."""
    return tree_map(lambda t: t.repeat((times,) + (1,) * (t.dim() - 1)) if isinstance(t, Tensor) else t, state)


def sweep_outputs(
    trunk: Callable[[Tensor], Any] | None,
    rest: Callable[[Any, Tensor], Tensor],
    x: Tensor,
    ps: Tensor,
    chunk: int = 1,
) -> Tensor:
    """Outputs for N settings ``ps (N, P)`` of the images ``x (B, ...)``: ``(N, B, ...)``.

    Args:
        trunk: ``trunk(x) -> state``, run once; None: the state is ``x`` itself.
        rest: ``rest(state, p)`` with p ``(P,)`` or ``(c·B, P)`` (sample ``j·B + b`` is image
            b at setting j of the chunk).
        chunk: settings per call of ``rest`` (>= 1).
    """
    if ps.dim() != 2:
        raise InvalidParamsError(f"sweep takes N settings as ps of shape (N, P), got {tuple(ps.shape)}")
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    state = trunk(x) if trunk is not None else x
    batch = x.shape[0]
    outs = []
    for start in range(0, ps.shape[0], chunk):
        part = ps[start : start + chunk]
        if part.shape[0] == 1:
            outs.append(rest(state, part[0]).unsqueeze(0))
            continue
        y = rest(_repeat(state, part.shape[0]), part.repeat_interleave(batch, dim=0))
        outs.append(y.reshape((part.shape[0], batch) + tuple(y.shape[1:])))
    return torch.cat(outs)
