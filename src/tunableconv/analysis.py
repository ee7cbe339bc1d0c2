r"""Looking inside a tunable network: the paper's analysis figures (Maggioni et al., CVPR 2023).

- **Fig. 3, overhead** (:func:`overhead_table`, :func:`plot_overhead`): the run-time ratio
  tunable / plain of one convolution layer, for inference and for a training step, against
  the channel count, one line per kernel size, read from the JSON that
  ``benchmarks/overhead.py`` writes (nothing is re-measured here).
- **Fig. 8, kernel paths** (:func:`tuned_kernels`, :func:`block_kernel_paths`,
  :func:`kernel_path_linearity`, :func:`path_summary`, :func:`embed_tsne`,
  :func:`plot_kernel_paths`): tune the network at N settings along its slider, take the tuned
  (mixed) kernel of both convolutions of every residual block, embed them in 2-D with PCA then
  t-SNE, and measure how straight each block's path is.
- **Fig. 9, first principal components** (:func:`rgb_kernel_samples`,
  :func:`first_component`, :func:`align_signs`, :func:`first_components`,
  :func:`plot_components`): the first principal component of the RGB kernels of the first
  and the last tunable convolution at each setting, shown as small RGB images.

**The tuned kernel.** A tunable convolution with weight sets ``W_k`` mixes them into
``W(p) = Σ_k w_k(p) W_k``; for the shared setting p this is exactly the kernel the layer
applies (:meth:`TunableConv2d.shared_mix` / :meth:`TunableConv2d.to_plain` compute the same
sum). Here it is computed in float64 so that exactness checks are not limited by float32.

**Why the kernel paths are exactly straight.** The map p -> w of :mod:`tunableconv.nn.mapping`
is the identity or the affine ``w = A p + b`` (no activation, no normalisation), on the
simplex and on the cube (where ``w = (1, A p + b)``). So ``W(p) = Σ_k (A p + b)_k W_k`` is an
affine function of p, and along the slider ``p(s) = (1 - s, s)`` (affine in s) the tuned
kernels ``W(s) = W(0) + s (W(1) - W(0))`` lie *exactly* on a straight line, evenly spaced for
evenly spaced s — in every layer, whatever the training did. The fraction of variance of a
block's tuned kernels explained by their first principal direction is therefore 1 up to
rounding (measured on the shipped models: the RMS distance off the line is ~1e-15 of the
spread along it, so the fraction is 1 to double precision): the paper's "quasi-linear manifolds" are, for
this architecture, linear by construction; what training decides is only each path's
direction and length (reported as ``relative_length``). t-SNE is non-linear, so collinear
points need not look collinear in its 2-D embedding; the figure therefore also shows a plain
2-D PCA projection, in which a straight path stays straight.

Conventions: settings are raw p (the model's stored slider calibration, if any, would only
move the points along the same line). Kernels are used as they are (no normalisation) before
PCA and t-SNE.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .errors import InputError

#: the paper's five settings along a slider: s in {0, .25, .5, .75, 1}
DEFAULT_STEPS = 5
SKLEARN_HINT = "install scikit-learn (pip install 'tunableconv[eval]')"


# ----------------------------------------------------------------------------------------
# settings and tuned kernels
# ----------------------------------------------------------------------------------------
def slider_settings(num_params: int, domain: str, steps: int = DEFAULT_STEPS) -> tuple[Tensor, Tensor]:
    """The settings along the model's one slider: ``(s (N,), p (N, P))``, N = ``steps``.

    A 2-knob simplex: ``p = (1 - s, s)`` (s = 0 the first objective alone, s = 1 the second);
    a 1-knob cube: ``p = (s,)``. s is evenly spaced on [0, 1]. Other knob spaces have no single
    path and are refused with an :class:`InputError`.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 3:
        raise InputError(f"--steps must be an integer >= 3 (a path of fewer points is trivially straight), got {steps}")
    s = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    if domain == "simplex" and num_params == 2:
        return s, torch.stack([1.0 - s, s], dim=1)
    if domain == "cube" and num_params == 1:
        return s, s[:, None].clone()
    raise InputError(f"the analysis follows one slider: it supports a 2-knob simplex or a 1-knob cube, "
                     f"not {num_params} knob(s) on the {domain}")


def tunable_convs(model: nn.Module) -> dict[str, nn.Module]:
    """The model's :class:`~tunableconv.nn.TunableConv2d` layers by module name, in model order."""
    from .nn import TunableConv2d

    return {name: m for name, m in model.named_modules() if isinstance(m, TunableConv2d)}


def mixed_kernel(layer: nn.Module, ps: Tensor) -> Tensor:
    """The tuned kernel of one tunable conv at N shared settings.

    ``Σ_k w_k(p) W_k`` with ``w = layer.param_map(p)``, in float64.

    Args:
        layer: a :class:`~tunableconv.nn.TunableConv2d` (weight sets ``(K, C_out, C_in/g, kh, kw)``).
        ps: settings ``(N, P)``.

    Returns:
        ``(N, C_out, C_in/g, kh, kw)``.
    """
    pm = layer.param_map
    with torch.no_grad():
        p = ps.to(torch.float64)
        if pm.kind == "identity":
            w = p
        else:
            w = torch.nn.functional.linear(p, pm.weight.detach().double(), pm.bias.detach().double())
        if pm.domain == "cube":
            w = torch.cat([torch.ones_like(w[:, :1]), w], dim=1)
        sets = layer.weight.detach().double()
        return (w @ sets.reshape(sets.shape[0], -1)).reshape((p.shape[0],) + tuple(sets.shape[1:]))


def tuned_kernels(model: nn.Module, ps: Tensor, names: Sequence[str] | None = None) -> dict[str, Tensor]:
    """Tuned kernels of the model's tunable convolutions at N settings.

    Args:
        model: a tunable model.
        ps: settings ``(N, P)``.
        names: the layers (module names); default every :class:`TunableConv2d`.

    Returns:
        ``{layer name: (N, C_out, C_in/g, kh, kw)}`` (float64), in model order.
    """
    layers = tunable_convs(model)
    if names is not None:
        unknown = [n for n in names if n not in layers]
        if unknown:
            raise InputError(f"no tunable convolution named {unknown[0]!r} in the model")
        layers = {n: layers[n] for n in names}
    return {name: mixed_kernel(layer, ps) for name, layer in layers.items()}


def residual_block_convs(model: nn.Module) -> list[tuple[int, str, str]]:
    """``(block index, "conv1" | "conv2", layer name)`` of the tunable convs of every residual
    block (``model.body[i].conv1/conv2``, as in :class:`~tunableconv.models.ResNet`); blocks in
    a p-independent trunk (plain convs) are left out."""
    layers = tunable_convs(model)
    body = getattr(model, "body", None)
    out = []
    if isinstance(body, nn.Sequential):
        for i, _ in enumerate(body):
            for conv in ("conv1", "conv2"):
                name = f"body.{i}.{conv}"
                if name in layers:
                    out.append((i, conv, name))
    return out


# ----------------------------------------------------------------------------------------
# path measures
# ----------------------------------------------------------------------------------------
def _centred_singular_values(points: Tensor | np.ndarray) -> np.ndarray:
    x = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    x = x - x.mean(axis=0, keepdims=True)
    return np.linalg.svd(x, compute_uv=False)


def kernel_path_linearity(points: Tensor | np.ndarray) -> float:
    """The fraction of the variance of N points explained by their first principal direction.

    Args:
        points: ``(N, *D)``, one point per setting (flattened).

    Returns:
        ``σ_1² / Σ_i σ_i²`` of the centred points, in [0, 1]: 1 when the points lie on a straight
        line, less for a bent path. A path with zero variance (every point equal) counts as 1.
    """
    sv = _centred_singular_values(points)
    total = float((sv**2).sum())
    return 1.0 if total == 0.0 else float(sv[0] ** 2 / total)


def path_summary(points: Tensor | np.ndarray) -> dict[str, Any]:
    """How straight and how long a path of N points ``(N, *D)`` (in setting order) is.

    Returns a dict with ``linearity`` (:func:`kernel_path_linearity`), ``off_line`` (RMS distance
    from the best line over the RMS spread along it, ``sqrt(Σ_{i≥2} σ_i²) / σ_1``; 0 on a
    line), ``length`` (``|x_N - x_1|``), ``relative_length`` (length over the mean norm of the
    points), ``step_evenness`` (shortest over longest step between neighbours; 1 for even
    spacing).
    """
    x = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    sv = _centred_singular_values(x)
    steps = np.linalg.norm(np.diff(x, axis=0), axis=1)
    length = float(np.linalg.norm(x[-1] - x[0]))
    mean_norm = float(np.linalg.norm(x, axis=1).mean())
    return {
        "linearity": kernel_path_linearity(x),
        "off_line": float(math.sqrt(float((sv[1:] ** 2).sum())) / sv[0]) if sv[0] > 0 else 0.0,
        "length": length,
        "relative_length": length / mean_norm if mean_norm > 0 else 0.0,
        "step_evenness": float(steps.min() / steps.max()) if steps.max() > 0 else 1.0,
    }


def block_kernel_paths(model: nn.Module, ps: Tensor) -> tuple[list[tuple[int, str]], Tensor]:
    """The tuned kernels of both convs of every residual block, one flattened vector each.

    Args:
        model: a tunable ResNet-like model (see :func:`residual_block_convs`).
        ps: settings ``(N, P)``.

    Returns:
        ``(labels, vectors)``: ``labels[j] = (block, "conv1" | "conv2")`` for the L convs and
        ``vectors (L, N, C_out·C_in·kh·kw)`` (float64), one point per (conv, setting).
    """
    convs = residual_block_convs(model)
    if not convs:
        raise InputError("the kernel paths need a ResNet-like model with tunable residual blocks (body[i].conv1/conv2)")
    kernels = tuned_kernels(model, ps, [name for _, _, name in convs])
    shapes = {tuple(k.shape[1:]) for k in kernels.values()}
    if len(shapes) != 1:
        raise InputError(f"the residual blocks' kernels differ in shape ({sorted(shapes)}): they cannot share one embedding")
    vectors = torch.stack([kernels[name].reshape(ps.shape[0], -1) for _, _, name in convs])
    return [(b, c) for b, c, _ in convs], vectors


def embed_tsne(points: Tensor | np.ndarray, *, pca_dims: int = 50, perplexity: float | None = None,
               random_state: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """PCA to at most ``pca_dims`` dimensions, then t-SNE to 2-D (scikit-learn).

    Args:
        points: ``(M, D)``.
        perplexity: default ``min(30, (M - 1) / 3)`` (at least 1; sklearn needs it below M):
            for the 60 points of 6 blocks x 2 convs x 5 settings about 20, so each point's
            neighbourhood spans a few paths and the embedding keeps a path's order (a
            perplexity near the path length, 5, folds each path into a blob).
        random_state: fixed, so the figure is reproducible.

    Returns:
        ``(embedding (M, 2), settings)``, settings holding the PCA dims, its explained variance
        and the t-SNE parameters used.
    """
    try:
        from sklearn.decomposition import PCA
        from sklearn.manifold import TSNE
    except ImportError:
        raise InputError(f"the t-SNE embedding needs scikit-learn: {SKLEARN_HINT}") from None
    x = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    m = x.shape[0]
    if m < 3:
        raise InputError(f"t-SNE needs at least 3 points, got {m}")
    dims = int(min(pca_dims, m, x.shape[1]))
    pca = PCA(n_components=dims, svd_solver="full", random_state=random_state)
    reduced = pca.fit_transform(x)
    perp = float(perplexity) if perplexity is not None else max(1.0, min(30.0, (m - 1) / 3.0))
    if not 0 < perp < m:
        raise InputError(f"the perplexity must lie in (0, {m}) for {m} points, got {perp:g}")
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", learning_rate="auto", random_state=random_state)
    emb = tsne.fit_transform(reduced)
    return emb, {"pca_dims": dims, "pca_explained_variance": float(pca.explained_variance_ratio_.sum()),
                 "perplexity": perp, "random_state": random_state, "kl_divergence": float(tsne.kl_divergence_)}


def pca_2d(points: Tensor | np.ndarray) -> tuple[np.ndarray, list[float]]:
    """The plain (linear) 2-D PCA projection of ``(M, D)`` points: ``((M, 2), explained ratios (2,))``."""
    x = np.asarray(points, dtype=np.float64).reshape(len(points), -1)
    x = x - x.mean(axis=0, keepdims=True)
    u, sv, _ = np.linalg.svd(x, full_matrices=False)
    k = min(2, len(sv))
    proj = np.zeros((len(x), 2))
    proj[:, :k] = u[:, :k] * sv[:k]
    total = float((sv**2).sum()) or 1.0
    return proj, [float(v**2 / total) for v in sv[:2]]


def kernel_paths_report(model: nn.Module, s: Tensor, ps: Tensor, *, perplexity: float | None = None,
                        random_state: int = 0) -> dict[str, Any]:
    """Everything Fig. 8 shows, as JSON-ready numbers.

    One point per (block, conv, setting): the whole tuned kernel tensor of one convolution,
    flattened (``C_out·C_in·kh·kw``), as the paper embeds "the tuned kernel tensors from (both
    convolutions in) each residual block" (not one point per output filter). Linearity is
    measured per block (both convs' kernels concatenated, N points) and per conv.
    """
    labels, vectors = block_kernel_paths(model, ps)
    n = ps.shape[0]
    flat = vectors.reshape(len(labels) * n, -1)
    emb, tsne_settings = embed_tsne(flat, perplexity=perplexity, random_state=random_state)
    proj, proj_ratio = pca_2d(flat)
    blocks: dict[int, list[int]] = {}
    for j, (b, _) in enumerate(labels):
        blocks.setdefault(b, []).append(j)
    per_block = []
    for b, idx in blocks.items():
        joined = torch.cat([vectors[j] for j in idx], dim=1)  # (N, convs·D)
        row = {"block": b, **path_summary(joined)}
        row["convs"] = {labels[j][1]: path_summary(vectors[j]) for j in idx}
        per_block.append(row)
    points = []
    for j, (b, conv) in enumerate(labels):
        for i in range(n):
            r = j * n + i
            points.append({"block": b, "conv": conv, "s": float(s[i]), "p": [float(v) for v in ps[i]],
                           "tsne": [float(v) for v in emb[r]], "pca": [float(v) for v in proj[r]]})
    lin = [r["linearity"] for r in per_block]
    return {
        "point": "one per (block, conv, setting): the whole tuned kernel of one conv, flattened",
        "dims": int(flat.shape[1]),
        "s": [float(v) for v in s],
        "p": [[float(v) for v in row] for row in ps],
        "tsne": tsne_settings,
        "pca_2d_explained": proj_ratio,
        "blocks": per_block,
        "linearity_min": float(min(lin)),
        "exactly_linear_by_construction": _affine_in_p(model),
        "note": ("w(p) is affine in p (identity or A p + b, no activation), so each tuned kernel "
                 "W(s) = W(0) + s (W(1) - W(0)) lies exactly on a line: linearity is 1 up to rounding"
                 if _affine_in_p(model) else "the map p -> w is not affine: linearity is a measurement"),
        "points": points,
    }


def _affine_in_p(model: nn.Module) -> bool:
    return all(m.param_map.kind in ("identity", "affine") for m in tunable_convs(model).values())


# ----------------------------------------------------------------------------------------
# first principal components (Fig. 9)
# ----------------------------------------------------------------------------------------
def rgb_kernel_samples(kernel: Tensor, side: str) -> Tensor:
    """The RGB kernels of a layer as PCA samples.

    Args:
        kernel: one tuned kernel ``(C_out, C_in, kh, kw)``.
        side: ``"input"`` (first layer, C_in = 3: each output filter's ``3 x kh x kw`` is a
            sample) or ``"output"`` (last layer, C_out = 3: the transposed view
            ``(C_in, 3, kh, kw)``, each input channel's kernels into the 3 outputs a sample).

    Returns:
        ``(S, C, kh, kw)`` with C the RGB side's channel count (3, or 1 for grey).
    """
    if side == "input":
        samples = kernel
    elif side == "output":
        samples = kernel.transpose(0, 1)
    else:
        raise ValueError(f"side must be 'input' or 'output', got {side!r}")
    if samples.shape[1] not in (1, 3):
        raise InputError(f"the {side} side of this layer has {samples.shape[1]} channels, not 3 (RGB) or 1 (grey)")
    return samples


def first_component(samples: Tensor | np.ndarray) -> tuple[np.ndarray, float]:
    """The first principal direction of S samples ``(S, *F)``: ``(unit vector (F,), explained ratio)``.
    The samples are centred (the mean sample removed) first, as in PCA; the sign is arbitrary
    (see :func:`align_signs`)."""
    x = np.asarray(samples, dtype=np.float64).reshape(len(samples), -1)
    x = x - x.mean(axis=0, keepdims=True)
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    total = float((sv**2).sum())
    return vt[0].copy(), float(sv[0] ** 2 / total) if total > 0 else 0.0


def align_signs(components: np.ndarray) -> tuple[np.ndarray, list[bool]]:
    """Fix the arbitrary signs of principal components taken at successive settings.

    The first keeps the sign that makes its largest-magnitude entry positive; each next one is
    flipped if its dot product with the previous (aligned) one is negative.

    Args:
        components: ``(N, F)``.

    Returns:
        ``(aligned (N, F), flipped (N,))``.
    """
    comps = np.array(components, dtype=np.float64, copy=True)
    flipped = []
    for i in range(len(comps)):
        if i == 0:
            flip = comps[0][np.argmax(np.abs(comps[0]))] < 0
        else:
            flip = float(comps[i] @ comps[i - 1]) < 0
        if flip:
            comps[i] = -comps[i]
        flipped.append(bool(flip))
    return comps, flipped


def first_components(model: nn.Module, ps: Tensor) -> dict[str, dict[str, Any]]:
    """First principal component of the RGB kernels of the first and last tunable convs.

    For the first layer (``C_in = 3``, e.g. the ResNet's head) each output filter's
    ``3 x kh x kw`` kernel is a sample; for the last (``C_out = 3``, the tail) the transposed
    view. PCA across the samples at each of the N settings; signs aligned across settings
    (:func:`align_signs`).

    Returns:
        ``{layer name: {"side", "components" (N, kh, kw, C) as an array, "explained" (N,),
        "cos_prev" (N-1,) cosine to the previous setting's aligned component, "flipped" (N,)}}``.
    """
    layers = list(tunable_convs(model))
    if not layers:
        raise InputError("the model has no tunable convolutions")
    chosen = [(layers[0], "input"), (layers[-1], "output")]
    kernels = tuned_kernels(model, ps, [name for name, _ in chosen])
    out: dict[str, dict[str, Any]] = {}
    for name, side in chosen:
        comps, explained = [], []
        shape = None
        for i in range(ps.shape[0]):
            samples = rgb_kernel_samples(kernels[name][i], side)
            shape = tuple(samples.shape[1:])
            c, r = first_component(samples)
            comps.append(c)
            explained.append(r)
        aligned, flipped = align_signs(np.stack(comps))
        c, kh, kw = shape  # type: ignore[misc]
        images = aligned.reshape(len(aligned), c, kh, kw).transpose(0, 2, 3, 1)  # (N, kh, kw, C)
        cos_prev = [float(aligned[i] @ aligned[i - 1]) for i in range(1, len(aligned))]
        key = name if name not in out else f"{name} ({side})"
        out[key] = {"side": side, "components": images, "explained": explained, "cos_prev": cos_prev,
                    "flipped": flipped}
    return out


def component_images(components: np.ndarray) -> np.ndarray:
    """Components ``(N, kh, kw, C)`` as images in [0, 1]: ``0.5 + v / (2 max|v|)`` with one
    scale for the whole row, so 0 is mid-grey, the sign shows and settings compare."""
    peak = float(np.abs(components).max()) or 1.0
    return np.clip(0.5 + components / (2.0 * peak), 0.0, 1.0)


# ----------------------------------------------------------------------------------------
# overhead (Fig. 3)
# ----------------------------------------------------------------------------------------
def overhead_table(data: Any, where: str = "overhead JSON") -> dict[str, Any]:
    """The layer grid of ``benchmarks/overhead.py``'s JSON, by kernel size.

    Returns:
        ``{"kernel_sizes": [...], "channels": [...], "inference": {k: [ratio per channel]},
        "train": {k: [...]}, "meta": {...}}`` (ratios tunable / plain; None where not measured).
    """
    rows = data.get("rows") if isinstance(data, Mapping) else None
    need = ("kernel_size", "channels", "inference_ratio", "train_ratio")
    if not isinstance(rows, list) or not rows or not all(isinstance(r, Mapping) and all(k in r for k in need) for r in rows):
        raise InputError(f"{where} is not benchmarks/overhead.py output (needs 'rows' with {', '.join(need)})")
    try:
        ks = sorted({int(r["kernel_size"]) for r in rows})
        cs = sorted({int(r["channels"]) for r in rows})
        lookup = {(int(r["kernel_size"]), int(r["channels"])): (float(r["inference_ratio"]), float(r["train_ratio"]))
                  for r in rows}
    except (TypeError, ValueError):
        raise InputError(f"{where}: kernel_size, channels and the ratios must be numbers") from None
    table: dict[str, Any] = {"kernel_sizes": ks, "channels": cs, "inference": {}, "train": {}}
    for k in ks:
        table["inference"][str(k)] = [lookup[(k, c)][0] if (k, c) in lookup else None for c in cs]
        table["train"][str(k)] = [lookup[(k, c)][1] if (k, c) in lookup else None for c in cs]
    table["meta"] = {key: data[key] for key in ("inference_ratio_median", "train_ratio_median", "num_params", "repeats",
                                                "quick", "torch", "threads", "cpu", "cpu_count") if key in data}
    return table


def read_overhead(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check the overhead JSON (see :func:`overhead_table`)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"overhead JSON {p} not found (write it with: python benchmarks/overhead.py --json {p})")
    try:
        data = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {p} as JSON ({' '.join(str(exc).split())})") from None
    return overhead_table(data, str(p))


# ----------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------
def _plt():
    from .plots import _pyplot

    return _pyplot()


def _save(fig, path: str | os.PathLike) -> Path:
    from .io import atomic_write

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _plt().close(fig)
    return atomic_write(Path(path), buf.getvalue())


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write ``obj`` as indented JSON, atomically (numpy arrays become lists)."""
    from .io import atomic_write

    def default(o):
        if isinstance(o, np.ndarray):
            return o.tolist()
        if isinstance(o, (np.floating, np.integer)):
            return o.item()
        raise TypeError(f"not JSON: {type(o).__name__}")

    return atomic_write(Path(path), (json.dumps(obj, indent=1, default=default) + "\n").encode())


def plot_overhead(table: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Fig. 3: ratio tunable / plain vs channels, one line per kernel size; inference and training step."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8), sharey=True)
    cs = table["channels"]
    meta = table.get("meta", {})
    for ax, key, title in ((axes[0], "inference", "inference (batch 1, 256x256, shared p)"),
                           (axes[1], "train", "training step (batch 16, 64x64, per-sample p)")):
        for k in table["kernel_sizes"]:
            ys = [np.nan if v is None else v for v in table[key][str(k)]]
            ax.plot(cs, ys, marker="o", label=f"{k}x{k} kernel")
        ax.axhline(1.0, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log", base=2)
        ax.set_xticks(cs)
        ax.set_xticklabels([str(c) for c in cs])
        ax.set_xlabel("channels (in = out)")
        median = meta.get(f"{key}_ratio_median")
        ax.set_title(title + (f"\nmedian {median:.3f}" if isinstance(median, (int, float)) else ""), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("run time, tunable / plain")
    axes[0].legend(fontsize=8)
    where = ", ".join(v for v in (f"torch {meta['torch']}" if "torch" in meta else None,
                                  f"{meta['threads']} threads" if "threads" in meta else None) if v)
    fig.suptitle(f"Overhead of one tunable convolution vs nn.Conv2d (P = {meta.get('num_params', '?')} knobs)"
                 + (f", CPU, {where}" if where else ""), fontsize=11)
    fig.tight_layout()
    return _save(fig, path)


def _block_colours(blocks: Sequence[int]):
    plt = _plt()
    cmap = plt.get_cmap("tab10" if len(blocks) <= 10 else "tab20")
    return {b: cmap(i % cmap.N) for i, b in enumerate(blocks)}


def plot_kernel_paths(report: Mapping[str, Any], path: str | os.PathLike, *, title: str = "") -> Path:
    """Fig. 8: PCA + t-SNE of the tuned kernels (left; colour = block, marker = conv, lightness
    = s from light s = 0 to dark s = 1, a thin line joins each path), the plain linear 2-D PCA
    of the same points (middle), and each conv's relative path length (right)."""
    plt = _plt()
    from matplotlib.colors import to_rgb
    from matplotlib.lines import Line2D

    pts = report["points"]
    blocks = sorted({p["block"] for p in pts})
    colours = _block_colours(blocks)
    markers = {"conv1": "o", "conv2": "s"}
    fig, axes = plt.subplots(1, 3, figsize=(16, 5), gridspec_kw={"width_ratios": [1.0, 1.0, 0.75]})
    groups: dict[tuple[int, str], list[dict]] = {}
    for p in pts:
        groups.setdefault((p["block"], p["conv"]), []).append(p)
    for ax, key, sub in ((axes[0], "tsne", f"PCA + t-SNE (as in the paper; perplexity {report['tsne']['perplexity']:.3g})"),
                         (axes[1], "pca", "plain 2-D PCA of the same points (linear)")):
        for (b, conv), group in groups.items():
            base = np.array(to_rgb(colours[b]))
            xy = np.array([g[key] for g in group])
            ax.plot(xy[:, 0], xy[:, 1], color=base, lw=0.8, alpha=0.6, zorder=1)
            for g in group:
                t = 0.2 + 0.8 * g["s"]  # lightness: mixed with white for small s
                colour = 1.0 - t * (1.0 - base)
                ax.scatter([g[key][0]], [g[key][1]], color=[colour], marker=markers.get(conv, "^"), s=40,
                           edgecolors=[base * 0.6], linewidths=0.6, zorder=2)
        ax.set_title(sub, fontsize=10)
        ax.set_xlabel(f"{'t-SNE' if key == 'tsne' else 'PC'} 1")
        ax.set_ylabel(f"{'t-SNE' if key == 'tsne' else 'PC'} 2")
        ax.grid(alpha=0.25)
    handles = [Line2D([], [], color=colours[b], marker="o", ls="", label=f"block {b}") for b in blocks]
    handles += [Line2D([], [], color="k", marker=m, ls="", mfc="none", label=c) for c, m in markers.items()]
    handles += [Line2D([], [], color=(0.8, 0.8, 0.8), marker="o", ls="", label="s = 0 (light)"),
                Line2D([], [], color=(0.1, 0.1, 0.1), marker="o", ls="", label="s = 1 (dark)")]
    fig.legend(handles=handles, fontsize=8.5, loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.05),
               frameon=False)
    ax = axes[2]
    convs = sorted({c for _, c in groups})
    width = 0.8 / max(1, len(convs))
    for j, conv in enumerate(convs):
        ys, xs, cs = [], [], []
        for i, row in enumerate(report["blocks"]):
            if conv in row["convs"]:
                xs.append(i + (j - (len(convs) - 1) / 2) * width)
                ys.append(row["convs"][conv]["relative_length"])
                cs.append(colours[row["block"]])
        ax.bar(xs, ys, width=width * 0.9, color=cs, edgecolor="k", linewidth=0.5,
               hatch="" if j == 0 else "//", label=conv)
    ax.set_xticks(range(len(report["blocks"])))
    ax.set_xticklabels([f"block {r['block']}" for r in report["blocks"]], rotation=45, fontsize=8)
    ax.set_ylabel("|W(1) - W(0)| / mean |W(s)|")
    off = max(max(c["off_line"] for c in r["convs"].values()) for r in report["blocks"])
    ax.set_title(f"path length per conv (off-line RMS / spread <= {off:.1e})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.25, axis="y")
    lin = report["linearity_min"]
    exact = ("exactly linear by construction (w(p) affine in p)" if report.get("exactly_linear_by_construction")
             else "measured")
    fig.suptitle((title + "\n" if title else "")
                 + f"tuned kernels of both convs of each residual block along s: PC1 variance fraction per block "
                 f">= {lin:.12f}, {exact}", fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


def plot_components(comps: Mapping[str, Mapping[str, Any]], s: Sequence[float], path: str | os.PathLike, *,
                    title: str = "", upscale: int = 16) -> Path:
    """Fig. 9: one row per layer, one column per setting: the first principal component as an
    RGB image (see :func:`component_images`), nearest-neighbour upscaled ``upscale`` times."""
    plt = _plt()
    rows = list(comps.items())
    n = len(s)
    fig, axes = plt.subplots(len(rows), n, figsize=(1.6 * n + 1.2, 1.9 * len(rows) + 0.6), squeeze=False)
    for r, (name, data) in enumerate(rows):
        images = component_images(np.asarray(data["components"]))
        for i in range(n):
            img = images[i]
            if img.shape[-1] == 1:
                img = np.repeat(img, 3, axis=-1)
            big = np.kron(img, np.ones((upscale, upscale, 1)))
            ax = axes[r][i]
            ax.imshow(big, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_xlabel(f"var {data['explained'][i]:.2f}", fontsize=8)
            if r == 0:
                ax.set_title(f"s = {s[i]:g}", fontsize=9)
            if i == 0:
                side = "input RGB" if data["side"] == "input" else "output RGB"
                ax.set_ylabel(f"{name}\n({side})", fontsize=9)
    fig.suptitle((title + "\n" if title else "")
                 + "first principal component of the RGB kernels (grey = 0, one scale per row, signs aligned)",
                 fontsize=10)
    fig.tight_layout()
    return _save(fig, path)
