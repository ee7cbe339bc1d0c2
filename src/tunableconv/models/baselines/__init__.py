"""Rival controllable networks, for comparisons trained and evaluated like tunable models.

Every class here follows one contract (see :class:`~._backbone.Baseline`):

- constructed from its config dataclass (backbone fields ``in_channels``, ``out_channels``,
  ``channels``, ``num_blocks``, ``kernel_size``, ``input_residual``, ``upscale`` as in
  :class:`~tunableconv.models.ResNetConfig`, the task's ``num_params`` and ``domain``, plus
  method-specific ones); the main network is a plain :class:`~tunableconv.models.ResNet` of
  that size (with its upsampler for a ×s backbone);
- ``model(x, p)`` with p ``(P,)`` or ``(B, P)``. The defaults are denoising's: P = 2 on the
  simplex, p = (p_obj1, p_obj2), and the method's own control value is α = p[..., 1] (0: the
  objective-1 network, 1: the objective-2 end); a 1-knob cube, α = p[..., 0], is the other
  knob space a one-α method supports (see ``_backbone``). CResMD uses the whole p, or, with
  ``condition="degradation"``, the sample's true degradation levels instead
  (``conditioned_on = "condition"``: the trainer passes ``batch["condition"]``);
- ``architecture``, ``arguments()`` and ``receptive_field()`` for model files;
- ``training_stages(total_steps) -> list[Stage]``: how the trainer must train it.

:data:`BASELINES` holds the methods of this contract. ``dynamicnet-style``
(:class:`StyleDynamicNet`, in :data:`STYLE_BASELINES`) is Dynamic-Net on the style network
instead of the ResNet: two styles on the simplex, its main network a
:class:`~tunableconv.models.stylenet.StyleNet`; the same ``model(x, p)``, stages and
``load_main``.

====================  ==============================================  ===============================
architecture          class                                           stages
====================  ==============================================  ===============================
``dni``               :class:`DNI` (weight interpolation)             A at (1,0); B at (0,1)
``adafm``             :class:`AdaFM` (feature modification)           basic; AdaFM layers
``cfsnet``            :class:`CFSNet` (coupled branches)              main; tuning + control
``dynamicnet``        :class:`DynamicNet` (tuning blocks)             main; tuning blocks
``dynamicnet-style``  :class:`StyleDynamicNet` (the same, style net)  main; tuning blocks
``cresmd``            :class:`CResMD` (conditional residuals)         one stage, p sampled (or fixed)
``ftn``               :class:`FTN` (filter transition)                main; FTNs
``tsnet``             :class:`TSNet` (CResMD searched per task)       search; fine-tune
``ta-tsnet``          :class:`TATSNet` (TSNet + shared layers)        search; fine-tune
====================  ==============================================  ===============================

:class:`Stage` (defined in ``_backbone`` and exported here) is the training contract;
:func:`count_parameters` is for cost tables.
"""

from ._backbone import ALPHA_SPACES, Baseline, BaselineConfig, Stage, count_parameters, resnet_receptive_field
from .adafm import AdaFM, AdaFMConfig
from .cfsnet import CFSNet, CFSNetConfig
from .cresmd import CResMD, CResMDConfig
from .dni import DNI, DNIConfig, interpolate_networks
from .dynamicnet import DynamicNet, DynamicNetConfig
from .dynamicnet_style import StyleDynamicNet, StyleDynamicNetConfig
from .ftn import FTN, FTNConfig
from .tsnet import TATSNet, TATSNetConfig, TSNet, TSNetConfig

#: name -> (class, config class), in the form of :data:`tunableconv.models.ARCHITECTURES`.
BASELINES = {
    "dni": (DNI, DNIConfig),
    "adafm": (AdaFM, AdaFMConfig),
    "cfsnet": (CFSNet, CFSNetConfig),
    "dynamicnet": (DynamicNet, DynamicNetConfig),
    "cresmd": (CResMD, CResMDConfig),
    "ftn": (FTN, FTNConfig),
    "tsnet": (TSNet, TSNetConfig),
    "ta-tsnet": (TATSNet, TATSNetConfig),
}

#: rivals on the style network (not the ResNet contract above), in the same form
STYLE_BASELINES = {
    "dynamicnet-style": (StyleDynamicNet, StyleDynamicNetConfig),
}

__all__ = [
    "BASELINES", "STYLE_BASELINES", "Baseline", "BaselineConfig", "Stage", "count_parameters", "ALPHA_SPACES", "resnet_receptive_field",
    "DNI", "DNIConfig", "interpolate_networks", "AdaFM", "AdaFMConfig", "CFSNet", "CFSNetConfig",
    "DynamicNet", "DynamicNetConfig", "StyleDynamicNet", "StyleDynamicNetConfig", "CResMD", "CResMDConfig", "FTN", "FTNConfig",
    "TSNet", "TSNetConfig", "TATSNet", "TATSNetConfig",
]
