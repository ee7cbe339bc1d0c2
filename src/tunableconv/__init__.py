"""tunableconv: tunable convolutions with parametric multi-loss optimisation.

One trained network whose behaviour is set at inference time by interactive parameters
p in [0, 1]^P (Maggioni et al., CVPR 2023).

The core layers live in :mod:`tunableconv.nn` and depend on torch alone.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import InputError, InvalidParamsError, MissingWeightsError, TunableconvError
from .nn import (
    TunableConv2d,
    TunableConvTranspose2d,
    TunableLinear,
    TunableModel,
    TunableParameter,
    make_tunable,
)

__all__ = [
    "__version__",
    "TunableconvError",
    "InvalidParamsError",
    "InputError",
    "MissingWeightsError",
    "TunableConv2d",
    "TunableConvTranspose2d",
    "TunableLinear",
    "TunableParameter",
    "TunableModel",
    "make_tunable",
]
