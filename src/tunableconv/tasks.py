"""Tasks: what a recipe learns — degradation, objectives, p sampling, knobs, validation.

A task object is what the trainer talks to. It builds the model and the parametric
multi-loss, turns a clean patch into a training sample (seeded by a generator), draws p,
and validates a model on full images at a grid of knob values. One class per task,
listed explicitly in :data:`TASKS`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .errors import InputError
from .train.config import Recipe

NOISE_KNOBS = [
    {"name": "fidelity", "description": "weight of the L1 distance to the clean image: noise removal"},
    {"name": "noise_preservation", "description": "weight of the distance to clean + beta*(noisy - clean): detail and grain kept"},
]


class DenoiseTask:
    """Gaussian denoising with two knobs on the simplex, p = (p_fidelity, p_noise).

    Objective 1 is the distance to the clean image, objective 2 the distance to the
    noise-preservation target ``clean + beta·(noisy − clean)``. The user-facing "strength"
    s in [0, 1] maps to p = (s, 1 − s). With ``fidelity_only`` (the fixed reference network)
    there is one objective and no knob.
    """

    name = "denoise"

    def __init__(self, recipe: Recipe) -> None:
        t = recipe.task
        if len(t.sigma) != 2 or not 0 <= t.sigma[0] <= t.sigma[1]:
            raise InputError(f"task.sigma must be [low, high] with 0 <= low <= high, got {t.sigma}")
        if not 0 <= t.beta < 1:
            raise InputError(f"task.beta must be in [0, 1), got {t.beta}")
        if t.mix not in ("losses", "targets"):
            raise InputError(f"task.mix must be losses or targets, got {t.mix!r}")
        self.cfg = t
        self.seed = recipe.train.seed  # seeds the group p (p_granularity=group:N)
        self.fidelity_only = t.fidelity_only
        self.num_params = 0 if t.fidelity_only else 2
        nparams_model = int(recipe.model.args.get("num_params", 2))
        if nparams_model != self.num_params:
            raise InputError(f"the denoise task needs model.args.num_params = {self.num_params}, got {nparams_model}")
        from .losses import make_sampler

        self.sampler = None if self.fidelity_only else make_sampler(
            t.sampler, 2, vertex_share=t.vertex_share or None, edge_share=t.edge_share or None)
        g = t.p_granularity
        if not (g in ("sample", "batch") or (g.startswith("group:") and g[6:].isdigit() and int(g[6:]) > 0)):
            raise InputError(f"task.p_granularity must be sample, batch or group:N, got {g!r}")
        self.group = {"sample": 1, "batch": 0}.get(g, int(g[6:]) if g.startswith("group:") else 1)

    # --- model and loss ------------------------------------------------------------------
    def build_model(self, recipe: Recipe) -> nn.Module:
        from .models import ARCHITECTURES

        if recipe.model.arch not in ARCHITECTURES:
            raise InputError(f"unknown architecture {recipe.model.arch!r}; known: {', '.join(ARCHITECTURES)}")
        cls, cfg_cls = ARCHITECTURES[recipe.model.arch]
        try:
            return cls(cfg_cls(**recipe.model.args))
        except TypeError as exc:
            raise InputError(f"bad model.args for {recipe.model.arch}: {exc}") from None

    def objectives(self) -> list[nn.Module]:
        from .losses import Fidelity, NoisePreservation

        fid = Fidelity(distance=self.cfg.loss)
        if self.fidelity_only:
            return [fid]
        return [fid, NoisePreservation(beta=self.cfg.beta, distance=self.cfg.loss)]

    def build_loss(self):
        from .losses import BlendedTargetLoss, ParametricMultiLoss

        if self.cfg.mix == "targets" and not self.fidelity_only:
            return BlendedTargetLoss(self.objectives())
        return ParametricMultiLoss(self.objectives())

    def knobs(self) -> list[dict]:
        return [] if self.fidelity_only else NOISE_KNOBS

    def model_info(self) -> dict[str, Any]:
        return {"beta": self.cfg.beta, "sigma_range": list(self.cfg.sigma),
                "strength": None if self.fidelity_only else "p = (s, 1 - s)"}

    # --- data ----------------------------------------------------------------------------
    def train_images(self, recipe: Recipe):
        from .data import training_dataset

        ds = training_dataset(recipe.data.train, data_root=recipe.data.root, patch_size=recipe.data.patch_size,
                              cache=recipe.data.cache, length=10_000)
        if hasattr(ds, "preload"):
            ds.preload()  # decode once, shared with forked workers
        return ds

    def val_images(self, recipe: Recipe) -> list[Tensor]:
        from .data import ImageFolderEval

        d = recipe.data
        ds = ImageFolderEval(d.val, max_images=d.val_images, crop=d.val_crop or None, data_root=d.root)
        return [ds[i]["clean"] for i in range(len(ds))]

    def degrade(self, clean: Tensor, g: torch.Generator) -> dict[str, Tensor]:
        """One training sample from a clean patch ``(3, H, W)``: sigma ~ U[low, high]/255."""
        low, high = self.cfg.sigma
        sigma = low + (high - low) * torch.rand((), generator=g)
        noisy = clean + (sigma / 255.0) * torch.randn(clean.shape, generator=g)
        return {"input": noisy, "noisy": noisy, "clean": clean}

    def sample_p(self, g: torch.Generator) -> Tensor:
        if self.fidelity_only:
            return torch.ones(0)
        return self.sampler(1, g)[0]

    def choose_p(self, g: torch.Generator, shared_p: Tensor, step: int, index: int) -> Tensor:
        """p of global sample ``index`` at ``step``: its own, the step's, or its group's."""
        if self.fidelity_only:
            return torch.ones(0)
        if self.group == 1:
            return self.sample_p(g)
        if self.group == 0:
            return shared_p
        from .train.trainer import sample_seed

        # the group's own stream: (run seed, step, -2 - group); -1 is the step's, >= 0 the samples'
        return self.sample_p(torch.Generator().manual_seed(sample_seed(self.seed, step, -2 - index // self.group)))

    def forward(self, model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
        if self.fidelity_only:
            return model(batch["input"])
        p = batch["p"]
        if self.group != 1 and bool((p == p[:1]).all()):
            p = p[0]  # one shared setting: the fused single-conv path
        return model(batch["input"], p)

    # --- validation ----------------------------------------------------------------------
    @torch.no_grad()
    def validate(self, model: nn.Module, images: list[Tensor], device: torch.device) -> dict[str, Any]:
        """PSNR against each objective's target at each strength of ``task.val_grid``,
        on the validation images with seeded noise of ``task.val_sigma``."""
        from .metrics import psnr

        objectives = self.objectives()
        grid = [None] if self.fidelity_only else list(self.cfg.val_grid)
        out: dict[str, Any] = {}
        g = torch.Generator().manual_seed(12345)
        sums: dict[str, float] = {}
        for clean in images:
            clean = clean.unsqueeze(0)
            noisy = clean + (self.cfg.val_sigma / 255.0) * torch.randn(clean.shape, generator=g)
            batch = {"clean": clean.to(device), "noisy": noisy.to(device), "input": noisy.to(device)}
            for s in grid:
                y = model(batch["input"]) if s is None else model(batch["input"], torch.tensor([s, 1 - s], device=device))
                tag = "fixed" if s is None else f"s={s:g}"
                for obj in objectives:
                    if hasattr(obj, "target"):
                        key = f"psnr_{obj.name}@{tag}"
                        sums[key] = sums.get(key, 0.0) + float(psnr(y.clamp(0, 1), obj.target(batch)))
        for k, v in sums.items():
            out[k] = round(v / max(1, len(images)), 3)
        return out


TASKS = {"denoise": DenoiseTask}


def build_task(recipe: Recipe):
    if recipe.task.name not in TASKS:
        raise InputError(f"unknown task {recipe.task.name!r}; known: {', '.join(TASKS)}")
    return TASKS[recipe.task.name](recipe)
