r"""Functional forms of the tunable layers.

Notation: K weight sets :math:`W_1 \dots W_K` stacked in one tensor of shape ``(K, *S)``;
aggregation weights :math:`w` of shape ``(K,)`` (one setting for the batch) or ``(B, K)``
(one per sample). The kernel applied is :math:`\bar W = \sum_k w_k W_k` (likewise the bias),
so the output is affine in w.

Two execution paths, picked from the shape of w:

- shared ``(K,)``: mix the weights once, run one ordinary op. Costs one op plus a
  K-term weighted sum over the parameters: this is the inference and export path.
- per sample ``(B, K)``: mix B kernels and run them as one grouped op in which every sample
  is a group ("batch as groups"): the training path, one op whatever B and K.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _pair


def mix(weight_sets: Tensor, agg: Tensor) -> Tensor:
    """Weighted sum of stacked weight sets.

    Args:
        weight_sets: ``(K, *S)``.
        agg: ``(K,)`` or ``(B, K)``.

    Returns:
        ``(*S)`` for shared weights, ``(B, *S)`` per sample.
    """
    k = weight_sets.shape[0]
    if agg.shape[-1] != k:
        raise ValueError(f"{agg.shape[-1]} aggregation weights for {k} weight sets")
    agg = agg.to(weight_sets.dtype)
    flat = weight_sets.reshape(k, -1)
    if agg.dim() == 1:
        return (agg @ flat).reshape(weight_sets.shape[1:])
    return (agg @ flat).reshape((agg.shape[0],) + tuple(weight_sets.shape[1:]))


def _same_padding(kernel_size: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int, int, int]:
    """F.pad amounts (left, right, top, bottom) that keep the size at stride 1."""
    pads = []
    for k, d in zip(reversed(kernel_size), reversed(dilation)):
        total = d * (k - 1)
        pads += [total // 2, total - total // 2]
    return tuple(pads)  # type: ignore[return-value]


def _pad_for_conv(
    x: Tensor, kernel_size: tuple[int, int], padding, dilation: tuple[int, int], padding_mode: str
) -> tuple[Tensor, object]:
    """Apply non-zero padding modes explicitly (as nn.Conv2d does) and return what conv2d gets."""
    if padding_mode == "zeros":
        return x, padding
    if padding == "same":
        pads = _same_padding(kernel_size, dilation)
    elif padding == "valid":
        return x, 0
    else:
        ph, pw = _pair(padding)
        pads = (pw, pw, ph, ph)
    return F.pad(x, pads, mode=padding_mode), 0


def tunable_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    agg: Tensor,
    stride=1,
    padding=0,
    dilation=1,
    groups: int = 1,
    padding_mode: str = "zeros",
) -> Tensor:
    r"""Tunable 2-D convolution.

    Args:
        x: ``(B, C_in, H, W)``.
        weight: ``(K, C_out, C_in / groups, kh, kw)``.
        bias: ``(K, C_out)`` or None.
        agg: aggregation weights ``(K,)`` or ``(B, K)``.
        stride, padding, dilation, groups, padding_mode: as :func:`torch.nn.functional.conv2d`
            and :class:`torch.nn.Conv2d` (``padding="same"`` included).

    Returns:
        ``(B, C_out, H', W')`` equal to ``conv2d(x_b, Σ_k agg[b, k] W_k, Σ_k agg[b, k] b_k)``.
    """
    kernel_size = tuple(weight.shape[-2:])
    dilation = _pair(dilation)
    x, padding = _pad_for_conv(x, kernel_size, padding, dilation, padding_mode)
    if agg.dim() == 1:
        w = mix(weight, agg)
        b = mix(bias, agg) if bias is not None else None
        return F.conv2d(x, w, b, stride, padding, dilation, groups)
    bsz, c_in, h, wd = x.shape
    if agg.shape[0] != bsz:
        raise ValueError(f"per-sample aggregation weights for {agg.shape[0]} samples, batch has {bsz}")
    w = mix(weight, agg)  # (B, C_out, C_in/g, kh, kw)
    c_out = w.shape[1]
    w = w.reshape((bsz * c_out,) + tuple(w.shape[2:]))
    b = mix(bias, agg).reshape(bsz * c_out) if bias is not None else None
    y = F.conv2d(x.reshape(1, bsz * c_in, h, wd), w, b, stride, padding, dilation, groups * bsz)
    return y.reshape(bsz, c_out, y.shape[-2], y.shape[-1])


def tunable_conv_transpose2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    agg: Tensor,
    stride=1,
    padding=0,
    output_padding=0,
    groups: int = 1,
    dilation=1,
) -> Tensor:
    r"""Tunable 2-D transposed convolution.

    Args:
        x: ``(B, C_in, H, W)``.
        weight: ``(K, C_in, C_out / groups, kh, kw)`` (the layout of ``nn.ConvTranspose2d``).
        bias: ``(K, C_out)`` or None.
        agg: ``(K,)`` or ``(B, K)``.

    Returns:
        ``(B, C_out, H', W')``.
    """
    if agg.dim() == 1:
        w = mix(weight, agg)
        b = mix(bias, agg) if bias is not None else None
        return F.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)
    bsz, c_in, h, wd = x.shape
    if agg.shape[0] != bsz:
        raise ValueError(f"per-sample aggregation weights for {agg.shape[0]} samples, batch has {bsz}")
    w = mix(weight, agg)  # (B, C_in, C_out/g, kh, kw)
    c_out = w.shape[2] * groups
    w = w.reshape((bsz * c_in,) + tuple(w.shape[2:]))
    b = mix(bias, agg).reshape(bsz * c_out) if bias is not None else None
    y = F.conv_transpose2d(x.reshape(1, bsz * c_in, h, wd), w, b, stride, padding, output_padding, groups * bsz, dilation)
    return y.reshape(bsz, c_out, y.shape[-2], y.shape[-1])


def tunable_linear(x: Tensor, weight: Tensor, bias: Tensor | None, agg: Tensor) -> Tensor:
    r"""Tunable linear map.

    Args:
        x: ``(*, in)``; with per-sample weights ``(B, *, in)``.
        weight: ``(K, out, in)``.
        bias: ``(K, out)`` or None.
        agg: ``(K,)`` or ``(B, K)``.

    Returns:
        ``(*, out)`` / ``(B, *, out)``.
    """
    if agg.dim() == 1:
        return F.linear(x, mix(weight, agg), mix(bias, agg) if bias is not None else None)
    bsz = x.shape[0]
    if agg.shape[0] != bsz:
        raise ValueError(f"per-sample aggregation weights for {agg.shape[0]} samples, batch has {bsz}")
    w = mix(weight, agg)  # (B, out, in)
    xf = x.reshape(bsz, -1, x.shape[-1])
    y = torch.bmm(xf, w.transpose(1, 2))
    if bias is not None:
        y = y + mix(bias, agg).unsqueeze(1)
    return y.reshape(tuple(x.shape[:-1]) + (w.shape[1],))
