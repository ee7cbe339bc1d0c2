"""How the interactive parameters p reach the tunable layers.

A layer can always be called as ``layer(x, p)``. Inside a model, p is carried by a
:class:`contextvars.ContextVar`: ``with tunable_params(p): net(x)`` makes every tunable layer
that is called without an explicit p read it. Context variables are private to a thread (and
to an asyncio task), so two threads can run the same model with different p at once without
mixing them, and an existing model's ``forward`` needs no edit. Tracing (``torch.export``,
ONNX) runs the Python code, so p stays a graph input.

Shapes: p is ``(P,)`` (one setting for the whole batch, the fast inference path) or ``(B, P)``
(one setting per sample, the training path).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Sequence

import torch
from torch import Tensor

from ..errors import InvalidParamsError

ParamsLike = Tensor | Sequence[float] | float

_CURRENT: contextvars.ContextVar[Tensor | None] = contextvars.ContextVar("tunableconv_params", default=None)


def _is_symbolic(t: Tensor) -> bool:
    """True while tracing/exporting/compiling, where data-dependent checks are impossible."""
    if torch.jit.is_tracing() or torch.compiler.is_compiling():
        return True
    is_exporting = getattr(torch.compiler, "is_exporting", None)
    if is_exporting is not None and is_exporting():
        return True
    from torch._subclasses.fake_tensor import FakeTensor

    return isinstance(t, FakeTensor) or type(t).__name__ == "FunctionalTensor"


def as_params(p: ParamsLike, *, device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """Turn a float, a sequence of floats or a tensor into a floating tensor."""
    if isinstance(p, Tensor):
        t = p
        if not t.is_floating_point():
            t = t.float()
    else:
        try:
            t = torch.as_tensor(p, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InvalidParamsError(f"interactive parameters must be numbers, got {p!r}") from exc
        if t.dim() == 0:
            t = t.reshape(1)
    if device is not None or dtype is not None:
        t = t.to(device=device or t.device, dtype=dtype or t.dtype)
    return t


def check_params(
    p: ParamsLike,
    num_params: int | None = None,
    batch_size: int | None = None,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Validate interactive parameters and return them as a tensor.

    Args:
        p: ``(P,)`` shared by the batch or ``(B, P)`` per sample; floats or a sequence are
            accepted for the shared form.
        num_params: expected P, if known.
        batch_size: expected B for the per-sample form, if known.

    Raises:
        InvalidParamsError: wrong number of dimensions, wrong P or B, a NaN, or a value
        outside [0, 1]. Value checks are skipped while tracing or exporting.
    """
    t = as_params(p, device=device, dtype=dtype)
    if t.dim() not in (1, 2):
        raise InvalidParamsError(f"p must have shape (P,) or (B, P), got {tuple(t.shape)}")
    if num_params is not None and t.shape[-1] != num_params:
        raise InvalidParamsError(f"expected {num_params} interactive parameter(s), got {t.shape[-1]}")
    if t.dim() == 2 and batch_size is not None and t.shape[0] != batch_size:
        raise InvalidParamsError(f"per-sample p has {t.shape[0]} rows but the batch has {batch_size} samples")
    if not _is_symbolic(t):
        if torch.isnan(t).any():
            raise InvalidParamsError("p contains NaN")
        if t.numel() and (t.min() < 0 or t.max() > 1):
            raise InvalidParamsError(
                f"p must lie in [0, 1], got values in [{t.min().item():.4g}, {t.max().item():.4g}]"
            )
    return t


@contextlib.contextmanager
def tunable_params(p: ParamsLike, num_params: int | None = None, batch_size: int | None = None) -> Iterator[Tensor]:
    """Make ``p`` the interactive parameters of every tunable layer called inside the block.

    Example::

        with tunable_params(torch.tensor([0.3, 0.7])):
            y = net(x)          # every tunable layer in net uses p = (0.3, 0.7)

    The value is validated once here (see :func:`check_params`); blocks nest, and the
    setting is private to the current thread / asyncio task.
    """
    t = check_params(p, num_params, batch_size)
    token = _CURRENT.set(t)
    try:
        yield t
    finally:
        _CURRENT.reset(token)


def current_params() -> Tensor | None:
    """The p set by the innermost enclosing :func:`tunable_params`, or None."""
    return _CURRENT.get()
