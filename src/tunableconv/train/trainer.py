"""The training loop: parametric multi-loss optimisation, readable top to bottom.

Every step:

1. a batch of clean patches is cropped from the training images, degraded by the task
   (:meth:`~tunableconv.tasks.Task.degrade`: the input, one target per objective, the true
   degradation levels as ``condition``), and per-sample interactive parameters p are drawn
   (all in the data workers);
2. the model runs as ``model(input, p)`` and the *same* p mixes the objectives:
   ``loss = mean_b Σ_i p_bi · w_i · L_i(output_b, batch_b)``. A model conditioned on the
   degradation (``conditioned_on = "condition"``, e.g. CResMD as published) runs as
   ``model(input, condition)`` instead; the loss still gets p;
3. backward, optional gradient clipping, optimiser and LR-schedule step, optional EMA (with
   warm-up, see :class:`EMA`); discriminators of adversarial objectives take their own step
   with their own optimiser and LR schedule (``train.disc``).

Determinism and exact resume: every random choice of step s and global sample i (image,
crop, flips, noise, p) comes from a generator seeded by (seed, s, i) (the streams of
:mod:`tunableconv.seeding`). The data stream therefore has no state to save, the same
samples reach the same places whatever the number of workers or processes, and a run
killed at any time and resumed from its last checkpoint ends with the same weights as an
uninterrupted run (on the CPU, same thread count).

Distributed data parallel: launched by ``torchrun``; process r of W takes samples
[r·B/W, (r+1)·B/W) of every global batch of size B; gradients are averaged by DDP, so the
update equals the single-process one on the same global batch.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InputError
from ..seeding import STEP, generator
from ..tasks import Sample, Task, build_task
from .checkpoint import load_checkpoint, read_checkpoint_values, remove_stale_temporaries, save_checkpoint
from .config import Recipe

LATEST = "latest.safetensors"
FINAL = "model.safetensors"
LOG = "log.jsonl"
SUMMARY = "summary.json"
RECIPE = "recipe.yaml"


# ----------------------------------------------------------------------------------------
# checks before any work
# ----------------------------------------------------------------------------------------
def check_run_folder(out: str | os.PathLike) -> Path:
    """``out`` can be a run folder: it is a folder or does not exist yet, and no part of its
    path is a file (checked before anything is written)."""
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                raise InputError(f"cannot use {out} as a run folder: {p} is a file, not a folder")
            break
    return out


def check_device(device: str) -> None:
    """The device of ``train.device`` exists on this machine."""
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError(f"train.device is {device} but torch sees no CUDA GPU here (use --set train.device=cpu)")
        index = int(device[5:]) if device.startswith("cuda:") else 0
        if index >= torch.cuda.device_count():
            raise InputError(f"train.device is {device} but there are {torch.cuda.device_count()} CUDA GPU(s)")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("train.device is mps but torch sees no Apple GPU here (use --set train.device=cpu)")


def _flat(d: Any, prefix: str) -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}.{k}"))
        return out or {prefix: {}}
    return {prefix: d}


def check_resumable(recipe: Recipe, checkpoint: str | os.PathLike) -> dict[str, Any]:
    """Refuse to resume ``checkpoint`` with ``recipe`` when its model differs from the one the
    checkpoint was trained with (naming the first changed field) or when the run has done
    more steps than ``train.steps``. Reads the checkpoint's header only; returns its plain
    values (``step``, ``recipe``, ...)."""
    checkpoint = Path(checkpoint)
    values = read_checkpoint_values(checkpoint)
    run = checkpoint.parent
    stored = values.get("recipe")
    if isinstance(stored, dict) and isinstance(stored.get("model"), dict):
        then, now = _flat(stored["model"], "model"), _flat(dataclasses.asdict(recipe.model), "model")

        def show(flat: dict[str, Any], key: str) -> str:
            return f"{key} = {flat[key]!r}" if key in flat else f"no {key}"

        for key in sorted(set(then) | set(now)):
            if key not in then or key not in now or then[key] != now[key]:
                raise InputError(f"the checkpoint in {run} does not match the recipe: it was trained with "
                                 f"{show(then, key)}, the recipe now has {show(now, key)} (a resumed run keeps its "
                                 "model; change it back, or start a new run with another --out)")
    done = values.get("step")
    if isinstance(done, int) and done > recipe.train.steps:
        raise InputError(f"the run in {run} has done {done} steps already: the total (train.steps, --steps) must be at "
                         f"least {done}, got {recipe.train.steps}")
    return values


# ----------------------------------------------------------------------------------------
# data: one item = one step's (local) batch
# ----------------------------------------------------------------------------------------
class StepBatches(torch.utils.data.Dataset):
    """Item s is this process's share of the global batch of step s, fully seeded.

    An item is the dict of :meth:`~tunableconv.tasks.Sample.to_batch` (``input``, ``clean``,
    ``condition``, ``target_<objective>``; each ``(B_local, ...)``) plus ``p`` ``(B_local, P)``.
    Per sample i: the image index, the crop and flips, the task's degradation, then p, all
    from the stream (seed, s, i); p shared by the step or a group comes from those streams.
    """

    def __init__(self, images, task: Task, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if batch_size % world:
            raise InputError(f"batch size {batch_size} is not divisible by the {world} processes")
        self.images, self.task, self.batch_size, self.seed = images, task, batch_size, seed
        self.local = range(rank * batch_size // world, (rank + 1) * batch_size // world)

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        samples, ps = [], []
        shared_p = self.task.sample_p(generator(self.seed, step, STEP))  # used when p is per batch / per group
        for i in self.local:
            g = generator(self.seed, step, i)
            idx = int(torch.randint(len(self.images), (1,), generator=g))
            clean = self.images.sample(idx, g)["clean"]
            samples.append(self.task.degrade(clean, g))
            ps.append(self.task.choose_p(g, shared_p, step, i))
        return {**Sample.stack(samples).to_batch(), "p": torch.stack(ps)}


# ----------------------------------------------------------------------------------------
# schedule and EMA
# ----------------------------------------------------------------------------------------
def lr_factor(step: int, cfg, steps: int | None = None) -> float:
    """LR multiplier at ``step`` (0-based): linear warm-up, then cosine / step / constant.

    ``cfg`` has ``warmup_steps, schedule, min_lr_ratio, milestones, gamma`` and, unless
    ``steps`` (the run length the cosine spans) is given, ``steps``.
    """
    steps = cfg.steps if steps is None else steps
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        span = max(1, steps - cfg.warmup_steps)
        t = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "step":
        return cfg.gamma ** sum(step >= m for m in cfg.milestones)
    if cfg.schedule == "constant":
        return 1.0
    raise InputError(f"unknown schedule {cfg.schedule!r} (cosine, step, constant)")


class EMA:
    r"""Exponential moving average of a model's floating-point tensors, with warm-up.

    Update ``n`` (0-based: ``n`` updates came before it) of the shadow θ̄ towards the weights θ
    uses the effective decay of TensorFlow's ``tf.train.ExponentialMovingAverage(decay,
    num_updates=n)``::

        d_n = min(decay, (1 + n) / (10 + n)),     θ̄ ← d_n · θ̄ + (1 − d_n) · θ

    (non-float tensors are copied). θ̄ starts as the initial weights θ_0.

    Why: with a constant ``d`` the initial (random) weights keep the share ``d^N`` of θ̄ after
    N updates — 0.999^1000 = 0.37 —, so a short run exported mostly its initialisation. With
    the warm-up, while ``d_n = (1 + n)/(10 + n)`` (i.e. for n < (10·decay − 1)/(1 − decay),
    8990 updates at 0.999) the products telescope: after N updates θ̄ = Σ_{k=0..N} w_k θ_k with

        w_0 = Π_{n<N} d_n = 1 / C(N + 9, 9),      w_k = C(k + 8, 8) / C(N + 9, 9)  (k ≥ 1),

    which sum to 1 (hockey-stick identity). The share of the initialisation is 1/C(N+9, 9)
    (0.1 after 1 update, 5e-4 after 5, 1.1e-5 after 10, 3.5e-22 after 1000); the weight of
    update k grows like k^8, so θ̄ averages roughly the last N/9 updates. Once ``d_n`` reaches
    ``decay`` it is the plain EMA of that decay. In general d_n ≤ decay, so θ̄ forgets at least as fast as the
    plain EMA: after a jump of θ, the share of the old value after m further updates is
    ≤ decay^m.

    :attr:`updates` (n) is part of the training state: the trainer saves it with the shadow
    so a resumed run continues the same decays (bit-identical to an uninterrupted run).
    """

    #: the warm-up constant: d_n = (1 + n) / (WARMUP + n)
    WARMUP = 10

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def current_decay(self) -> float:
        """d_n of the next update."""
        n = self.updates
        return min(self.decay, (1 + n) / (self.WARMUP + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        d = self.current_decay()
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v, 1 - d)
            else:
                self.shadow[k].copy_(v)
        self.updates += 1


# ----------------------------------------------------------------------------------------
# the trainer
# ----------------------------------------------------------------------------------------
@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> DistInfo:
    """Join the torchrun process group if launched by torchrun (gloo on CPU, NCCL on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


class Trainer:
    """Train a recipe into a run folder; resumable.

    Run folder layout: ``recipe.yaml``, ``log.jsonl`` (one JSON object per logged step and per
    validation), ``latest.safetensors`` (checkpoint), ``model.safetensors`` (final weights
    with metadata, EMA weights when EMA is on), ``summary.json``.
    """

    def __init__(self, recipe: Recipe, out: str | os.PathLike, *, task: Task | None = None, progress: bool = True) -> None:
        """``task``: the task object of ``recipe`` (default ``build_task(recipe)``); it builds
        the model and the loss, degrades the samples, draws p and validates.

        The recipe is validated first (:meth:`Recipe.validate`), then the device and the run
        folder ``out`` (a folder or a new path, not a file): a bad value is a one-line
        :class:`InputError` before anything is loaded, built or written."""
        if task is not None and task.recipe is not recipe:
            raise InputError(f"the task object was built for another recipe ({task.recipe.name!r}, not {recipe.name!r})")
        recipe.validate()  # every field, before anything is loaded, built or written
        check_device(recipe.train.device)
        self.recipe = recipe
        self.out = check_run_folder(out)
        self.progress = progress
        cfg = recipe.train
        self.dist = init_distributed(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.device = torch.device(cfg.device if not cfg.device.startswith("cuda") else f"cuda:{self.dist.local_rank}")
        self.task = task if task is not None else build_task(recipe)
        torch.manual_seed(cfg.seed)  # model initialisation
        self.model = self.task.build_model(recipe).to(self.device)
        self.loss = self.task.build_loss().to(self.device)
        self.ddp_model: nn.Module = self.model
        if self.dist.world > 1:
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        # staged methods (the rival baselines) train different parts with a fixed p per stage
        self.stages = self.model.training_stages(cfg.steps) if hasattr(self.model, "training_stages") else None
        self.stage_index = 0
        self.optimizer = self._make_optimizer(self._trainable(0))
        self.ema = EMA(self.model, cfg.ema) if cfg.ema > 0 else None
        if cfg.disc.schedule not in ("generator", "cosine", "step", "constant"):
            raise InputError(f"unknown train.disc.schedule {cfg.disc.schedule!r} (generator, cosine, step, constant)")
        self.disc_optimizers = [self._make_optimizer(d.parameters(), cfg.disc) for d in self.loss.discriminators()]
        self.step = 0
        self.elapsed = 0.0  # training wall time accumulated over sessions
        self._recipe_pending = False  # recipe.yaml to be written with the next checkpoint (resumed runs)

    # --- stages --------------------------------------------------------------------------
    def stage_bounds(self) -> list[tuple[int, int]]:
        """[start, end) step range of each stage (one stage spanning the run if not staged)."""
        if not self.stages:
            return [(0, self.recipe.train.steps)]
        bounds, start = [], 0
        for st in self.stages:
            bounds.append((start, start + st.steps))
            start += st.steps
        return bounds

    def stage_at(self, step: int) -> int:
        for i, (a, b) in enumerate(self.stage_bounds()):
            if a <= step < b:
                return i
        return len(self.stage_bounds()) - 1

    def _trainable(self, index: int) -> list[nn.Parameter]:
        """Parameters stage ``index`` trains; all others get requires_grad=False."""
        if not self.stages:
            return list(self.model.parameters())
        params = list(self.stages[index].trainable(self.model))
        keep = {id(p) for p in params}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in keep)
        return params

    def _enter_stage(self, index: int, run_hook: bool) -> None:
        self.stage_index = index
        # begin(): the stage's on_start hook, then requires_grad only on what it trains
        params = self.stages[index].begin(self.model) if run_hook else self._trainable(index)
        self.optimizer = self._make_optimizer(params)
        if self.dist.world > 1:  # DDP registers hooks for the parameters that need grad: wrap again
            self.ddp_model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def _stage_lr_factor(self) -> float:
        cfg = self.recipe.train
        if not self.stages:
            return lr_factor(self.step, cfg)
        start, end = self.stage_bounds()[self.stage_index]
        return lr_factor(self.step - start, dataclasses.replace(cfg, steps=end - start))

    def _disc_lr_factor(self) -> float:
        """LR multiplier of the discriminators at this step (``train.disc.schedule``)."""
        cfg = self.recipe.train
        if cfg.disc.schedule == "generator":
            return self._stage_lr_factor()
        return lr_factor(self.step, cfg.disc, steps=cfg.steps)

    def _make_optimizer(self, params, cfg=None) -> torch.optim.Optimizer:
        """An optimiser from ``cfg`` (fields optimizer, lr, betas, weight_decay; default ``train``)."""
        where = "train" if cfg is None else "train.disc"
        cfg = self.recipe.train if cfg is None else cfg
        kinds = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
        if cfg.optimizer not in kinds:
            raise InputError(f"unknown {where}.optimizer {cfg.optimizer!r} (adam, adamw)")
        return kinds[cfg.optimizer](params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)

    # --- checkpoints ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "stage": self.stage_index,
            "elapsed": self.elapsed,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.shadow if self.ema else None,
            "ema_updates": self.ema.updates if self.ema else None,
            "discriminators": [d.state_dict() for d in self.loss.discriminators()],
            "disc_optimizers": [o.state_dict() for o in self.disc_optimizers],
            "cpu_rng": torch.get_rng_state(),
            "recipe": self.recipe.to_dict(),  # what the checkpoint was trained with (checked on resume)
        }

    def save(self) -> None:
        if self.dist.is_main:
            if self._recipe_pending:  # a resumed run's recipe.yaml changes with its first new checkpoint
                self.recipe.save(self.out / RECIPE)
                self._recipe_pending = False
            save_checkpoint(self.state(), self.out / LATEST)

    def load(self, path: str | os.PathLike) -> None:
        """Continue from the checkpoint ``path``; a one-line :class:`InputError` when it does not
        match the recipe (:func:`check_resumable`, or tensors of other shapes)."""
        check_resumable(self.recipe, path)
        st = load_checkpoint(path, device=str(self.device))
        try:
            self._load_state(st)
        except (RuntimeError, ValueError, KeyError, IndexError, TypeError) as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            first = lines[0] if lines else repr(exc)
            detail = next((line for line in lines if "size mismatch" in line or "Missing" in line), first)
            raise InputError(f"the checkpoint {path} does not match the recipe (was model or task changed since it was "
                             f"saved?): {detail[:200]}") from None

    def _load_state(self, st: dict[str, Any]) -> None:
        self.model.load_state_dict(st["model"])
        if self.stages:  # the optimiser of the stage the run stopped in (its hook already ran)
            self._enter_stage(int(st.get("stage", 0)), run_hook=False)
        self.optimizer.load_state_dict(st["optimizer"])
        if self.ema is not None and st.get("ema") is not None:
            self.ema.shadow = {k: v.to(self.device) for k, v in st["ema"].items()}
            # checkpoints from before the warm-up have no count: the EMA was updated once per step
            n = st.get("ema_updates")
            self.ema.updates = int(st["step"] if n is None else n)
        for d, s in zip(self.loss.discriminators(), st.get("discriminators") or []):
            d.load_state_dict(s)
        for o, s in zip(self.disc_optimizers, st.get("disc_optimizers") or []):
            o.load_state_dict(s)
        torch.set_rng_state(st["cpu_rng"].cpu())
        self.step = int(st["step"])
        self.elapsed = float(st.get("elapsed", 0.0))

    # --- logging -------------------------------------------------------------------------
    def log(self, record: dict[str, Any]) -> None:
        if not self.dist.is_main:
            return
        with open(self.out / LOG, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "step":
                    self._tb.add_scalar(k, v, record.get("step", 0))

    def _trim_log(self) -> None:
        """Keep the log records of the steps up to the checkpoint's (:attr:`step`): those a
        killed run logged after its last checkpoint are done again on resume, and a
        half-written last line is dropped. Rewritten atomically, only when something changes."""
        from ..io import atomic_write

        path = self.out / LOG
        if not path.is_file():
            return
        lines = path.read_text().splitlines()
        keep = []
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            step = record.get("step") if isinstance(record, dict) else None
            if isinstance(step, (int, float)) and step > self.step:
                continue
            keep.append(line)
        if keep != lines:
            atomic_write(path, "".join(line + "\n" for line in keep).encode())

    def _open_tensorboard(self):
        if not self.dist.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except Exception:  # tensorboard not installed: JSONL only
            return None
        return SummaryWriter(str(self.out / "tb"))

    # --- validation ----------------------------------------------------------------------
    @torch.no_grad()
    def validate(self) -> dict[str, Any]:
        model = self.model
        backup = None
        if self.ema is not None:
            backup = {k: v.clone() for k, v in model.state_dict().items()}
            model.load_state_dict(self.ema.shadow)
        model.eval()
        try:
            result = self.task.validate(model, self.val_images, self.device)
        finally:
            model.train()
            if backup is not None:
                model.load_state_dict(backup)
        return result

    # --- the loop ------------------------------------------------------------------------
    def _loss_is_finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss is finite in every process (under DDP all of them agree, so that
        they stop together)."""
        finite = math.isfinite(loss.item())
        if self.dist.world > 1:
            import torch.distributed as dist

            flag = torch.tensor([1.0 if finite else 0.0], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            finite = bool(flag.item() > 0)
        return finite

    def _divergence(self, loss: torch.Tensor) -> InputError:
        """The one-line error of a NaN/Inf loss at the coming step (the last checkpoint is kept)."""
        cfg = self.recipe.train
        hint = "" if cfg.grad_clip > 0 else " or set train.grad_clip"
        return InputError(f"loss became NaN/Inf at step {self.step + 1} (loss = {loss.item()}); lower train.lr "
                          f"(now {cfg.lr:g}){hint}")

    def warm_start(self, path: str | os.PathLike) -> None:
        """Start the model from the model file ``path`` (``model.init``): the same architecture,
        either the same arguments (loaded as they are) or its plain twin's, whose kernels fill
        every kernel set (:func:`tunableconv.nn.load_plain_weights`). One-line
        :class:`InputError` for a missing file or another network."""
        from ..models.files import load_model
        from ..nn import load_plain_weights

        if not Path(path).is_file():
            raise InputError(f"model.init: no model file at {path} (train the network to start from first)")
        if hasattr(self.model, "load_plain_weights") and not _is_model_file(path):
            # a user's own safetensors state dict of the plain architecture (no tunableconv metadata)
            from safetensors.torch import load_file

            try:
                self.model.load_plain_weights(load_file(str(path)))
            except Exception as exc:  # noqa: BLE001 - any failure is one line naming the file
                raise InputError(f"model.init: {path} is neither a tunableconv model file nor plain "
                                 f"{self.recipe.model.arch} weights ({str(exc).splitlines()[0]})") from None
            if self.ema is not None:
                self.ema = EMA(self.model, self.recipe.train.ema)
            return
        source, info = load_model(path)
        # a rival's main network(s) from a plain network of its main architecture (the ResNet; the style network)
        main_from = hasattr(self.model, "load_main") and info.architecture == getattr(self.model, "main_architecture", "resnet") \
            and getattr(source, "num_params", 0) == 0
        if info.architecture != self.recipe.model.arch and not main_from:
            what, also = f"a {info.architecture} network", ""
            if hasattr(self.model, "load_main"):
                main_arch = getattr(self.model, "main_architecture", "resnet")
                what += " with knobs" if info.architecture == main_arch else ""
                also = f" (or a plain {main_arch}, its main network)"
            raise InputError(f"model.init: {path} is {what}, the recipe trains a {self.recipe.model.arch}{also}")
        state = source.state_dict()
        try:
            if main_from:
                self.model.load_main(state)
            elif getattr(source, "num_params", 0) == 0 and getattr(self.model, "num_params", 0) > 0:
                if hasattr(self.model, "load_plain_weights"):  # a converted architecture (NAFNet, SwinIR)
                    self.model.load_plain_weights(state)
                else:
                    load_plain_weights(self.model, state)
            else:
                self.model.load_state_dict(state)
        except (RuntimeError, ValueError) as exc:
            raise InputError(f"model.init: {path} does not fit the recipe's model ({str(exc).splitlines()[0]})") from None
        if self.ema is not None:
            self.ema = EMA(self.model, self.recipe.train.ema)

    def fit(self, resume: bool = False, stop_at: int | None = None) -> dict[str, Any]:
        """Train to ``train.steps`` (continuing the checkpoint in the run folder with ``resume``).

        ``stop_at``: stop after this step with a checkpoint, as if killed there, and return
        (a later ``fit(resume=True)`` continues).
        """
        cfg, rc = self.recipe.train, self.recipe
        resumed = resume and (self.out / LATEST).is_file()
        if resumed:
            self.load(self.out / LATEST)  # refused (a one-line error) before anything in the folder changes
        elif rc.model.init:
            self.warm_start(rc.model.init)
        if self.dist.is_main:
            try:
                self.out.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"cannot create the run folder {self.out}: {exc.strerror or exc}") from None
            for name in (LATEST, FINAL, LOG, SUMMARY, RECIPE):  # what a SIGKILL mid-write left
                remove_stale_temporaries(self.out / name)
            self._trim_log()
            # a new run writes its recipe now; a resumed one (maybe with new train.* values) with
            # its next checkpoint, so that a session that fails first leaves recipe.yaml as it was
            self._recipe_pending = resumed
            if not resumed:
                rc.save(self.out / RECIPE)
        self._tb = self._open_tensorboard()
        train_images = self.task.train_images(rc)
        self.val_images = self.task.val_images(rc)
        batches = StepBatches(train_images, self.task, cfg.batch_size, cfg.seed, self.dist.rank, self.dist.world)
        loader = torch.utils.data.DataLoader(
            batches, batch_size=None, sampler=range(self.step, cfg.steps), num_workers=rc.data.num_workers,
            persistent_workers=False, prefetch_factor=4 if rc.data.num_workers else None,
        )
        from tqdm import tqdm

        bar = tqdm(total=cfg.steps, initial=self.step, desc=rc.name, disable=not (self.progress and self.dist.is_main),
                   dynamic_ncols=True, file=sys.stderr)
        self.model.train()
        t_start = time.perf_counter()
        t_mark, elapsed0 = t_start, self.elapsed
        last_val: dict[str, Any] | None = None
        if self.stages and self.step == 0:
            self._enter_stage(0, run_hook=True)
        for batch in loader:
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            if cfg.channels_last and batch["input"].dim() == 4:  # NHWC activations (faster CPU convs)
                batch["input"] = batch["input"].contiguous(memory_format=torch.channels_last)
            if self.stages:
                index = self.stage_at(self.step)
                if index != self.stage_index:
                    self._enter_stage(index, run_hook=True)
                fixed_p = self.stages[index].p
                if fixed_p is not None:  # the same fixed p reaches the model and the loss
                    batch["p"] = torch.tensor(fixed_p, device=self.device, dtype=torch.float32).expand(batch["p"].shape[0], -1)
            for g in self.optimizer.param_groups:
                g["lr"] = cfg.lr * self._stage_lr_factor()
            out = self.task.forward(self.ddp_model, batch)
            loss, terms = self.loss(out, batch, batch["p"])
            if hasattr(self.model, "regularisation"):  # a model's own terms on its last forward (TSNet: FLOPs, sharing)
                extra, extra_terms = self.model.regularisation()
                loss, terms = loss + extra, {**terms, **extra_terms}
            if not self._loss_is_finite(loss):  # stop before the step spreads it into the weights
                bar.close()
                raise self._divergence(loss)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = None
            if cfg.grad_clip > 0:
                grad_norm = float(nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.grad is not None], cfg.grad_clip))
            self.optimizer.step()
            disc_lr = self.recipe.train.disc.lr * self._disc_lr_factor() if self.disc_optimizers else None
            for disc, opt in zip(self.loss.discriminators(), self.disc_optimizers):
                for g in opt.param_groups:
                    g["lr"] = disc_lr
                opt.zero_grad(set_to_none=True)
                self.loss.discriminator_loss(disc, out.detach(), batch).backward()
                if self.dist.world > 1:  # keep the discriminators identical across processes
                    import torch.distributed as dist

                    for prm in disc.parameters():
                        if prm.grad is not None:
                            dist.all_reduce(prm.grad)
                            prm.grad /= self.dist.world
                opt.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.step += 1
            self.elapsed = elapsed0 + time.perf_counter() - t_start
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                now = time.perf_counter()
                rec = {"step": self.step, "stage": self.stage_index, "loss": loss.item(), "lr": self.optimizer.param_groups[0]["lr"],
                       "sec_per_step": (now - t_mark) / cfg.log_every, "elapsed": self.elapsed}
                if disc_lr is not None:
                    rec["disc_lr"] = disc_lr
                rec.update({f"loss_{k}": v for k, v in terms.items()})
                if grad_norm is not None:
                    rec["grad_norm"] = grad_norm
                t_mark = now
                self.log(rec)
                bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{rec['lr']:.1e}")
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps or self.step == stop_at:
                self.save()
            if self.step == stop_at and stop_at < cfg.steps:
                bar.close()
                return {"recipe": rc.name, "steps": self.step, "stopped": True, "train_wall_seconds": round(self.elapsed, 1)}
            if self.dist.is_main and (self.step % cfg.val_every == 0 or self.step == cfg.steps):
                last_val = self.validate()
                self.log({"step": self.step, "val": last_val, "elapsed": self.elapsed})
        bar.close()
        summary = {"recipe": rc.name, "steps": self.step, "train_wall_seconds": round(self.elapsed, 1),
                   "processes": self.dist.world, "threads": torch.get_num_threads(), "val": last_val}
        if self.dist.is_main:
            if self._recipe_pending:  # resumed at the end: nothing was trained, the run completes
                rc.save(self.out / RECIPE)
                self._recipe_pending = False
            self.export_final(summary)
            from ..io import atomic_write

            atomic_write(self.out / SUMMARY, json.dumps(summary, indent=2).encode())
        if self._tb is not None:
            self._tb.close()
        if self.dist.world > 1:
            import torch.distributed as dist

            dist.barrier()
        return summary

    def export_final(self, summary: dict[str, Any]) -> Path:
        """Write ``model.safetensors`` (EMA weights if EMA is on) with metadata: the task, the
        recipe, the training summary, the task's facts, the knob list and the knob space
        (:meth:`~tunableconv.tasks.Task.knob_space` of the model)."""
        import inspect

        from ..models import save_model

        model = self.model
        if self.ema is not None:
            model = self.task.build_model(self.recipe)
            model.load_state_dict(self.ema.shadow)
        info = {"task": self.task.name, "recipe": self.recipe.to_dict(), "training": summary, **self.task.model_info()}
        if hasattr(model, "file_info"):  # what a model says about itself (TSNet: its searched architecture)
            info.update(model.file_info())
        space = self.task.knob_space(model)
        extra: dict[str, Any] = {}
        if "knob_space" in inspect.signature(save_model).parameters:  # model files of format 2 store it
            extra["knob_space"] = space
        return save_model(model.cpu() if model is not self.model else model, self.out / FINAL,
                          knobs=[{"name": k.name, "description": k.description} for k in space.knobs], info=info, **extra)


def _is_model_file(path: str | os.PathLike) -> bool:
    """Whether a safetensors file carries tunableconv model metadata (else: a bare state dict)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            return "architecture" in (f.metadata() or {})
    except Exception:  # noqa: BLE001 - not safetensors at all: load_model says so in one line
        return True
