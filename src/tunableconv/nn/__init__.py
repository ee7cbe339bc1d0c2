"""Tunable layers and model conversion (depends on torch alone).

- :class:`TunableConv2d`, :class:`TunableConvTranspose2d`, :class:`TunableLinear`,
  :class:`TunableParameter`: explicit layers, ``layer(x, p)``, K weight sets mixed by
  aggregation weights from p — for models you write yourself; :func:`load_plain_weights`
  starts such a model from its plain twin's weights (every kernel set a copy).
- :func:`make_tunable` / :class:`TunableModel`: make every parameter of an existing model
  tunable and call it as ``model(x, p)`` (p substituted with ``torch.func.functional_call``;
  per sample under ``vmap``; knob maps per layer); ``conversion_report()``, ``freeze(p)``,
  ``sweep(x, ps)``.
- :class:`ParamMap`: the p -> aggregation-weights map (``"identity"`` or ``"affine"``) on a
  knob domain (``"simplex"`` or ``"cube"``).
- :mod:`tunableconv.nn.params`: the accepted shapes of p (shared, per sample, knob maps)
  and their validation; :mod:`tunableconv.nn.trunk`: sweeps with a p-independent trunk;
  :mod:`tunableconv.nn.functional`: the functional forms.
"""

from . import functional
from .convert import ConversionEntry, ConversionReport, TunableModel, TunableSlot, make_tunable
from .layers import TunableConv2d, TunableConvTranspose2d, TunableLinear, TunableParameter, load_plain_weights
from .mapping import ParamMap, affine_init, num_weight_sets
from .params import DOMAINS, as_params, check_domain, check_params, params_kind, resample_map
from .trunk import sweep_outputs

__all__ = [
    "functional",
    "TunableConv2d",
    "TunableConvTranspose2d",
    "TunableLinear",
    "TunableParameter",
    "load_plain_weights",
    "ParamMap",
    "affine_init",
    "num_weight_sets",
    "TunableModel",
    "TunableSlot",
    "ConversionEntry",
    "ConversionReport",
    "make_tunable",
    "check_params",
    "check_domain",
    "as_params",
    "params_kind",
    "resample_map",
    "sweep_outputs",
    "DOMAINS",
]
