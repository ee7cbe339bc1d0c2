"""Tunable layers (depends on torch alone).

- :class:`TunableConv2d`, :class:`TunableConvTranspose2d`, :class:`TunableLinear`,
  :class:`TunableParameter`: K = P·E weight sets mixed by aggregation weights from p.
- :class:`ParamMap`: the p -> aggregation-weights map (``"identity"`` or ``"affine"``).
- :func:`tunable_params`: carry p to every tunable layer of a model (thread-safe).
- :func:`make_tunable` / :class:`TunableModel`: convert an existing model, call it as
  ``model(x, p)``.
- :mod:`tunableconv.nn.functional`: the functional forms.
"""

from . import functional
from .convert import TunableModel, make_tunable
from .layers import TunableConv2d, TunableConvTranspose2d, TunableLinear, TunableParameter
from .mapping import ParamMap, affine_init
from .params import as_params, check_params, current_params, tunable_params

__all__ = [
    "functional",
    "TunableConv2d",
    "TunableConvTranspose2d",
    "TunableLinear",
    "TunableParameter",
    "ParamMap",
    "affine_init",
    "TunableModel",
    "make_tunable",
    "tunable_params",
    "current_params",
    "check_params",
    "as_params",
]
