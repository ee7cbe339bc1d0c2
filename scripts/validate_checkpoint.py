"""The trainer's validation of a run's latest checkpoint, as JSON (for runs stopped with
``--stop-at`` before their next validation step).

    python scripts/validate_checkpoint.py runs/style3-fixednorms-small
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

from tunableconv.train import Recipe, Trainer
from tunableconv.train.trainer import LATEST


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    run = Path(args[0])
    torch.set_num_threads(1)
    recipe = Recipe.load(run / "recipe.yaml")
    trainer = Trainer(recipe, Path(tempfile.mkdtemp()) / "validate", progress=False)  # the run folder is not touched
    trainer.load(run / LATEST)
    trainer.val_images = trainer.task.val_images(recipe)
    print(json.dumps({"run": str(run), "step": trainer.step, "val": trainer.validate()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
