"""Named recipes. Each task has a ``small`` size (ends in <= 60 minutes on a 2-core CPU) and a
``paper`` size for GPU users (ResNet 16 blocks x 64 channels, batch 16, lr 1e-4, patch 64).

Explicit functions, no registry magic: :data:`RECIPES` maps a name to a function returning
a fresh :class:`Recipe`.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import InputError
from ..tasks import DeblurDenoiseTaskSection, DenoiseTaskSection, Restore3TaskSection, SRTaskSection, StyleTaskSection
from .config import DataSection, ModelSection, Recipe, TrainSection


def fixed_twin(recipe: Recipe, name: str) -> Recipe:
    """``recipe``'s fixed twin: the same network plain (no knobs, one kernel set), trained on
    the first objective only, with the same data, steps and seed."""
    recipe.name = name
    recipe.model.args.update(num_params=0, expansion=1)  # a plain convolution has nothing to expand
    recipe.task.fidelity_only = True
    return recipe


def denoise_small_v1() -> Recipe:
    """The first ``denoise-small`` (it trained the ``denoise`` v1 zoo model), frozen: the base of the
    method comparison (``tunableconv compare --budget small``) and of the knob-quality ablation
    (``scripts/ablation.py``), so their results stay reproducible when ``denoise-small`` improves.

    Tunable denoiser sized for this CPU: ResNet 6 blocks x 32 channels, patch 48, batch 16.
    """
    return Recipe(
        name="denoise-small-v1",
        model=ModelSection("resnet", dict(channels=32, num_blocks=6, num_params=2, mapping="affine", expansion=1)),
        data=DataSection(train="train/bsds400", patch_size=48, num_workers=1, val="cbsd68", val_images=4, val_crop=128),
        task=DenoiseTaskSection(name="denoise", sigma=[5.0, 50.0], beta=0.9, loss="l1", sampler="simplex"),
        train=TrainSection(steps=8000, batch_size=16, lr=1e-3, schedule="cosine", warmup_steps=100, grad_clip=1.0,
                           threads=1, log_every=20, val_every=1000, ckpt_every=200),
    )


def denoise_small() -> Recipe:
    """Tunable denoiser sized for this CPU: ResNet 6 blocks x 32 channels, patch 48, batch 16.

    ``denoise-small-v1`` plus what won the knob-quality ablation (``results/ablation``):

    - ``task.mix = "targets"``: the output is pulled towards the blended target sum_i p_i t_i
      (one L1) instead of the p-weighted sum of L1 distances to each target. At 1000 steps on
      the BSD100 hold-out this moved the raw knob's evenness error from 0.30 to 0.02 and the
      fidelity-end gap to the fixed twin from -0.85 to -0.45 dB; at 8000 steps the gap on
      CBSD68/Kodak24 is -0.05 to -0.06 dB (v1: -0.18 to -0.24).
    - ``model.args.expansion = 2``: the affine map mixes 4 stored kernels per convolution (2 per
      objective; inference still runs one conv). On top of the target mix: +0.27 dB at 1000
      steps at the same step time; at 8000 steps +0.01 to +0.04 dB *above* the fixed twin.
    """
    r = denoise_small_v1()
    r.name = "denoise-small"
    r.task.mix = "targets"
    r.model.args["expansion"] = 2
    return r


def denoise_fixed_small() -> Recipe:
    """The fixed fidelity-only twin of ``denoise-small``: same size, data, steps and seed."""
    r = denoise_small()
    r.name = "denoise-fixed-small"
    r.model.args["num_params"] = 0
    r.model.args["expansion"] = 1  # a plain convolution has nothing to expand
    r.task.fidelity_only = True
    return r


def denoise_paper() -> Recipe:
    """The paper's scale (for GPU users): ResNet 16 x 64, batch 16, lr 1e-4, patch 64."""
    return Recipe(
        name="denoise-paper",
        model=ModelSection("resnet", dict(channels=64, num_blocks=16, num_params=2, mapping="affine", expansion=1)),
        data=DataSection(train="train/bsds400", patch_size=64, num_workers=4, val="cbsd68", val_images=68, val_crop=0),
        task=DenoiseTaskSection(name="denoise", sigma=[5.0, 50.0], beta=0.9, loss="l1", sampler="simplex"),
        train=TrainSection(steps=500_000, batch_size=16, lr=1e-4, schedule="step", milestones=[200_000, 400_000],
                           gamma=0.5, log_every=100, val_every=10_000, ckpt_every=5_000, device="cuda"),
    )


def denoise_fixed_paper() -> Recipe:
    """The fixed fidelity-only twin of ``denoise-paper``: same size, data, steps and seed."""
    r = denoise_paper()
    r.name = "denoise-fixed-paper"
    r.model.args["num_params"] = 0
    r.task.fidelity_only = True
    return r


#: the L1 phase of ``sr4-small`` (= the whole of ``sr4-fixed-small``) and its multi-loss phase
SR_L1_STEPS = 8000
SR_GAN_STEPS = 1000

#: the run length of ``deblur-denoise-small`` (see its docstring for the measurement)
SMALL_STEPS = 4000


def deblur_denoise_small() -> Recipe:
    """Joint deblurring and denoising, two independent knobs (denoise, deblur) on the cube, sized
    for this CPU like ``denoise-small``: ResNet 6 blocks x 32 channels, expansion 2 (2 stored
    kernels per knob direction), the blended-target loss, patch 48, batch 16, cosine lr 1e-3.

    Steps (measured on this project's 2-core CPU, ``train.threads=1``, 2026-12-01): a training
    step (forward, loss, backward, Adam) costs 0.63 s of CPU time (30 steps after warm-up;
    ``denoise-small`` 0.61 s in the same run), the batch's degradations 0.05 s in the data
    worker; the trainer's end-to-end wall time was 1.15-1.3 s/step over 50 steps while ~4
    processes shared the 2 cores. 4000 steps are then ~43 min on a free core (~60 min with the
    core shared at ~0.9 s/step), within the 60-minute budget of a ``small`` recipe.
    """
    return Recipe(
        name="deblur-denoise-small",
        model=ModelSection("resnet", dict(channels=32, num_blocks=6, num_params=2, mapping="affine", expansion=2,
                                          domain="cube")),
        data=DataSection(train="train/bsds400", patch_size=48, num_workers=1, val="cbsd68", val_images=4, val_crop=128),
        task=DeblurDenoiseTaskSection(mix="targets"),
        train=TrainSection(steps=SMALL_STEPS, batch_size=16, lr=1e-3, schedule="cosine", warmup_steps=100, grad_clip=1.0,
                           threads=1, log_every=20, val_every=1000, ckpt_every=200),
    )


def deblur_denoise_fixed_small() -> Recipe:
    """The fixed twin of ``deblur-denoise-small``, trained only at p = (1, 1) (the ``restored``
    target, no knobs): same size, data, steps and seed."""
    r = deblur_denoise_small()
    r.name = "deblur-denoise-fixed-small"
    r.model.args["num_params"] = 0
    r.model.args["expansion"] = 1  # a plain convolution has nothing to expand
    r.task.fidelity_only = True
    return r


def deblur_denoise_paper() -> Recipe:
    """The paper's scale (for GPU users): ResNet 16 x 64, batch 16, patch 64, lr 1e-4 halved at
    200k and 400k of 500k steps; the knobs and loss of ``deblur-denoise-small``."""
    return Recipe(
        name="deblur-denoise-paper",
        model=ModelSection("resnet", dict(channels=64, num_blocks=16, num_params=2, mapping="affine", expansion=2,
                                          domain="cube")),
        data=DataSection(train="train/bsds400", patch_size=64, num_workers=4, val="cbsd68", val_images=68, val_crop=0),
        task=DeblurDenoiseTaskSection(mix="targets"),
        train=TrainSection(steps=500_000, batch_size=16, lr=1e-4, schedule="step", milestones=[200_000, 400_000],
                           gamma=0.5, log_every=100, val_every=10_000, ckpt_every=5_000, device="cuda"),
    )


def deblur_denoise_fixed_paper() -> Recipe:
    """The fixed twin of ``deblur-denoise-paper`` (the ``restored`` target, no knobs)."""
    r = deblur_denoise_paper()
    r.name = "deblur-denoise-fixed-paper"
    r.model.args["num_params"] = 0
    r.model.args["expansion"] = 1
    r.task.fidelity_only = True
    return r


#: the run length of ``restore3-small`` and its twins (see ``restore3_small`` for the measurement)
RESTORE3_SMALL_STEPS = 5000


def restore3_small() -> Recipe:
    """Blur, noise and JPEG with three independent knobs (deblur, denoise, dejpeg) on the cube,
    sized for this CPU like ``deblur-denoise-small``: ResNet 6 blocks x 32 channels, expansion 2
    (2 stored kernels per knob direction), every block tunable, the blended-target loss over the
    8 corners, the TSNet paper's three training regimes, patch 48, batch 16, cosine lr 1e-3.

    Steps (measured on this project's 2-core CPU, one thread, 2026-12-06, with other trainings
    loading the machine to ~2.5): a training step (forward, loss, backward, Adam; batch 16 x 48²,
    per-sample p) costs 0.39 s of CPU time, timed in alternation with ``deblur-denoise-small``
    (0.37 s), ``restore3-trunk-small`` (0.36 s) and ``restore3-fixed-small`` (0.31 s); the batch's
    degradations (two JPEG round trips per sample) 0.04 s in the data worker. The trainer's
    end-to-end wall time (``tunableconv train --recipe restore3-small --set train.threads=1
    --steps 60``) was 0.52 s/step (0.45-0.61 per 10 steps). 5000 steps are then ~45 min, within
    the 60-minute budget of a ``small`` recipe up to ~0.7 s/step.
    """
    return Recipe(
        name="restore3-small",
        model=ModelSection("resnet", dict(channels=32, num_blocks=6, num_params=3, mapping="affine", expansion=2,
                                          domain="cube")),
        data=DataSection(train="train/bsds400", patch_size=48, num_workers=1, val="cbsd68", val_images=4, val_crop=128),
        task=Restore3TaskSection(mix="targets"),
        train=TrainSection(steps=RESTORE3_SMALL_STEPS, batch_size=16, lr=1e-3, schedule="cosine", warmup_steps=100,
                           grad_clip=1.0, threads=1, log_every=20, val_every=1000, ckpt_every=200),
    )


def restore3_trunk_small() -> Recipe:
    """``restore3-small`` with a shared trunk: the head and the first half of the blocks
    (``model.args.trunk_blocks = 3`` of 6) are plain convolutions, independent of p, so
    ``model.sweep(x, ps)`` computes them once for all 27 effects; the rest is tunable. Same data,
    loss, steps and seed. Choose another k with ``--set model.args.trunk_blocks=K`` (0 <= K <=
    num_blocks; 0 is ``restore3-small``)."""
    r = restore3_small()
    r.name = "restore3-trunk-small"
    r.model.args["trunk_blocks"] = r.model.args["num_blocks"] // 2
    return r


def restore3_fixed_small() -> Recipe:
    """The fixed twin of ``restore3-small``, trained only at p = (1, 1, 1) (the ``restored``
    target, no knobs): same size, data, steps and seed."""
    return fixed_twin(restore3_small(), "restore3-fixed-small")


def restore3_paper() -> Recipe:
    """The paper's scale (for GPU users): ResNet 16 x 64, batch 16, patch 64, lr 1e-4 halved at
    200k and 400k of 500k steps; the knobs, loss and sampling of ``restore3-small``."""
    r = restore3_small()
    r.name = "restore3-paper"
    r.model.args.update(channels=64, num_blocks=16)
    r.data = DataSection(train="train/bsds400", patch_size=64, num_workers=4, val="cbsd68", val_images=68, val_crop=0)
    r.train = TrainSection(steps=500_000, batch_size=16, lr=1e-4, schedule="step", milestones=[200_000, 400_000],
                           gamma=0.5, log_every=100, val_every=10_000, ckpt_every=5_000, device="cuda")
    return r


def sr4_fixed_small() -> Recipe:
    """×4 bicubic super-resolution, L1 only (the fixed twin of ``sr4-small`` and its
    pretraining): ResNet 6 blocks x 32 channels + pixel-shuffle x4 tail, HR patches 96 (LR 24),
    batch 16, cosine lr 1e-3. See ``sr4_small`` for the measured step costs."""
    return Recipe(
        name="sr4-fixed-small",
        model=ModelSection("resnet", dict(channels=32, num_blocks=6, num_params=0, mapping="affine", expansion=1,
                                          upscale=4)),
        data=DataSection(train="train/bsds400", patch_size=96, num_workers=1, val="set14", val_images=4, val_crop=0),
        task=SRTaskSection(scale=4, fidelity_only=True),
        train=TrainSection(steps=SR_L1_STEPS, batch_size=16, lr=1e-3, schedule="cosine", warmup_steps=100,
                           grad_clip=1.0, threads=1, log_every=20, val_every=1000, ckpt_every=200),
    )


def sr4_small() -> Recipe:
    """×4 super-resolution with the distortion ↔ perception knob, sized for this CPU.

    Two phases, as ESRGAN trains: the L1 network ``sr4-fixed-small`` (``SR_L1_STEPS``), then
    this recipe, started from it (``model.init``: every kernel of the tunable network a copy
    of the L1 network's, so it begins as the fixed twin at every p) and trained with the
    multi-loss of the ``sr`` task (L1 ↔ VGG19 conv5_4 + RaGAN + 1e-2 L1) for ``SR_GAN_STEPS``
    with a batch of 8 (the perceptual loss runs VGG19 on every sample), cosine lr 2e-4 (a mean
    of 1e-4, ESRGAN's, over the short run).

    Step costs, measured on this project's 2-core CPU with one thread and nothing else running
    (2026-12-02; forward, losses, backward, Adam, and the discriminator's step):

    - L1 phase, batch 16, HR 96: 0.32 s/step (8000 steps: 43 min; 0.21 s/step with 2 threads);
    - multi-loss phase, batch 8, HR 96, VGG19 to conv5_4: 2.27 s/step (1000 steps: 38 min; 2.69 s
      for the first, warm-up step). VGG19 alone (features of the output with their backward,
      and of the ground truth) costs 1.84 s of it; to ``conv4_4`` 1.60 s, to ``conv3_4`` 1.09 s
      (``task.perceptual_layer``): block 5 is at 1/16 resolution, so conv5_4 costs little more
      than conv4_4, and the budget fits the paper's layer.

    Patch: HR 96 (LR 24), the smallest of ESRGAN-style SR patches, because VGG19's cost grows
    with the HR area; a 6 x 32 network's receptive field (about 15 LR pixels) fits in it.

    p sampling: the ``mixture`` sampler with half the samples on the two vertices (a quarter
    exactly at the L1 end). With the plain simplex sampler the fidelity end fell 0.33 / 0.18 /
    0.10 dB below the fixed twin on Set5 / Set14 / BSD100 over the 1000 steps; with the vertex
    mass 0.14 / 0.06 / 0.03 dB, for LPIPS at the perceptual end 0.129 / 0.226 / 0.303 instead of
    0.122 / 0.216 / 0.288 (``results/compare-sr4``, docs/sr.md).
    """
    r = sr4_fixed_small()
    r.name = "sr4-small"
    r.model.args.update(num_params=2, expansion=2)
    r.model.init = "runs/sr4-fixed-small/model.safetensors"
    r.task.fidelity_only = False
    r.task.val_grid = [0.0, 0.5, 1.0]
    r.task.sampler, r.task.vertex_share, r.task.edge_share = "mixture", 0.5, 0.0
    r.train.steps = SR_GAN_STEPS
    r.train.batch_size = 8
    r.train.lr = 2e-4
    r.train.warmup_steps = 0
    r.train.val_every = 250
    return r


def sr4_paper() -> Recipe:
    """The paper's SR scale (for GPU users): ResNet 16 x 64 with the x4 tail, HR patch 128,
    batch 16, started from ``sr4-fixed-paper`` (the L1 network); ESRGAN's GAN-phase schedule:
    lr 1e-4 halved at 50k, 100k, 200k and 300k of 400k steps (the discriminator follows it)."""
    r = sr4_small()
    r.name = "sr4-paper"
    r.model.args.update(channels=64, num_blocks=16)
    r.model.init = "runs/sr4-fixed-paper/model.safetensors"
    r.data = DataSection(train="train/bsds400", patch_size=128, num_workers=4, val="set14", val_images=14, val_crop=0)
    r.train = TrainSection(steps=400_000, batch_size=16, lr=1e-4, schedule="step",
                           milestones=[50_000, 100_000, 200_000, 300_000], gamma=0.5, log_every=100,
                           val_every=10_000, ckpt_every=5_000, device="cuda")
    return r


def sr4_fixed_paper() -> Recipe:
    """The L1 network at the paper's scale (ESRGAN's PSNR-oriented pretraining): 500k steps,
    lr 2e-4 halved at 200k and 400k."""
    r = sr4_fixed_small()
    r.name = "sr4-fixed-paper"
    r.model.args.update(channels=64, num_blocks=16)
    r.data = DataSection(train="train/bsds400", patch_size=128, num_workers=4, val="set14", val_images=14, val_crop=0)
    r.train = TrainSection(steps=500_000, batch_size=16, lr=2e-4, schedule="step",
                           milestones=[200_000, 400_000], gamma=0.5, log_every=100, val_every=10_000,
                           ckpt_every=5_000, device="cuda")
    return r


#: run lengths of the SOTA-backbone denoisers: the wall time of ``denoise-small``'s 8000 steps
#: (~81 min on one free core) divided by each one's step cost. ``benchmarks/backbone_cost.py``
#: (one thread, batch 16 x 48², per-sample p, timed in alternation; 2026-12-02, beside an
#: evaluation, so read the ratios): a training step costs 1.18x the tunable ResNet's for NAFNet
#: (1.00 s vs 0.85 s) and 7.4x for SwinIR (6.27 s); inference at 512² 0.81x and 16x
#: (1.13 s and 22.4 s vs 1.40 s). ``results/sota-denoise/backbone_cost.json``.
NAFNET_SMALL_STEPS = 6800
SWINIR_SMALL_STEPS = 1100


def denoise_nafnet_small() -> Recipe:
    """The ``denoise-small`` knob (fidelity <-> noise preservation, blended targets) on NAFNet,
    converted with ``make_tunable`` (every conv, LayerNorm2d and layer scale tunable, 2 kernel
    sets per objective): width 16, blocks [1, 1, 1, 1] / 1 / [1, 1, 1, 1], patch 48 (a multiple of
    NAFNet's 16), batch 16, Adam (as our other recipes; NAFNet uses AdamW), cosine lr 1e-3 (NAFNet's)."""
    r = denoise_small()
    r.name = "denoise-nafnet-small"
    r.model = ModelSection("nafnet", dict(width=16, enc_blocks=[1, 1, 1, 1], middle_blocks=1, dec_blocks=[1, 1, 1, 1],
                                          num_params=2, expansion=2))
    r.train.steps = NAFNET_SMALL_STEPS
    return r


def denoise_nafnet_fixed_small() -> Recipe:
    """The plain NAFNet twin of ``denoise-nafnet-small`` (fidelity only, same size, data, steps, seed)."""
    return fixed_twin(denoise_nafnet_small(), "denoise-nafnet-fixed-small")


def denoise_swinir_small() -> Recipe:
    """The ``denoise-small`` knob on SwinIR, converted with ``make_tunable`` (every conv, linear
    layer, LayerNorm and relative position bias table tunable, 2 sets per objective): embed 48,
    2 RSTBs of depth 4, 4 heads, window 8, MLP ratio 2; patch 48 (a multiple of the window),
    batch 16, cosine lr 2e-4 (SwinIR's)."""
    r = denoise_small()
    r.name = "denoise-swinir-small"
    r.model = ModelSection("swinir", dict(embed_dim=48, depths=[4, 4], num_heads=[4, 4], window_size=8, mlp_ratio=2.0,
                                          num_params=2, expansion=2))
    r.train.lr = 2e-4
    r.train.steps = SWINIR_SMALL_STEPS
    return r


def denoise_swinir_fixed_small() -> Recipe:
    """The plain SwinIR twin of ``denoise-swinir-small``."""
    return fixed_twin(denoise_swinir_small(), "denoise-swinir-fixed-small")


def denoise_nafnet_paper() -> Recipe:
    """NAFNet-width32 (blocks [2, 2, 4, 8] / 12 / [2, 2, 2, 2], the paper's SIDD model) with the
    denoising knob, for GPU users: patch 128, batch 16, cosine lr 1e-3 over 400k steps."""
    r = denoise_paper()
    r.name = "denoise-nafnet-paper"
    r.model = ModelSection("nafnet", dict(width=32, enc_blocks=[2, 2, 4, 8], middle_blocks=12, dec_blocks=[2, 2, 2, 2],
                                          num_params=2, expansion=2))
    r.task.mix = "targets"
    r.data.patch_size = 128
    r.train = TrainSection(steps=400_000, batch_size=16, lr=1e-3, schedule="cosine", log_every=100, val_every=10_000,
                           ckpt_every=5_000, device="cuda")
    return r


def denoise_swinir_paper() -> Recipe:
    """SwinIR-M (embed 180, 6 RSTBs of depth 6, 6 heads, window 8, MLP ratio 2; the paper's
    colour denoiser) with the denoising knob, for GPU users: patch 128, batch 8, lr 2e-4 halved
    at 800k, 1.2M, 1.4M, 1.5M of 1.6M steps (SwinIR's schedule)."""
    r = denoise_paper()
    r.name = "denoise-swinir-paper"
    r.model = ModelSection("swinir", dict(embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, window_size=8,
                                          mlp_ratio=2.0, num_params=2, expansion=2))
    r.task.mix = "targets"
    r.data.patch_size = 128
    r.train = TrainSection(steps=1_600_000, batch_size=8, lr=2e-4, schedule="step",
                           milestones=[800_000, 1_200_000, 1_400_000, 1_500_000], gamma=0.5, log_every=100,
                           val_every=10_000, ckpt_every=5_000, device="cuda")
    return r


#: the run length of ``style3-small`` and its single-style twins (see ``style3_small`` for the measurement)
STYLE_SMALL_STEPS = 2200

#: the three styles of the paper's Fig. 7, in knob order
STYLE3 = ("mosaic", "edtaonisl", "kandinsky")


def style3_small() -> Recipe:
    """Style transfer with three knobs (mosaic, edtaonisl, kandinsky) on the simplex, sized for
    one CPU thread (<= 90 minutes): the style network 16/32/64 channels with 5 residual blocks
    (``stylenet-small``, 0.42 M parameters plain, 1.28 M tunable: every conv and instance-norm
    affine parameter has 3 sets), content crops of 128 px from COCO (``content/coco100``) and
    BSDS400, batch 4, Adam lr 1e-3 with a cosine decay, no gradient clipping (Johnson et al.'s
    optimiser).

    Loss (``task``): VGG16 content at relu2_2 (w_c = 1) + λ_s = 0.2 × Gram style at relu1_2,
    relu2_2, relu3_3, relu4_3 + 1 × TV, mixed as Σ p_i L_i (``mix = losses``, the paper's); the
    style images resized to a shorter side of 256. Scale (16 COCO crops of 128 px, VGG16
    ImageNet weights): a photo's own Gram distance to the styles is 61 (mosaic), 33 (edtaonisl),
    36 (kandinsky), mostly at relu3_3 and relu2_2; its relu2_2 content distance to another photo
    12, to its 4x-blurred self 5.8; its TV 0.11.

    λ_s, from short checks with the mosaic objective (2026-12-06; not yet from full runs):

    - the per-image optimum (Adam on the pixels of a 192² Kodak crop, 150 steps from the photo)
      for λ_s = 0.1 / 0.2 / 0.5 / 1 / 5 has content distance 1.4 / 2.7 / 6.0 / 9.0 / 14.0 and
      Gram distance 26.5 / 17.8 / 7.4 / 3.4 / 1.1: at 5 the face is gone, at 1 barely there,
      at 0.2 it is clearly stylised with the face kept;
    - the single-style network (this recipe's twin, cosine over a short run) gave texture with
      no content left at λ_s = 5 and 1 (200 steps) and 0.5 (400 steps; content distance 11.7 on
      the validation images, as far as another photo), while at 0.2 the shapes came through
      after 200 steps (content 7.9, Gram 32) and at 0.01 it learnt the photo itself (content 4.8).

    So λ_s = 0.2 (PyTorch's ``fast_neural_style`` weights, content 1e5 and style 1e10 on per-entry
    Gram MSEs, are per-layer Frobenius weights 24, 6, 1.5, 0.4 relative to content: stronger,
    for a network trained 40k steps). TV at w_tv = 1 is about 1% of the loss.

    p: the ``mixture`` sampler, 30% of the samples on the vertices (the pure styles), 30% on the
    edges (two-style blends), the rest uniform on the simplex; one p per sample (the paper's).

    Crop 128: VGG16 to relu4_3 dominates the step and grows with the area (forward, backward and
    the content pass on a batch of 4: 1.09 s at 128², 1.49 s at 160², 4.3 s at 256², one thread);
    128 leaves 2200 steps in the budget, 256 would leave about 500. COCO photos are 224² here, so a
    128 crop keeps most of an object. Width 16 with 5 blocks: the network costs 0.63 s of the
    step with per-sample p (3 blocks 0.56 s, Johnson's 32/64/128 1.40 s, which would halve the
    steps).

    Step cost (this project's 2-core CPU, one thread, 2026-12-06, while 3-4 other processes
    shared the cores): 1.56 s of CPU time per step for the tunable network with either mix
    (``mix = targets`` costs the same: one VGG pass and one set of Gram matrices serve every
    style), 1.30 s for a single-style twin; the trainer's end-to-end wall time
    (``tunableconv train --recipe style3-small --set train.threads=1``, 14 steps) was 2.39 s/step
    after the first two (the load average was 3.7-4.0 on the 2 cores). ``STYLE_SMALL_STEPS`` =
    2200 steps are then 88 min at that shared-core rate (about 57 min on a free core), within the
    90-minute budget of the issue; the twins take the same steps (about 48 min on a free core).
    """
    return Recipe(
        name="style3-small",
        model=ModelSection("stylenet", dict(width=16, num_scales=2, blocks=[1, 5, 1], num_params=3, expansion=1)),
        data=DataSection(train="content/coco100", patch_size=128, num_workers=1, val="bsd100-holdout", val_images=4,
                         val_crop=256),
        task=StyleTaskSection(styles=list(STYLE3), more_content=["train/bsds400"], style_size=256, style_weight=0.2,
                              content_weight=1.0, tv_weight=1.0, mix="losses", sampler="mixture", vertex_share=0.3,
                              edge_share=0.3),
        train=TrainSection(steps=STYLE_SMALL_STEPS, batch_size=4, lr=1e-3, schedule="cosine", warmup_steps=100,
                           grad_clip=0.0, threads=1, log_every=20, val_every=500, ckpt_every=200),
    )


def style3_long() -> Recipe:
    """``style3-small`` given the three single-style twins' *total* budget (3 x
    ``STYLE_SMALL_STEPS`` = 6600 steps: one network for the price of the three it replaces),
    with the two levers that each closed part of the gap to the twins at the vertices
    (docs/style.md): instance norms with fixed affine parameters (``tunable_norms = False``)
    and 60 % of p on the vertices (30 % on the edges, 10 % inside). The same network, data,
    loss, schedule shape (cosine) and seed; two CPU threads (about 100 minutes on this
    project's 2-core CPU, so over the 90-minute single-core budget of ``style3-small``)."""
    r = style3_small()
    r.name = "style3-long"
    r.model.args.update(tunable_norms=False)
    r.task.vertex_share, r.task.edge_share = 0.6, 0.3
    r.train.steps = 3 * STYLE_SMALL_STEPS
    r.train.threads = 2
    return r


def style3_fixed_small(style: str) -> Recipe:
    """The single-style twin of ``style3-small`` for ``style``: the same network plain (no knobs),
    trained on that style's objective alone, with the same data, steps, seed and weights."""
    r = style3_small()
    r.name = f"style3-fixed-{style}-small"
    r.model.args.update(num_params=0, expansion=1)
    r.task.single_style = style
    r.task.sampler, r.task.vertex_share, r.task.edge_share = "simplex", 0.0, 0.0  # no p to draw
    return r


def style3_fixed_mosaic_small() -> Recipe:
    """The single-style mosaic network of ``style3-small``'s size and budget (no knobs)."""
    return style3_fixed_small("mosaic")


def style3_fixed_edtaonisl_small() -> Recipe:
    """The single-style edtaonisl network of ``style3-small``'s size and budget (no knobs)."""
    return style3_fixed_small("edtaonisl")


def style3_fixed_kandinsky_small() -> Recipe:
    """The single-style kandinsky network of ``style3-small``'s size and budget (no knobs)."""
    return style3_fixed_small("kandinsky")


def style_dynamicnet_small() -> Recipe:
    """Dynamic-Net (``dynamicnet-style``) on one edge of the style triangle, Mosaic to Kandinsky:
    the Mosaic single-style twin of ``style3-small`` as the frozen main network (``model.init``;
    train ``style3-fixed-mosaic-small`` first) and tuning blocks after each of its 5 latent
    residual blocks, trained for Kandinsky at p = (0, 1) for as many steps as the twin had
    (``STYLE_SMALL_STEPS``). The same data, loss weights, schedule and seed as ``style3-small``;
    knobs ``mosaic``, ``kandinsky`` (p = (1 − α, α)). Like DNI it builds on a twin that exists
    already; it adds the steps of a fourth network, and inference runs 5 more conv pairs at the
    latent resolution."""
    r = style3_small()
    r.name = "style-dynamicnet-small"
    r.model = ModelSection("dynamicnet-style", dict(width=16, num_scales=2, blocks=[1, 5, 1], tuning_every=1,
                                                    pretrained_main=True),
                           init="runs/style3-fixed-mosaic-small/model.safetensors")
    r.task.styles = ["mosaic", "kandinsky"]
    r.task.sampler, r.task.vertex_share, r.task.edge_share = "simplex", 0.0, 0.0  # the stages fix p
    return r


def style3_paper() -> Recipe:
    """``style3-small`` at the authors' scale, for GPU users: the style network 64/128/256 with
    blocks [2, 6, 2] (``stylenet-paper``, the reference implementation's ``TunableStyleNet``),
    crops of 256 (Johnson et al.'s), batch 8, Adam lr 1e-3 with a cosine decay over 40k steps
    (Johnson's run length; the numbers of the paper's own schedule did not survive in our copy of
    its text). The content set is the same small one (COCO 100 + BSDS400); Johnson trained on the
    80k COCO images."""
    r = style3_small()
    r.name = "style3-paper"
    r.model.args.update(width=64, blocks=[2, 6, 2])
    r.data = DataSection(train="content/coco100", patch_size=256, num_workers=4, val="bsd100-holdout", val_images=16,
                         val_crop=256)
    r.train = TrainSection(steps=40_000, batch_size=8, lr=1e-3, schedule="cosine", warmup_steps=500, grad_clip=0.0,
                           log_every=100, val_every=2_000, ckpt_every=1_000, device="cuda")
    return r


RECIPES: dict[str, Callable[[], Recipe]] = {
    "denoise-small": denoise_small,
    "denoise-small-v1": denoise_small_v1,
    "denoise-fixed-small": denoise_fixed_small,
    "denoise-paper": denoise_paper,
    "denoise-fixed-paper": denoise_fixed_paper,
    "deblur-denoise-small": deblur_denoise_small,
    "deblur-denoise-fixed-small": deblur_denoise_fixed_small,
    "deblur-denoise-paper": deblur_denoise_paper,
    "deblur-denoise-fixed-paper": deblur_denoise_fixed_paper,
    "restore3-small": restore3_small,
    "restore3-trunk-small": restore3_trunk_small,
    "restore3-fixed-small": restore3_fixed_small,
    "restore3-paper": restore3_paper,
    "style3-small": style3_small,
    "style3-long": style3_long,
    "style3-fixed-mosaic-small": style3_fixed_mosaic_small,
    "style3-fixed-edtaonisl-small": style3_fixed_edtaonisl_small,
    "style3-fixed-kandinsky-small": style3_fixed_kandinsky_small,
    "style3-paper": style3_paper,
    "style-dynamicnet-small": style_dynamicnet_small,
    "sr4-fixed-small": sr4_fixed_small,
    "sr4-small": sr4_small,
    "sr4-fixed-paper": sr4_fixed_paper,
    "sr4-paper": sr4_paper,
    "denoise-nafnet-small": denoise_nafnet_small,
    "denoise-nafnet-fixed-small": denoise_nafnet_fixed_small,
    "denoise-nafnet-paper": denoise_nafnet_paper,
    "denoise-swinir-small": denoise_swinir_small,
    "denoise-swinir-fixed-small": denoise_swinir_fixed_small,
    "denoise-swinir-paper": denoise_swinir_paper,
}


def get_recipe(name_or_path: str) -> Recipe:
    """A named recipe, or one loaded from a .yaml/.json file."""
    if name_or_path in RECIPES:
        return RECIPES[name_or_path]()
    if name_or_path.endswith((".yaml", ".yml", ".json")):
        return Recipe.load(name_or_path)
    raise InputError(f"unknown recipe {name_or_path!r}; named recipes: {', '.join(RECIPES)} (or a .yaml/.json file)")
