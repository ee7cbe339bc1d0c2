"""Training: recipes (dataclass configs), the trainer loop, checkpoints."""

from ..tasks import TaskSection
from .checkpoint import load_checkpoint, save_checkpoint
from .config import DataSection, ModelSection, Recipe, TrainSection
from .recipes import RECIPES, get_recipe
from .trainer import Trainer, lr_factor

__all__ = [
    "Recipe", "ModelSection", "DataSection", "TaskSection", "TrainSection", "RECIPES",
    "get_recipe", "Trainer", "lr_factor", "save_checkpoint", "load_checkpoint",
]
