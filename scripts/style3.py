"""Three styles on the simplex: the measurements and pictures of ``results/style3`` (issue 19).

Methods, all on the same held-out photos:

- every ``--model NAME=FILE``: a tunable style network (``style3-small``; also the variant with
  fixed instance norms), run at each point u of the simplex: p = u, or u through the file's
  weight warps when it is calibrated (``tunableconv calibrate``; ``--raw`` skips them);
- ``dni``: the three single-style twins (``--twin STYLE=FILE``, same network, budget and seed)
  with their weights blended by p, θ(p) = Σ p_i θ_i (DNI on the simplex,
  :func:`tunableconv.models.baselines.interpolate_networks`); at a vertex it *is* that twin;
- ``pixel-blend``: the three twins run separately and their output pixels blended by p (what
  people do today for "50% style": three passes and an opacity mix);
- every ``--edge-model NAME=FILE``: a two-knob model whose knobs are two of the styles (e.g.
  Dynamic-Net, ``style-dynamicnet-small``), run along its edge of the triangle only.

Points: the barycentric grid of step 0.25 (15 points: the vertices, the edge midpoints, ...),
the centre (1/3, 1/3, 1/3) and each edge at t = 0, 0.1, ..., 1.

Measures (:meth:`tunableconv.tasks.style.StyleTask.style_statistics`, VGG16, unweighted):
``style_<s>`` = Σ_l ‖G_l(y) − G_l(s)‖²_F over relu1_2 .. relu4_3 (the Gram distance to style
image s; lower is closer) and ``content`` = the relu2_2 mean squared distance to the photo.

Evenness along an edge from style a (t = 0) to style b (t = 1), in Gram space: with g(y) the
Gram matrices of the four layers stacked, D(t) = ‖g(y_t) − g(y_0)‖ / ‖g(y_1) − g(y_0)‖ (the
fraction of the way travelled from one style's output to the other's) and the error
max_t |D(t) − t| per photo (the project's evenness, :func:`tunableconv.metrics.evenness`, with
the pixels replaced by the Gram matrices); 0 is perfectly even.

Steps (per-photo results are cached in ``OUT/measures/METHOD.json`` keyed by the model files)::

    python scripts/style3.py measure --out results/style3 \\
        --model tunable=runs/style3-small/model.safetensors \\
        --model fixed-norms=runs/style3-fixednorms-small/model.safetensors \\
        --twin mosaic=runs/style3-fixed-mosaic-small/model.safetensors \\
        --twin edtaonisl=runs/style3-fixed-edtaonisl-small/model.safetensors \\
        --twin kandinsky=runs/style3-fixed-kandinsky-small/model.safetensors
    python scripts/style3.py figures --out results/style3 --model tunable=... --twin ... (same)
    python scripts/style3.py report --out results/style3

Photos: the first ``--images`` of CBSD68 and of Kodak24 (default 12 + 12), resized (MATLAB
bicubic) so that the shorter side is ``--size`` pixels (default 256: CBSD68's 481x321 become
383x256, this project's 500x500 Kodak24 copy 256x256).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

STYLES = ("mosaic", "edtaonisl", "kandinsky")
#: the edges of the triangle, (a, b): t = 0 is style a, t = 1 style b
EDGES = ((0, 1), (0, 2), (1, 2))
EDGE_T = [round(i / 10, 2) for i in range(11)]
#: the evenness target of the issue (after calibration), and the vertex target (tunable vs twin)
EVENNESS_TARGET = 0.10
VERTEX_TARGET = 0.10


def lattice(m: int = 4) -> list[tuple[float, float, float]]:
    """The barycentric grid of step 1/m, in the order of :func:`tunableconv.preview.anchor_set`."""
    return [(i / m, j / m, (m - i - j) / m) for i in range(m + 1) for j in range(m + 1 - i)]


def edge_point(edge: tuple[int, int], t: float) -> tuple[float, float, float]:
    p = [0.0, 0.0, 0.0]
    p[edge[0]] += 1 - t
    p[edge[1]] += t
    return tuple(p)


def key_of(p) -> str:
    return "/".join(f"{float(v):.4f}" for v in p)


def all_points() -> list[tuple[float, float, float]]:
    points = {key_of(p): p for p in lattice(4)}
    points[key_of((1 / 3, 1 / 3, 1 / 3))] = (1 / 3, 1 / 3, 1 / 3)
    for e in EDGES:
        for t in EDGE_T:
            points.setdefault(key_of(edge_point(e, t)), edge_point(e, t))
    return list(points.values())


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def photos(data_root: str | None, per_set: int, size: int) -> list[tuple[str, torch.Tensor]]:
    """``[(name, (3, H, W))]``: the first ``per_set`` photos of CBSD68 and of Kodak24, the
    shorter side resized to ``size`` (MATLAB bicubic, clamped)."""
    from tunableconv.data.degradations import imresize
    from tunableconv.io import list_images, read_image
    from tunableconv.paths import data_root as resolve

    out = []
    for folder in ("cbsd68", "kodak24"):
        for f in list_images(resolve(data_root) / "test" / folder)[:per_set]:
            img = read_image(f)
            h, w = img.shape[-2:]
            shape = (size, round(w * size / h)) if h <= w else (round(h * size / w), size)
            out.append((f"{folder}/{f.stem}", imresize(img[None], size=shape)[0].clamp(0, 1)))
    return out


class Methods:
    """The outputs of every method at a point p: ``outputs(name, x, ps) -> (N, 3, H, W)``."""

    def __init__(self, models: dict[str, str], twins: dict[str, str], raw: bool = False,
                 edge_models: dict[str, str] | None = None) -> None:
        from tunableconv.models.baselines import interpolate_networks
        from tunableconv.restore import Restorer

        if twins and sorted(twins) != sorted(STYLES):
            raise SystemExit(f"--twin needs one file per style: {', '.join(STYLES)} (got {', '.join(twins) or 'none'})")
        self.raw = raw
        self.restorers = {name: Restorer.load(file) for name, file in models.items()}
        # name -> (restorer, the indices in STYLES of its two knobs, in its knob order)
        self.edge_models: dict[str, tuple] = {}
        for name, file in (edge_models or {}).items():
            r = Restorer.load(file)
            if r.space.domain != "simplex" or len(r.space.names) != 2 or not set(r.space.names) <= set(STYLES):
                raise SystemExit(f"--edge-model {name}: needs two knobs on the simplex named after two of "
                                 f"{', '.join(STYLES)}, got {r.space.names} ({r.space.domain})")
            self.edge_models[name] = (r, tuple(STYLES.index(k) for k in r.space.names))
        self.files = {**models, **(edge_models or {}), **{f"twin-{s}": f for s, f in twins.items()}}
        self.twins = [Restorer.load(twins[s]).model.eval() for s in STYLES] if twins else []
        self._blend = interpolate_networks(self.twins, [1.0, 0.0, 0.0]) if self.twins else None
        self._interpolate = interpolate_networks

    @property
    def names(self) -> list[str]:
        return list(self.restorers) + list(self.edge_models) + (["dni", "pixel-blend"] if self.twins else [])

    def edges(self, name: str) -> list[tuple[int, int]]:
        """The edges of the triangle ``name`` reaches: all three, or an edge model's one."""
        if name in self.edge_models:
            return [tuple(sorted(self.edge_models[name][1]))]
        return list(EDGES)

    def points(self, name: str) -> list[tuple[float, float, float]]:
        """The points ``name`` is measured at: :func:`all_points`, or an edge model's edge."""
        if name in self.edge_models:
            (e,) = self.edges(name)
            return [edge_point(e, t) for t in EDGE_T]
        return all_points()

    def key(self, name: str) -> dict:
        if name in self.restorers or name in self.edge_models:
            return {"model": _sha(Path(self.files[name]))}
        return {"twins": [_sha(Path(self.files[f"twin-{s}"])) for s in STYLES]}

    @torch.no_grad()
    def outputs(self, name: str, x: torch.Tensor, ps: list) -> torch.Tensor:
        xb = x[None]
        if name in self.restorers:  # the user's weights through the file's weight warps (if calibrated)
            r = self.restorers[name]
            model = r.model.eval()
            return torch.cat([model(xb, torch.tensor(r.space.simplex_weights(p, calibrated=not self.raw),
                                                     dtype=torch.float32)) for p in ps]).clamp(0, 1)
        if name in self.edge_models:  # its two weights of each point (on its edge: they sum to 1)
            r, idx = self.edge_models[name]
            if any(abs(sum(p[i] for i in idx) - 1) > 1e-6 for p in ps):
                raise ValueError(f"{name} reaches only the {'-'.join(STYLES[i] for i in idx)} edge")
            model = r.model.eval()
            return torch.cat([model(xb, torch.tensor(r.space.simplex_weights([p[i] for i in idx], calibrated=not self.raw),
                                                     dtype=torch.float32)) for p in ps]).clamp(0, 1)
        if name == "dni":
            outs = []
            for p in ps:
                self._interpolate(self.twins, list(p), into=self._blend)
                outs.append(self._blend(xb))
            return torch.cat(outs).clamp(0, 1)
        if name == "pixel-blend":
            singles = torch.cat([t(xb) for t in self.twins]).clamp(0, 1)  # (3, 3, H, W)
            w = torch.tensor(ps, dtype=torch.float32)  # (N, 3)
            return torch.einsum("ns,schw->nchw", w, singles)
        raise KeyError(name)


def _gram_vector(grams: dict, i: int) -> torch.Tensor:
    return torch.cat([g[i].flatten().double() for g in grams.values()])


def measure_image(task, methods: Methods, name: str, x: torch.Tensor, batch: int = 6) -> dict:
    """One photo, one method: the measures at every point and D(t) along every edge (those the
    method reaches)."""
    points = methods.points(name)
    ys = methods.outputs(name, x, points)
    rows, vectors = {}, {}
    edge_keys = {key_of(edge_point(e, t)) for e in methods.edges(name) for t in EDGE_T}
    for start in range(0, len(points), batch):
        chunk = ys[start:start + batch]
        measures, grams = task.style_statistics(chunk, x[None].expand(len(chunk), -1, -1, -1))
        for i in range(len(chunk)):
            k = key_of(points[start + i])
            rows[k] = {m: round(float(v[i]), 5) for m, v in measures.items()}
            if k in edge_keys:
                vectors[k] = _gram_vector(grams, i)
    edges = {}
    for e in methods.edges(name):
        g = [vectors[key_of(edge_point(e, t))] for t in EDGE_T]
        span = float(torch.linalg.vector_norm(g[-1] - g[0]))
        edges[f"{STYLES[e[0]]}-{STYLES[e[1]]}"] = [round(float(torch.linalg.vector_norm(v - g[0])) / span, 5)
                                                  if span > 0 else float("nan") for v in g]
    return {"points": rows, "edges": edges}


def measure(args: argparse.Namespace) -> None:
    from tunableconv.evaluation import task_of

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "measures").mkdir(parents=True, exist_ok=True)
    methods = Methods(dict(m.split("=", 1) for m in args.model), dict(t.split("=", 1) for t in args.twin or []),
                      raw=args.raw, edge_models=dict(m.split("=", 1) for m in args.edge_model or []))
    first = next(iter(methods.restorers.values()))
    task = task_of(first.info)
    images = photos(args.data_root, args.images, args.size)
    for name in methods.names if not args.only else args.only:
        dest = out / "measures" / f"{name}.json"
        key = {**methods.key(name), "size": args.size, "raw": args.raw}
        old = json.loads(dest.read_text()) if dest.is_file() else {}
        done = {r["name"]: r for r in old.get("images", [])} if old.get("key") == key else {}
        rows, start = [], time.perf_counter()
        for image_name, x in tqdm(images, desc=name, file=sys.stdout, mininterval=10):
            if image_name not in done:
                done[image_name] = {"name": image_name, **measure_image(task, methods, name, x)}
                dest.write_text(json.dumps({"key": key, "images": list(done.values())}) + "\n")  # resumable
            rows.append(done[image_name])
        dest.write_text(json.dumps({"key": key, "images": rows, "seconds_this_run": round(time.perf_counter() - start, 1)},
                                   indent=0) + "\n")
        print(f"{name}: {len(rows)} photos -> {dest}")


# ----------------------------------------------------------------------------------------- report
def summarise(rows: list[dict]) -> dict:
    """Means over photos: every measure at every point; per edge the mean D(t) and the mean and
    worst per-photo evenness error max_t |D(t) − t|."""
    keys = rows[0]["points"].keys()
    points = {k: {m: round(float(np.mean([r["points"][k][m] for r in rows])), 4) for m in rows[0]["points"][k]}
              for k in keys}
    edges = {}
    for e in rows[0]["edges"]:
        d = np.array([r["edges"][e] for r in rows], dtype=float)
        err = np.nanmax(np.abs(d - np.array(EDGE_T)[None]), axis=1)
        edges[e] = {"t": EDGE_T, "d_mean": [round(float(v), 4) for v in np.nanmean(d, 0)],
                    "error_mean": round(float(np.nanmean(err)), 4), "error_max": round(float(np.nanmax(err)), 4)}
    return {"photos": len(rows), "points": points, "edges": edges}


def _vertex(i: int) -> str:
    return key_of(edge_point((i, (i + 1) % 3), 0.0))


def report(args: argparse.Namespace) -> None:
    out = Path(args.out)
    found = {f.stem: json.loads(f.read_text()) for f in sorted((out / "measures").glob("*.json"))}
    order = sorted(found, key=lambda n: (n == "dni", n == "pixel-blend", n != "tunable", n))  # tunables first
    found = {n: found[n] for n in order}
    summary = {name: summarise(d["images"]) for name, d in found.items()}
    tunables = [n for n in found if n not in ("dni", "pixel-blend")]
    lines = ["# Three styles on the simplex: measured", "",
             f"{summary[tunables[0]]['photos']} photos (CBSD68 and Kodak24, shorter side {args.size} px). "
             "Gram distances are Σ over relu1_2..relu4_3 of ‖G(y) − G(style)‖²_F (VGG16); content is the relu2_2 "
             "distance to the photo. Lower is closer. Made by `python scripts/style3.py report --out results/style3`.", ""]
    if "dni" in summary:
        lines += ["## At the vertices: one network against three single-style twins", "",
                  "| style | method | style distance | vs twin | content distance |", "|---|---|---|---|---|"]
        for i, s in enumerate(STYLES):
            twin = summary["dni"]["points"][_vertex(i)]
            for n in [*tunables, "dni"]:
                if _vertex(i) not in summary[n]["points"]:  # an edge model's edge lacks this style
                    continue
                v = summary[n]["points"][_vertex(i)]
                label = "single-style twin" if n == "dni" else n
                ratio = v[f"style_{s}"] / twin[f"style_{s}"] - 1
                lines.append(f"| {s} | {label} | {v[f'style_{s}']:.2f} | {ratio:+.1%} | {v['content']:.2f} |")
        lines += ["", f"Target: the tunable network's style distance within {VERTEX_TARGET:.0%} of its twin's.", ""]
    lines += ["## Blends: edge midpoints and the centre", "",
              "| point | method | " + " | ".join(f"to {s}" for s in STYLES) + " | content |",
              "|---|---|" + "---|" * (len(STYLES) + 1)]
    mids = [(f"{STYLES[a]}+{STYLES[b]}", key_of(edge_point((a, b), 0.5))) for a, b in EDGES]
    mids.append(("centre", key_of((1 / 3, 1 / 3, 1 / 3))))
    for label, k in mids:
        for n in summary:
            if k not in summary[n]["points"]:  # an edge model off its edge
                continue
            v = summary[n]["points"][k]
            lines.append(f"| {label} | {n} | " + " | ".join(f"{v[f'style_{s}']:.2f}" for s in STYLES)
                         + f" | {v['content']:.2f} |")
    lines += ["", "## Evenness along the edges (Gram space)", "",
              "Error max_t |D(t) − t| per photo, mean (worst) over photos; D(t) the fraction of the Gram-space way "
              "from one style's output to the other's at t = 0, 0.1, ..., 1. Target after calibration: "
              f"≤ {EVENNESS_TARGET}.", "", "| edge | " + " | ".join(summary) + " |", "|---|" + "---|" * len(summary)]
    for e in summary[tunables[0]]["edges"]:
        lines.append(f"| {e} | " + " | ".join(f"{summary[n]['edges'][e]['error_mean']:.3f} "
                                              f"({summary[n]['edges'][e]['error_max']:.3f})" if e in summary[n]["edges"]
                                              else "—" for n in summary) + " |")
    (out / "tables.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(lines))
    evenness_plot(summary, out / "evenness.png")


def evenness_plot(summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = list(next(iter(summary.values()))["edges"])
    fig, axes = plt.subplots(1, len(edges), figsize=(4 * len(edges), 3.6), sharey=True)
    for ax, e in zip(axes, edges):
        ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--", label="even")
        for n, s in summary.items():
            if e not in s["edges"]:
                continue
            d = s["edges"][e]
            ax.plot(d["t"], d["d_mean"], marker="o", ms=3, label=f"{n} (error {d['error_mean']:.2f})")
        a, b = e.split("-")
        ax.set_title(f"{a} → {b}")
        ax.set_xlabel(f"t (weight of {b})")
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("D(t): way travelled in Gram space")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


# ----------------------------------------------------------------------------------------- figures
def figures(args: argparse.Namespace) -> None:
    """The paper's Fig. 7 triangle for one photo (tunable and DNI side by side, the style images
    above) and strips along each edge (t = 0, 0.25, ..., 1) for every method."""
    from PIL import Image

    from tunableconv.io import icon_image
    from tunableconv.sweep import make_grid, make_strip, to_pil, triangle_sheet

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    methods = Methods(dict(m.split("=", 1) for m in args.model), dict(t.split("=", 1) for t in args.twin or []),
                      raw=args.raw, edge_models=dict(m.split("=", 1) for m in args.edge_model or []))
    images = dict(photos(args.data_root, 24, args.size))
    if args.image not in images:
        raise SystemExit(f"--image must be one of {', '.join(images)}")
    x = images[args.image]
    first = next(iter(methods.restorers.values()))
    corners = [icon_image(k.icon) for k in first.space.knobs] if all(k.icon for k in first.space.knobs) else None
    shown = [n for n in methods.names if n != "pixel-blend" and n not in methods.edge_models][:2] \
        if not args.methods else args.methods
    pts = lattice(4)
    sheets = []
    for n in shown:
        ys = methods.outputs(n, x, pts)
        sheet = triangle_sheet(list(ys), pts, STYLES, corner_images=corners)
        sheets.append(make_strip([sheet], [n if n != "dni" else "DNI (three single-style networks interpolated)"]))
    width = sum(s.width for s in sheets) + 24 * (len(sheets) - 1)
    combined = Image.new("RGB", (width, max(s.height for s in sheets)), (255, 255, 255))
    xpos = 0
    for s in sheets:
        combined.paste(s, (xpos, 0))
        xpos += s.width + 24
    combined.save(out / "triangle.jpg", quality=90)
    print(f"wrote {out / 'triangle.jpg'} ({combined.width}x{combined.height})")

    ts = [0.0, 0.25, 0.5, 0.75, 1.0]
    rows, labels = [], []
    for a, b in EDGES:
        for n in methods.names:
            if (a, b) not in methods.edges(n):
                continue
            rows.append(list(methods.outputs(n, x, [edge_point((a, b), t) for t in ts])))
            labels.append(f"{STYLES[a]}→{STYLES[b]}: {n}")
    grid = make_grid([[to_pil(y) for y in row] for row in rows], labels, [f"t = {t:g}" for t in ts])
    grid.save(out / "edges.jpg", quality=90)
    print(f"wrote {out / 'edges.jpg'} ({grid.width}x{grid.height})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name, fn, help_text in (("measure", measure, "distances at every point of every method (cached per photo)"),
                                ("figures", figures, "the triangle and the edge strips of one photo")):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--out", required=True)
        p.add_argument("--model", action="append", required=True, metavar="NAME=FILE", help="a tunable style model")
        p.add_argument("--twin", action="append", metavar="STYLE=FILE", help="the single-style network of STYLE")
        p.add_argument("--edge-model", action="append", metavar="NAME=FILE",
                       help="a two-style model (e.g. Dynamic-Net), measured along its edge only")
        p.add_argument("--data-root", default=None)
        p.add_argument("--size", type=int, default=256)
        p.add_argument("--threads", type=int, default=1)
        p.add_argument("--raw", action="store_true", help="the tunable models at the raw points (skip their weight warps)")
        p.set_defaults(fn=fn)
    m = sub.choices["measure"]
    m.add_argument("--images", type=int, default=12, help="photos per test set (CBSD68, Kodak24)")
    m.add_argument("--only", nargs="+", metavar="METHOD", help="measure only these methods")
    f = sub.choices["figures"]
    f.add_argument("--image", default="kodak24/kodim05")
    f.add_argument("--methods", nargs="+", help="the methods of the triangle figure (default: the first model and dni)")
    r = sub.add_parser("report", help="tables.md, summary.json and evenness.png from OUT/measures")
    r.add_argument("--out", required=True)
    r.add_argument("--size", type=int, default=256)
    r.set_defaults(fn=report)
    args = ap.parse_args(argv)
    args.fn(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
