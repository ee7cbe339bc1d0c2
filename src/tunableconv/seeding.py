r"""Seeding: every random choice of a training run from (run seed, step, stream index).

A training run draws nothing from a global generator after the model's initialisation.
Step ``s`` of a run with seed ``seed`` uses these independent streams, each a fresh
:class:`torch.Generator` seeded by :func:`sample_seed`:

=====================  =========================================================
stream index           what it draws
=====================  =========================================================
``i >= 0``             global sample ``i`` of the step: image, crop, flips,
                       degradation, and its own p (``task.p_granularity=sample``)
``STEP = -1``          the step's shared p (``p_granularity=batch``)
``group(k) = -2 - k``  the p of group ``k`` (``p_granularity=group:N``, samples
                       ``[kN, (k+1)N)``)
=====================  =========================================================

The data stream therefore has no state: the same samples reach the same places whatever
the number of data workers or processes, and a resumed run sees exactly the samples an
uninterrupted run would have seen. Validation uses its own fixed stream,
:data:`VALIDATION_SEED`.
"""

from __future__ import annotations

import torch

#: stream index of the step's shared draws (one p per step)
STEP = -1
#: seed of the validation degradations (the same noise at every validation of every run)
VALIDATION_SEED = 12345

_MASK64 = 2**64 - 1


def sample_seed(seed: int, step: int, index: int) -> int:
    """A well-mixed 63-bit seed for (run seed, step, stream index) (a SplitMix64-style finaliser).

    ``x = seed·φ + step·c₁ + index·c₂ + 1 (mod 2⁶⁴)``, then two xor-shift-multiply rounds.
    """
    x = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB + 1) & _MASK64
    x ^= x >> 31
    x = (x * 0xD6E8FEB86659FD93) & _MASK64
    x ^= x >> 32
    return x & (2**63 - 1)


def group_index(group: int) -> int:
    """The stream index of p-group ``group`` (>= 0): ``-2 - group``."""
    if group < 0:
        raise ValueError(f"group must be >= 0, got {group}")
    return -2 - group


def generator(seed: int, step: int, index: int) -> torch.Generator:
    """A CPU generator seeded by :func:`sample_seed` ``(seed, step, index)``."""
    return torch.Generator().manual_seed(sample_seed(seed, step, index))


def validation_generator() -> torch.Generator:
    """The generator of the validation degradations (seeded by :data:`VALIDATION_SEED`)."""
    return torch.Generator().manual_seed(VALIDATION_SEED)
