r"""Pictures of a metric over a knob space, one kind per domain.

- one slider (a 2-knob simplex, or any 1-D path): :func:`plot_curves`, metric against s;
- two independent knobs (a 2-cube): :func:`plot_heatmaps`, one heat map per metric over
  (p_1, p_2), values written in the cells;
- three knobs on a simplex: :func:`plot_triangles`, one barycentric triangle per metric, each
  grid point a coloured dot at :math:`(x, y) = p_2 (1, 0) + p_3 (\tfrac12, \tfrac{\sqrt3}{2})`
  (p_1 at the bottom-left corner), corners labelled with the knob names.

:func:`plot_knob_space` picks the right one from the grid's shape and the domain. All need
matplotlib (the ``eval`` extra) and use the headless Agg backend; the file is written
atomically.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import atomic_write


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise InputError("plots need matplotlib: pip install 'tunableconv[eval]' (or pass --no-plot)") from None
    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _pyplot().close(fig)
    return atomic_write(Path(path), buf.getvalue())


def plot_curves(s: Sequence[float], curves: Mapping[str, Mapping[str, Sequence[float]]], path: str | os.PathLike,
                *, xlabel: str = "s", title: str = "") -> Path:
    """One panel per metric; in each, one line per curve label.

    Args:
        s: positions on the slider, ``(N,)``.
        curves: ``{metric: {label: values (N,)}}``, e.g. ``{"PSNR (dB)": {"vs ground truth": [...]}}``.
    """
    plt = _pyplot()
    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
    for ax, (metric, lines) in zip(axes[0], curves.items()):
        for label, values in lines.items():
            ax.plot(list(s), list(values), marker="o", ms=3, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_heatmaps(grid: np.ndarray | Sequence[Sequence[float]], values: Mapping[str, Sequence[float]], path: str | os.PathLike,
                  *, knob_names: Sequence[str] = ("p1", "p2"), title: str = "") -> Path:
    """One heat map per metric over two independent knobs.

    Args:
        grid: ``(N, 2)`` settings forming a full product grid.
        values: ``{metric: (N,) values in the order of grid}``.
    """
    plt = _pyplot()
    g = np.asarray(grid, dtype=float)
    if g.ndim != 2 or g.shape[1] != 2:
        raise ValueError(f"heat maps need a (N, 2) grid, got {g.shape}")
    xs, ys = np.unique(g[:, 0]), np.unique(g[:, 1])
    if len(xs) * len(ys) != len(g):
        raise ValueError("heat maps need a full product grid of the two knobs")
    n = max(1, len(values))
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 3.6), squeeze=False)
    for ax, (metric, vals) in zip(axes[0], values.items()):
        img = np.full((len(ys), len(xs)), np.nan)
        for (a, b), v in zip(g, vals):
            img[np.searchsorted(ys, b), np.searchsorted(xs, a)] = v
        im = ax.imshow(img, origin="lower", cmap="viridis", aspect="auto")
        lo, hi = np.nanmin(img), np.nanmax(img)
        for i in range(len(ys)):
            for j in range(len(xs)):
                if np.isfinite(img[i, j]):
                    bright = hi > lo and (img[i, j] - lo) / (hi - lo) > 0.6  # viridis is light at the top
                    ax.text(j, i, f"{img[i, j]:.2f}", ha="center", va="center", fontsize=6, color="k" if bright else "w")
        ax.set_xticks(range(len(xs)), [f"{v:g}" for v in xs])
        ax.set_yticks(range(len(ys)), [f"{v:g}" for v in ys])
        ax.set_xlabel(knob_names[0])
        ax.set_ylabel(knob_names[1])
        ax.set_title(metric, fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def barycentric_xy(p: np.ndarray) -> np.ndarray:
    """Simplex points ``(N, 3)`` -> plane ``(N, 2)``: p_1 at (0, 0), p_2 at (1, 0), p_3 at (½, √3/2)."""
    p = np.asarray(p, dtype=float)
    return np.stack([p[:, 1] + 0.5 * p[:, 2], (math.sqrt(3) / 2) * p[:, 2]], axis=1)


def plot_triangles(grid: np.ndarray | Sequence[Sequence[float]], values: Mapping[str, Sequence[float]], path: str | os.PathLike,
                   *, knob_names: Sequence[str] = ("p1", "p2", "p3"), title: str = "") -> Path:
    """One barycentric triangle per metric for three knobs on a simplex (``grid (N, 3)``)."""
    plt = _pyplot()
    g = np.asarray(grid, dtype=float)
    if g.ndim != 2 or g.shape[1] != 3:
        raise ValueError(f"triangles need a (N, 3) grid, got {g.shape}")
    xy = barycentric_xy(g)
    corners = barycentric_xy(np.eye(3))
    n = max(1, len(values))
    fig, axes = plt.subplots(1, n, figsize=(4.0 * n, 3.7), squeeze=False)
    for ax, (metric, vals) in zip(axes[0], values.items()):
        ax.fill(corners[:, 0], corners[:, 1], facecolor="none", edgecolor="0.4")
        sc = ax.scatter(xy[:, 0], xy[:, 1], c=list(vals), cmap="viridis", s=160, edgecolors="k", linewidths=0.3)
        for (x, y), v in zip(xy, vals):
            ax.text(x, y - 0.07, f"{v:.2f}", ha="center", va="top", fontsize=6)
        for (x, y), name, dy in zip(corners, knob_names, (-0.17, -0.17, 0.06)):
            ax.text(x, y + dy, name, ha="center", fontsize=8)
        ax.set_xlim(-0.15, 1.15)
        ax.set_ylim(-0.22, 1.0)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(metric, fontsize=9)
        fig.colorbar(sc, ax=ax, fraction=0.046)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_knob_space(domain: str, grid: np.ndarray | Sequence[Sequence[float]], values: Mapping[str, Sequence[float]],
                    path: str | os.PathLike, *, knob_names: Sequence[str], title: str = "") -> Path:
    """The picture that fits the knob space: curves (2-simplex, or 1 knob), heat maps (2-cube),
    triangles (3-simplex). Other spaces (P >= 3 on the cube, P >= 4) get curves along the
    grid's order with the settings on the axis."""
    g = np.asarray(grid, dtype=float)
    p = g.shape[1] if g.ndim == 2 else 0
    if (domain == "simplex" and p == 2) or p == 1:
        return plot_curves(g[:, 0], {m: {m: v} for m, v in values.items()}, path, xlabel=f"{knob_names[0]} (s)", title=title)
    if domain == "cube" and p == 2:
        return plot_heatmaps(g, values, path, knob_names=knob_names, title=title)
    if domain == "simplex" and p == 3:
        return plot_triangles(g, values, path, knob_names=knob_names, title=title)
    return plot_curves(list(range(len(g))), {m: {m: v} for m, v in values.items()}, path,
                       xlabel="setting index (see the JSON for p)", title=title)
