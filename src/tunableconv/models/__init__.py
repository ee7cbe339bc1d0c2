"""Model architectures and model files.

Architectures are listed explicitly in :data:`ARCHITECTURES` (name -> (class, config class)):
the ResNet (tunable or plain from its own code), the rival methods, and the plain networks
that :mod:`.converted` makes tunable with ``make_tunable`` (NAFNet, SwinIR).
"""

from .baselines import BASELINES
from .converted import CONVERTED, TunableNAFNet, TunableSwinIR
from .files import load_model, read_metadata, save_model
from .resnet import ResNet, ResNetConfig

ARCHITECTURES = {
    "resnet": (ResNet, ResNetConfig),
    **BASELINES,  # dni, adafm, cfsnet, dynamicnet, cresmd, ftn
    **CONVERTED,  # nafnet, swinir
}

__all__ = ["ARCHITECTURES", "ResNet", "ResNetConfig", "TunableNAFNet", "TunableSwinIR", "load_model", "read_metadata", "save_model"]
