"""Model architectures and model files.

Architectures are listed explicitly in :data:`ARCHITECTURES` (name -> (class, config class)):
the ResNet (tunable or plain from its own code), the rival methods, and the plain networks
that :mod:`.converted` makes tunable with ``make_tunable`` (NAFNet, SwinIR, the style network).
"""

from .baselines import BASELINES, STYLE_BASELINES
from .converted import CONVERTED, TunableNAFNet, TunableStyleNet, TunableSwinIR
from .files import load_model, read_metadata, save_model
from .resnet import ResNet, ResNetConfig

ARCHITECTURES = {
    "resnet": (ResNet, ResNetConfig),
    **BASELINES,  # dni, adafm, cfsnet, dynamicnet, cresmd, ftn, tsnet, ta-tsnet
    **STYLE_BASELINES,  # dynamicnet-style
    **CONVERTED,  # nafnet, swinir, stylenet
}

__all__ = ["ARCHITECTURES", "ResNet", "ResNetConfig", "TunableNAFNet", "TunableStyleNet", "TunableSwinIR", "load_model", "read_metadata", "save_model"]
