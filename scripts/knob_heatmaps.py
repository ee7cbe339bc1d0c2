"""Heat maps of chosen metrics over a cube model's knob grid, from a ``tunableconv eval`` result.

    python scripts/knob_heatmaps.py results/deblur-denoise/grid/results.json --dataset kodak24 \\
        --case noise=15,blur=2 --metrics residual_noise,edge_sharpness,psnr_blend -o docs/deblur_denoise_heatmaps.png

(``tunableconv eval`` draws every metric of every case; this picks the few a page shows.)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tunableconv.plots import plot_knob_space  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("results", type=Path)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--case", required=True)
    ap.add_argument("--metrics", required=True, help="comma-separated metric names of the result")
    ap.add_argument("-o", "--out", type=Path, required=True)
    args = ap.parse_args(argv)
    res = json.loads(args.results.read_text())
    try:
        case = res["datasets"][args.dataset]["cases"][args.case]["model"]
    except KeyError as exc:
        print(f"error: {args.results} has no {exc}", file=sys.stderr)
        return 2
    names = [m.strip() for m in args.metrics.split(",")]
    missing = [m for m in names if m not in case]
    if missing:
        print(f"error: no metric {missing[0]!r}; the result has {', '.join(case)}", file=sys.stderr)
        return 2
    space = res["model"]["knob_space"]
    ps = [s["p"] for s in res["settings"]]
    plot_knob_space(space["domain"], ps, {m: case[m] for m in names}, args.out,
                    knob_names=[k["name"] for k in space["knobs"]], title=f"{res['model']['name']}: {args.dataset}, {args.case}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
