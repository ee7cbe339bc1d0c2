"""Model architectures and model files.

Architectures are listed explicitly in :data:`ARCHITECTURES` (name -> (class, config class)).
"""

from .baselines import BASELINES
from .files import load_model, read_metadata, save_model
from .resnet import ResNet, ResNetConfig

ARCHITECTURES = {
    "resnet": (ResNet, ResNetConfig),
    **BASELINES,  # dni, adafm, cfsnet, dynamicnet, cresmd, ftn
}

__all__ = ["ARCHITECTURES", "ResNet", "ResNetConfig", "load_model", "read_metadata", "save_model"]
