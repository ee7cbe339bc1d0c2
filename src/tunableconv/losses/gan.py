r"""Adversarial objective: relativistic average GAN (RaGAN) with a multi-scale discriminator.

Let ``C(x)`` be the discriminator's logit, ``r`` real (clean) and ``f`` fake (output) batches,
``σ`` the sigmoid and ``BCE(z, t) = -t log σ(z) - (1 - t) log(1 - σ(z))``. RaGAN compares each
sample to the *average* of the other kind:

- ``D_ra(r_b, f) = σ(C(r_b) - mean_k C(f_k))``, ``D_ra(f_b, r) = σ(C(f_b) - mean_k C(r_k))``.
- generator, per sample ``b``:
  ``L_G[b] = ½ [BCE(C(r_b) - mean C(f), 0) + BCE(C(f_b) - mean C(r), 1)]``;
- discriminator (scalar):
  ``L_D = ½ mean_b [BCE(C(r_b) - mean C(f), 1) + BCE(C(f_b) - mean C(r), 0)]``.

The means couple the samples of a batch, so ``L_G[b]`` also depends (through ``mean C(f)``) on
the other outputs; this is inherent to RaGAN.

Training (the trainer does this; see also :meth:`AdversarialObjective.discriminator_step`)::

    loss, terms = multiloss(out, batch, p)            # generator terms, D frozen inside
    loss.backward(); g_opt.step()
    for obj, d_opt in zip(multiloss.adversarial_objectives(), d_opts):
        d_opt.zero_grad()
        obj.discriminator_loss(out.detach(), batch).backward()
        d_opt.step()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError
from .objectives import Batch, Objective, get_key

__all__ = ["MultiScaleDiscriminator", "AdversarialObjective", "ragan_generator_loss", "ragan_discriminator_loss"]


class _ScaleBranch(nn.Module):
    """conv3x3 + LReLU, then ``num_downs`` × [conv3x3 stride 2 + LReLU, conv3x3 + LReLU], global
    average pool, linear -> one logit. Accepts any H, W ≥ 1."""

    def __init__(self, in_channels: int, base_channels: int, num_downs: int, max_channels: int, sn: bool) -> None:
        super().__init__()
        wrap = nn.utils.parametrizations.spectral_norm if sn else (lambda m: m)
        layers: list[nn.Module] = [wrap(nn.Conv2d(in_channels, base_channels, 3, 1, 1)), nn.LeakyReLU(0.2)]
        c = base_channels
        for _ in range(num_downs):
            c2 = min(2 * c, max_channels)
            layers += [wrap(nn.Conv2d(c, c, 3, 2, 1)), nn.LeakyReLU(0.2),
                       wrap(nn.Conv2d(c, c2, 3, 1, 1)), nn.LeakyReLU(0.2)]
            c = c2
        self.features = nn.Sequential(*layers)
        self.classifier = wrap(nn.Linear(c, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x)
        return self.classifier(h.mean(dim=(2, 3))).squeeze(1)


class MultiScaleDiscriminator(nn.Module):
    r"""Discriminator for images of any size: one conv branch per scale, logits averaged.

    Scale ``s`` sees the image area-downsampled by ``s`` (to ``ceil(H/s) × ceil(W/s)``, at least
    1x1); each branch ends with global average pooling and a linear layer, so H and W are free.

    Args:
        in_channels: image channels.
        base_channels: width of the first conv of each branch (doubles per down-step, up to
            ``max_channels``).
        num_downs: stride-2 steps per branch.
        scales: downsampling factors, default ``(1, 2, 4)``.
        spectral_norm: wrap convs and linears in spectral normalisation.

    Shapes: ``(B, C, H, W)`` in [0, 1] -> ``(B,)`` logits (inputs are mapped to [-1, 1]).
    """

    def __init__(
        self,
        in_channels: int = 3,
        base_channels: int = 32,
        num_downs: int = 3,
        scales: Sequence[int] = (1, 2, 4),
        max_channels: int = 256,
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        scales = tuple(int(s) for s in scales)
        if not scales or any(s < 1 for s in scales):
            raise InputError(f"discriminator scales must be integers >= 1, got {scales}")
        self.scales = scales
        self.in_channels = in_channels
        self.branches = nn.ModuleList(
            _ScaleBranch(in_channels, base_channels, num_downs, max_channels, spectral_norm) for _ in scales
        )

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise InputError(f"the discriminator expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        x = x * 2.0 - 1.0
        H, W = x.shape[-2:]
        logits = []
        for s, branch in zip(self.scales, self.branches):
            xs = x if s == 1 else F.adaptive_avg_pool2d(x, (max(1, -(-H // s)), max(1, -(-W // s))))
            logits.append(branch(xs))
        return torch.stack(logits, dim=0).mean(dim=0)


def ragan_generator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Per-sample RaGAN generator loss ``(B,)`` from ``(B,)`` logits (see the module docstring)."""
    r = real_logits - fake_logits.mean()
    f = fake_logits - real_logits.mean()
    return 0.5 * (F.binary_cross_entropy_with_logits(r, torch.zeros_like(r), reduction="none")
                  + F.binary_cross_entropy_with_logits(f, torch.ones_like(f), reduction="none"))


def ragan_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Scalar RaGAN discriminator loss from ``(B,)`` logits (see the module docstring)."""
    r = real_logits - fake_logits.mean()
    f = fake_logits - real_logits.mean()
    return 0.5 * (F.binary_cross_entropy_with_logits(r, torch.ones_like(r))
                  + F.binary_cross_entropy_with_logits(f, torch.zeros_like(f)))


@contextlib.contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients to ``module``'s parameters (they still flow to its input)."""
    saved = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, rg in saved:
            p.requires_grad_(rg)


class AdversarialObjective(Objective):
    r"""RaGAN objective owning its discriminator.

    ``forward(output, batch)`` = :meth:`generator_loss` -> ``(B,)``; the discriminator's own
    parameters are the objective's ``parameters()`` (also :attr:`discriminator`), to be
    optimised separately with :meth:`discriminator_loss` / :meth:`discriminator_step`.

    Args:
        discriminator: any module mapping ``(B, C, H, W)`` to ``(B,)`` (or ``(B, 1)``) logits;
            default a :class:`MultiScaleDiscriminator` built from ``disc_kwargs``.
        real_key: batch key of real images (default ``"clean"``).
    """

    name = "adversarial"

    def __init__(self, discriminator: nn.Module | None = None, real_key: str = "clean", name: str | None = None,
                 **disc_kwargs) -> None:
        super().__init__(name)
        if discriminator is not None and disc_kwargs:
            raise InputError("give either a discriminator or its keyword arguments, not both")
        self.discriminator = discriminator if discriminator is not None else MultiScaleDiscriminator(**disc_kwargs)
        self.real_key = real_key

    def _logits(self, x: Tensor) -> Tensor:
        out = self.discriminator(x)
        return out.reshape(x.shape[0], -1).mean(dim=1) if out.dim() > 1 else out

    def _real(self, batch_or_real: Batch | Tensor) -> Tensor:
        if isinstance(batch_or_real, Tensor):
            return batch_or_real
        return get_key(batch_or_real, self.real_key, "the adversarial objective")

    def generator_loss(self, output: Tensor, batch: Batch | Tensor) -> Tensor:
        """Per-sample generator loss ``(B,)``; gradients reach ``output`` only (D is frozen here)."""
        real = self._real(batch).to(dtype=output.dtype)
        with _frozen(self.discriminator):
            with torch.no_grad():
                real_logits = self._logits(real)
            fake_logits = self._logits(output)
        return ragan_generator_loss(real_logits.float(), fake_logits.float())

    forward = generator_loss

    def discriminator_loss(self, fake: Tensor, batch_or_real: Batch | Tensor) -> Tensor:
        """Scalar discriminator loss; ``fake`` should be ``output.detach()``; the second argument
        is the batch dict (real = ``batch[real_key]``) or the real tensor itself."""
        real = self._real(batch_or_real).to(dtype=fake.dtype)
        return ragan_discriminator_loss(self._logits(real).float(), self._logits(fake.detach()).float())

    def discriminator_step(self, fake: Tensor, batch_or_real: Batch | Tensor, optimizer: torch.optim.Optimizer) -> Tensor:
        """``zero_grad``, backward of :meth:`discriminator_loss`, ``optimizer.step()``; returns the
        detached loss."""
        optimizer.zero_grad(set_to_none=True)
        loss = self.discriminator_loss(fake, batch_or_real)
        loss.backward()
        optimizer.step()
        return loss.detach()
