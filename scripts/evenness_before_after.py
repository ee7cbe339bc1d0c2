"""Evenness of the strength slider before (raw p) and after calibration, on the same images.

    tunableconv eval --model denoise --data cbsd68,kodak24 --levels 15,25,50 --compare denoise-fixed --out results/denoise
    tunableconv eval --model denoise --raw --data cbsd68,kodak24 --max-images 20 --levels 15,25,50 --out results/denoise-raw-subset
    python scripts/evenness_before_after.py results/denoise results/denoise-raw-subset
"""

import json
import sys
from pathlib import Path

import numpy as np

calibrated_dir, raw_dir = Path(sys.argv[1]), Path(sys.argv[2])
cal = json.loads((calibrated_dir / "results.json").read_text())
raw = json.loads((raw_dir / "results.json").read_text())
rows = []
for ds, d in raw["datasets"].items():
    n = d["num_images"]
    for sg, v in d["sigma"].items():
        after = float(np.nanmean(cal["datasets"][ds]["sigma"][sg]["model"]["per_image"]["evenness"][:n]))
        rows.append({"dataset": ds, "sigma": float(sg), "images": n, "raw": round(v["model"]["evenness"], 3),
                     "calibrated": round(after, 3)})
out = {"what": "evenness error max_s |d(s) - s| averaged over the first N images, s in {0,.25,.5,.75,1}",
       "rows": rows}
(calibrated_dir / "evenness_before_after.json").write_text(json.dumps(out, indent=2))
print("| set | σ | images | raw p | calibrated |\n|---|---|---|---|---|")
for r in rows:
    print(f"| {r['dataset']} | {r['sigma']:g} | {r['images']} | {r['raw']:.3f} | {r['calibrated']:.3f} |")
