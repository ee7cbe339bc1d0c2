r"""Run an image-to-image function on large images tile by tile, without seams.

Layout (one axis; the other is the same and the grid is their product). For an image of
length ``L``, tile ``T`` and overlap ``O``:

- **Cores.** Tiles of length ``T`` start at ``0, S, 2S, ...`` with stride ``S = T - O``, so
  neighbours overlap by ``O`` pixels; the last tile is shifted to end at the border
  (start ``L - T``), so its overlap with the one before can be larger than ``O``. No padding
  beyond the image is ever used. If ``L <= T`` there is one tile covering the whole axis,
  and an image no larger than a tile on both axes is processed in a single call of ``fn``.
- **Context.** ``fn`` sees each core extended by up to ``O`` real image pixels on each side
  (clamped at the image border), and its output is cropped back to the core. At the image
  border no padding is added (no reflection padding): ``fn`` then sees the true image border
  exactly as in an untiled call, with its own padding. So for a network whose receptive
  radius ``r`` (pixels of input either side that affect one output pixel) is at most ``O``,
  every core's output equals the untiled output, and the tiled result equals ``fn(x)`` up to
  float rounding *everywhere*. Reflection padding would instead change the result near the
  image border compared with the untiled call, so it is not used. ``fn`` therefore receives
  inputs of up to ``(T + 2 O) x (T + 2 O)`` pixels.
- **Feathering.** Where cores overlap, outputs are blended with raised-cosine ramps. Over an
  overlap of ``n`` output pixels (``n = overlap_in_input_pixels * scale``), at offset
  ``j = 0..n-1`` from its start, the tile on the far side gets weight
  ``u_j = (1 - cos(pi (j + 1/2) / n)) / 2`` and the near tile ``1 - u_j``
  (``= (1 + cos(pi (j + 1/2) / n)) / 2``): both lie strictly in (0, 1) and sum to 1. A
  tile's 1-D weight is 1 in its middle and at image borders, the ramps over its overlaps
  (the minimum of the two ramps if they meet), and its 2-D weight is the outer product
  ``w(y, x) = w_row(y) w_col(x)``. When ``r > O`` (deep networks), each core is wrong near
  its edges; the ramps bring those pixels in with weights that fade to ~0 at the core's
  edge, which hides the seams.
- **Normalisation.** The result is the weighted mean
  ``out(p) = sum_k w_k(p) f_k(p) / sum_k w_k(p)`` over the tiles k covering pixel p.
  It is accumulated as a running weighted mean: with ``W`` the weight map so far,
  ``W <- W + w_k`` then ``acc <- acc + (w_k / W) (f_k - acc)``, which equals the formula above
  and returns identical tile values bit-exactly (e.g. the identity ``fn`` returns ``x``
  exactly). Every pixel lies in at least one core where that core's weight is > 0, so the
  final weight map is strictly positive (checked).

Memory: the input, the full-size output accumulator (float32, or float64 if ``fn`` returns
float64), the full-size one-channel weight map, and the input/output of ``batch_tiles``
tiles at a time. For a 3-channel 6000x4000 image at scale 1 that is about 288 MB + 288 MB +
96 MB plus the tiles.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

__all__ = ["tiled_apply", "tile_starts", "axis_weights", "check_tile", "MIN_TILE", "DEFAULT_OVERLAP"]

#: The smallest tile a runner accepts (``--tile``); 0 means no tiling.
MIN_TILE = 16
#: The overlap (and context) of the runners' tiles when none is given (``--overlap``).
DEFAULT_OVERLAP = 32


def check_tile(tile: int | None, overlap: int = DEFAULT_OVERLAP, *, overlap_option: str | None = "--overlap") -> int | None:
    """The one meaning of ``--tile`` in every command (restore, sweep, eval) and of
    ``tile=`` in :class:`~tunableconv.restore.Restorer`: None or 0 is no tiling; otherwise a
    tile side of at least :data:`MIN_TILE` pixels, larger than the overlap. Returns the tile
    (None for no tiling).

    Raises:
        InputError: a negative, too small or non-integer tile, or an overlap outside
            ``[0, tile)``. ``overlap_option`` names the overlap's option in the message (None:
            the command has none, the overlap is fixed).
    """
    from .errors import InputError

    if tile is None or (tile == 0 and not isinstance(tile, bool)):
        return None
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < MIN_TILE:
        raise InputError(f"--tile must be 0 (no tiling) or a tile side of at least {MIN_TILE} pixels, got {tile!r}")
    if not 0 <= overlap < tile:
        if overlap_option is None:
            raise InputError(f"--tile must be larger than the tiles' overlap of {overlap} pixels, got {tile}")
        raise InputError(f"{overlap_option} must satisfy 0 <= overlap < tile ({tile}), got {overlap}")
    return tile


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tile cores along one axis.

    Stride ``tile - overlap``; the last core is shifted to end at ``length``. A single
    core ``[0, length)`` when ``length <= tile``.

    Args:
        length: image length along the axis (input pixels).
        tile: core length.
        overlap: overlap between neighbouring cores, ``0 <= overlap < tile``.

    Returns:
        Increasing start offsets; each core is ``[start, start + min(tile, length))``.
    """
    if tile < 1:
        raise ValueError(f"tile must be >= 1, got {tile}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must satisfy 0 <= overlap < tile, got overlap={overlap}, tile={tile}")
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    starts.append(length - tile)
    return starts


def _ramp_up(n: int, dtype: torch.dtype) -> Tensor:
    """Raised-cosine ramp rising over n samples: (1 - cos(pi (j + 1/2) / n)) / 2, in (0, 1)."""
    j = torch.arange(n, dtype=torch.float64)
    return ((1.0 - torch.cos(math.pi * (j + 0.5) / n)) / 2.0).to(dtype)


def axis_weights(length: int, tile: int, overlap: int, scale: int = 1) -> list[tuple[int, Tensor]]:
    """1-D feather weights of every core along one axis, at output resolution.

    Args:
        length: image length along the axis (input pixels).
        tile, overlap: as in :func:`tile_starts`.
        scale: output pixels per input pixel.

    Returns:
        For each core, ``(start, w)``: ``start`` in input pixels and ``w`` float64 of shape
        ``(min(tile, length) * scale,)``, strictly positive. Weights of neighbouring cores
        sum to 1 over their overlap.
    """
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    out = []
    for i, start in enumerate(starts):
        w = torch.ones(size * scale, dtype=torch.float64)
        if i > 0:  # overlap with the previous core: ramp up
            n = (starts[i - 1] + size - start) * scale
            if n > 0:
                w[:n] = torch.minimum(w[:n], _ramp_up(n, torch.float64))
        if i + 1 < len(starts):  # overlap with the next core: ramp down
            n = (start + size - starts[i + 1]) * scale
            if n > 0:
                w[-n:] = torch.minimum(w[-n:], 1.0 - _ramp_up(n, torch.float64))
        out.append((start, w))
    return out


def _progress(iterable: list, enabled: bool, total: int) -> Iterator:
    if not enabled:
        yield from iterable
        return
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency, but do not fail on it
        for k, item in enumerate(iterable):
            print(f"tile batch {k + 1}/{total}", flush=True)
            yield item
        return
    yield from tqdm(iterable, total=total, desc="tiles", unit="batch")


def tiled_apply(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    tile: int = 512,
    overlap: int = 32,
    scale: int = 1,
    batch_tiles: int = 1,
    progress: bool = False,
    multiple: int = 1,
) -> Tensor:
    r"""Apply ``fn`` to ``x`` tile by tile and blend the tiles without seams.

    See the module docstring for the layout, the feather weights and the normalisation.
    Runs under ``torch.no_grad()``.

    Args:
        fn: maps ``(n, C, h, w)`` to ``(n, C', h * scale, w * scale)``; called with ``n = 1``
            unless ``batch_tiles > 1``. Must be translation-equivariant for tiling to make
            sense (a conv net).
        x: ``(B, C, H, W)``; each image of the batch is processed separately (B = 1 usual).
        tile: core size in input pixels; ``fn`` gets up to ``tile + 2 * overlap`` per side.
        overlap: overlap between neighbouring cores and context added on each side of a core
            (input pixels), ``0 <= overlap < tile``. The result equals ``fn(x)`` everywhere
            (up to float rounding) when the receptive radius of ``fn`` is at most ``overlap``.
        scale: integer upscaling factor of ``fn``.
        batch_tiles: up to this many tiles of the same input size are stacked into one
            call of ``fn`` (faster on GPUs; memory grows with it).
        progress: show a progress bar (tqdm) over the calls of ``fn``.
        multiple: align every tile to this grid (windowed attention: SwinIR's window). The
            image is reflect-padded at its bottom and right to a multiple of it (as such a
            network pads itself, so ``fn`` of the padded image equals ``fn(x)`` there), tile
            and overlap are rounded up to multiples of it, so every tile's input starts on
            the grid and its windows are the untiled call's windows; the output is cropped.

    Returns:
        ``(B, C', H * scale, W * scale)``, float32 (float64 if ``fn`` returns float64), on
        the device and dtype-kind of ``fn``'s output. If ``H <= tile`` and ``W <= tile``,
        simply ``fn(x)``.
    """
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if batch_tiles < 1:
        raise ValueError(f"batch_tiles must be >= 1, got {batch_tiles}")
    scale = int(scale)
    if int(multiple) != multiple or multiple < 1:
        raise ValueError(f"multiple must be a positive integer, got {multiple}")
    multiple = int(multiple)
    if multiple > 1 and max(x.shape[-2:]) > tile:
        h, w = x.shape[-2:]
        up = lambda n: -(-n // multiple) * multiple  # noqa: E731 - round up to the grid
        ph, pw = up(h) - h, up(w) - w
        padded = torch.nn.functional.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x
        y = tiled_apply(fn, padded, up(tile), up(overlap), scale, batch_tiles, progress)
        return y[..., : h * scale, : w * scale]
    b, _, h, w = x.shape
    rows = axis_weights(h, tile, overlap, scale)  # validates tile / overlap
    cols = axis_weights(w, tile, overlap, scale)

    with torch.no_grad():
        if len(rows) == 1 and len(cols) == 1:
            return fn(x)
        results = [
            _tiled_one(fn, x[i : i + 1], tile, overlap, scale, batch_tiles, progress, rows, cols)
            for i in range(b)
        ]
    return results[0] if b == 1 else torch.cat(results, dim=0)


def _tiled_one(
    fn: Callable[[Tensor], Tensor],
    x: Tensor,
    tile: int,
    overlap: int,
    scale: int,
    batch_tiles: int,
    progress: bool,
    rows: list[tuple[int, Tensor]],
    cols: list[tuple[int, Tensor]],
) -> Tensor:
    """Tiled processing of one image ``(1, C, H, W)``; see :func:`tiled_apply`."""
    _, _, h, w = x.shape
    th, tw = min(tile, h), min(tile, w)

    # Every tile: core origin, input window, and where the core sits inside the window.
    tiles = []
    for y0, wy in rows:
        for x0, wx in cols:
            a0, a1 = max(0, y0 - overlap), min(h, y0 + th + overlap)
            b0, b1 = max(0, x0 - overlap), min(w, x0 + tw + overlap)
            tiles.append((y0, x0, wy, wx, a0, a1, b0, b1))

    # Consecutive tiles with the same window size go together, up to batch_tiles per call.
    groups: list[list[tuple]] = []
    for t in tiles:
        size = (t[5] - t[4], t[7] - t[6])
        g = groups[-1] if groups else None
        if g and len(g) < batch_tiles and (g[0][5] - g[0][4], g[0][7] - g[0][6]) == size:
            g.append(t)
        else:
            groups.append([t])

    acc: Tensor | None = None
    wmap: Tensor | None = None
    for group in _progress(groups, progress, len(groups)):
        inp = torch.cat([x[:, :, a0:a1, b0:b1] for (_, _, _, _, a0, a1, b0, b1) in group], dim=0)
        out = fn(inp)
        win_h, win_w = inp.shape[-2:]
        if out.dim() != 4 or out.shape[0] != len(group) or out.shape[-2:] != (win_h * scale, win_w * scale):
            raise ValueError(
                f"fn mapped {tuple(inp.shape)} to {tuple(out.shape)}; expected "
                f"({len(group)}, C', {win_h * scale}, {win_w * scale}) for scale={scale}"
            )
        if acc is None:
            dtype = torch.float64 if out.dtype == torch.float64 else torch.float32
            acc = torch.zeros((1, out.shape[1], h * scale, w * scale), dtype=dtype, device=out.device)
            wmap = torch.zeros((1, 1, h * scale, w * scale), dtype=dtype, device=out.device)
        assert wmap is not None
        for k, (y0, x0, wy, wx, a0, a1, b0, b1) in enumerate(group):
            oy, ox = (y0 - a0) * scale, (x0 - b0) * scale
            core = out[k : k + 1, :, oy : oy + th * scale, ox : ox + tw * scale].to(acc.dtype)
            weight = (wy.view(-1, 1) * wx.view(1, -1)).to(device=acc.device, dtype=acc.dtype)
            ys = slice(y0 * scale, (y0 + th) * scale)
            xs = slice(x0 * scale, (x0 + tw) * scale)
            wsum = wmap[:, :, ys, xs]
            wsum += weight  # in place: the weight map so far
            region = acc[:, :, ys, xs]
            # Running weighted mean: acc += (w / W) * (f - acc); exact where f == acc.
            region += (weight / wsum) * (core - region)
        del out, inp

    assert acc is not None and wmap is not None
    if not bool((wmap > 0).all()):  # cannot happen: every pixel is in some core with w > 0
        raise RuntimeError("tiling left pixels with zero weight")
    return acc
