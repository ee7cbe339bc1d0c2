r"""Functional forms of the tunable layers.

Notation: K weight sets :math:`W_1 \dots W_K` stacked in one tensor of shape ``(K, *S)``;
aggregation weights :math:`w` of shape ``(K,)`` (one setting for the batch) or ``(B, K)``
(one per sample). The kernel applied is :math:`\bar W = \sum_k w_k W_k` (likewise the bias),
so the output is affine in w.

Three execution paths, picked from the shape of w:

- shared ``(K,)``: mix the weights once, run one ordinary op. Costs one op plus a
  K-term weighted sum over the parameters: this is the inference and export path.
- per sample ``(B, K)``: mix B kernels and run them as one grouped op in which every sample
  is a group ("batch as groups"): the training path, one op whatever B and K. A conv with
  at most ``STACKED_MAX_OUT`` output channels (an RGB tail) instead runs one plain conv with
  the K sets stacked as K·C_out outputs and mixes them per sample — the same result, and
  much cheaper on CPU than B groups of 3 outputs.
- per pixel ``(B, K, h, w)`` (a knob map turned into weights): run the op once per weight
  set and mix the K outputs per output pixel,

  .. math:: y(i,j) = \sum_k w_k(i,j)\,\big(W_k \star x + b_k\big)(i,j),

  with the map resampled (bilinear, align_corners=False) to the output's size. Exact —
  the op is affine in its weights — and K times the cost of one op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.modules.utils import _pair

from .params import resample_map


STACKED_MAX_OUT = 8  # per-sample convs with at most this many outputs use the stacked path


def mix(weight_sets: Tensor, agg: Tensor) -> Tensor:
    """Weighted sum of stacked weight sets.

    Args:
        weight_sets: ``(K, *S)``.
        agg: ``(K,)`` or ``(B, K)``.

    Returns:
        ``(*S)`` for shared weights, ``(B, *S)`` per sample.
    """
    k = weight_sets.shape[0]
    if agg.dim() > 2:
        raise ValueError("mix takes shared (K,) or per-sample (B, K) aggregation weights; per-pixel maps mix outputs")
    if agg.shape[-1] != k:
        raise ValueError(f"{agg.shape[-1]} aggregation weights for {k} weight sets")
    agg = agg.to(weight_sets.dtype)
    flat = weight_sets.reshape(k, -1)
    if agg.dim() == 1:
        return (agg @ flat).reshape(weight_sets.shape[1:])
    return (agg @ flat).reshape((agg.shape[0],) + tuple(weight_sets.shape[1:]))


def mix_outputs(outputs: list[Tensor], agg: Tensor, channels_last: bool = False) -> Tensor:
    """Per-pixel mix of K outputs ``(B, C, H, W)`` (or ``(B, H, W, C)``) by ``agg (B, K, h, w)``.

    ``agg`` is resampled to ``(H, W)`` first. Returns ``Σ_k agg[:, k] · outputs[k]``.
    """
    if len(outputs) != agg.shape[1]:
        raise ValueError(f"{agg.shape[1]} per-pixel aggregation weights for {len(outputs)} outputs")
    size = outputs[0].shape[1:3] if channels_last else outputs[0].shape[-2:]
    a = resample_map(agg.to(outputs[0].dtype), size)
    if a.shape[0] == 1 and outputs[0].shape[0] != 1:
        a = a.expand(outputs[0].shape[0], *a.shape[1:])
    if channels_last:
        a = a.permute(0, 2, 3, 1)  # (B, H, W, K)
        return sum(a[..., k : k + 1] * y for k, y in enumerate(outputs))  # type: ignore[return-value]
    return sum(a[:, k : k + 1] * y for k, y in enumerate(outputs))  # type: ignore[return-value]


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
        agg: aggregation weights ``(K,)``, ``(B, K)`` or per pixel ``(B, K, h, w)``.
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
    if agg.dim() == 4:
        outs = [F.conv2d(x, weight[k], bias[k] if bias is not None else None, stride, padding, dilation, groups)
                for k in range(weight.shape[0])]
        return mix_outputs(outs, agg)
    bsz, c_in, h, wd = x.shape
    if agg.shape[0] != bsz:
        raise ValueError(f"per-sample aggregation weights for {agg.shape[0]} samples, batch has {bsz}")
    k, c_out = weight.shape[0], weight.shape[1]
    if groups == 1 and c_out <= STACKED_MAX_OUT:
        # few output channels (an RGB tail): a grouped conv with B groups of 3 outputs runs
        # badly on CPU; one plain conv with the K sets stacked as K·C_out outputs, then the
        # per-sample mix Σ_k w_bk (W_k ⋆ x_b + b_k), is the same and ~2.5x cheaper here.
        y = F.conv2d(x, weight.reshape((k * c_out,) + tuple(weight.shape[2:])),
                     bias.reshape(k * c_out) if bias is not None else None, stride, padding, dilation)
        y = y.reshape(bsz, k, c_out, y.shape[-2], y.shape[-1])
        return torch.einsum("bk,bkchw->bchw", agg.to(y.dtype), y)
    w = mix(weight, agg)  # (B, C_out, C_in/g, kh, kw)
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
        agg: ``(K,)``, ``(B, K)`` or per pixel ``(B, K, h, w)``.

    Returns:
        ``(B, C_out, H', W')``.
    """
    if agg.dim() == 1:
        w = mix(weight, agg)
        b = mix(bias, agg) if bias is not None else None
        return F.conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation)
    if agg.dim() == 4:
        outs = [F.conv_transpose2d(x, weight[k], bias[k] if bias is not None else None, stride, padding,
                                   output_padding, groups, dilation) for k in range(weight.shape[0])]
        return mix_outputs(outs, agg)
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
        x: ``(*, in)``; with per-sample weights ``(B, *, in)``; with a per-pixel map
            ``(B, H, W, in)`` (channels last, the map's pixels are the ``H, W`` positions).
        weight: ``(K, out, in)``.
        bias: ``(K, out)`` or None.
        agg: ``(K,)``, ``(B, K)`` or per pixel ``(B, K, h, w)``.

    Returns:
        ``(*, out)`` / ``(B, *, out)`` / ``(B, H, W, out)``.
    """
    if agg.dim() == 1:
        return F.linear(x, mix(weight, agg), mix(bias, agg) if bias is not None else None)
    if agg.dim() == 4:
        if x.dim() != 4:
            raise ValueError(f"a per-pixel map needs a channels-last input (B, H, W, in), got {tuple(x.shape)}")
        outs = [F.linear(x, weight[k], bias[k] if bias is not None else None) for k in range(weight.shape[0])]
        return mix_outputs(outs, agg, channels_last=True)
    bsz = x.shape[0]
    if agg.shape[0] != bsz:
        raise ValueError(f"per-sample aggregation weights for {agg.shape[0]} samples, batch has {bsz}")
    w = mix(weight, agg)  # (B, out, in)
    xf = x.reshape(bsz, -1, x.shape[-1])
    y = torch.bmm(xf, w.transpose(1, 2))
    if bias is not None:
        y = y + mix(bias, agg).unsqueeze(1)
    return y.reshape(tuple(x.shape[:-1]) + (w.shape[1],))
