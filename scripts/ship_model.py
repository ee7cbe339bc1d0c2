"""Copy a finished run's model into the package zoo and write its model card.

    python scripts/ship_model.py runs/denoise-small denoise [--title "..."] [--results results/denoise/results.json] [--half]

The card is generated from what the model file records (recipe, steps, wall time, final
validation) plus, if given, evaluation results. Nothing in it is typed by hand.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tunableconv.models import load_model, save_model

ZOO = Path(__file__).resolve().parents[1] / "src" / "tunableconv" / "zoo"

#: the info entries that are not the task's facts (those the task's model_info wrote)
NOT_TASK_FACTS = ("task", "recipe", "training", "name", "calibration", "calibration_fit", "knob_space")


def reproduce(rc: dict, tr: dict, args) -> str:
    """The commands that train the model again: ``tunableconv train`` of its recipe, or, for a
    ``compare`` run (recipe ``compare-METHOD``), the ``compare`` call that trained it."""
    name = str(rc.get("name"))
    if name.startswith("compare-"):
        method, task = name[len("compare-"):], rc.get("task", {}).get("name")
        return (f"`tunableconv compare --task {task} --budget small --out OUT --methods {method} --train-only` then "
                f"`python scripts/ship_model.py OUT/models/{method}.safetensors {args.name}`")
    return (f"`tunableconv train --recipe {name} --steps {tr.get('steps')} --out runs/{name}` then "
            f"`python scripts/ship_model.py runs/{name} {args.name}`")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a run folder (its model.safetensors) or a model file")
    ap.add_argument("name")
    ap.add_argument("--title", default=None)
    ap.add_argument("--results", type=Path, default=None, help="results.json of `tunableconv eval` to quote")
    ap.add_argument("--note", default=None, help="conditions of the run worth knowing (e.g. a shared CPU)")
    ap.add_argument("--reproduce", default=None,
                    help="the commands that trained it, when not one `tunableconv train` (e.g. a resumed run)")
    ap.add_argument("--half", action="store_true",
                    help="store the weights in float16 (half the file; loading computes in float32 again)")
    args = ap.parse_args()
    src = args.run if args.run.is_file() else args.run / "model.safetensors"
    model, info = load_model(src)
    meta = dict(info.info)
    meta["name"] = args.name
    dst = ZOO / f"{args.name}.safetensors"
    if args.half:
        model = model.half()
    save_model(model, dst, knobs=info.knobs, info=meta, knob_space=info.space)
    tr = meta.get("training", {})
    rc = meta.get("recipe", {})
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        f"# {args.name}: {args.title or rc.get('name', '')}",
        "",
        f"- architecture: `{info.architecture}` {json.dumps(info.arguments)}",
        f"- parameters: {n_params:,}; file: {dst.stat().st_size / 1e6:.2f} MB"
        + (" (weights stored in float16; they load into float32)" if args.half else ""),
        f"- knobs: " + (", ".join(f"`{k['name']}` ({k['description']})" for k in info.knobs) or "none (fixed network)")
        + (f"; domain {info.space.domain}, default p = {tuple(info.space.default)}" if info.knobs else ""),
        f"- task: {meta.get('task')}; {json.dumps({k: v for k, v in meta.items() if k not in NOT_TASK_FACTS})}",
        f"- recipe: `{rc.get('name')}` — data `{rc.get('data', {}).get('train')}`, patch {rc.get('data', {}).get('patch_size')}, "
        f"batch {rc.get('train', {}).get('batch_size')}, lr {rc.get('train', {}).get('lr')} ({rc.get('train', {}).get('schedule')}), "
        f"seed {rc.get('train', {}).get('seed')}",
        f"- training: {tr.get('steps')} steps, {tr.get('train_wall_seconds')} s wall time, {tr.get('processes')} process(es) x "
        f"{tr.get('threads')} thread(s), CPU",
        f"- reproduce: {args.reproduce or reproduce(rc, tr, args)}",
        f"- final validation ({rc.get('data', {}).get('val')}, first {rc.get('data', {}).get('val_images')} images, "
        f"centre {rc.get('data', {}).get('val_crop')} px): `{json.dumps(tr.get('val'))}`",
    ]
    if args.note:
        lines.append(f"- note: {args.note}")
    if args.results and args.results.is_file():
        res = json.loads(args.results.read_text())
        lines += ["", "## Evaluation", "", f"From `{res.get('command', 'tunableconv eval')}`; see `results/` for the full tables.", ""]
        md = args.results.with_name("results.md")
        if md.is_file():
            lines += [md.read_text()]
    (ZOO / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print(f"shipped {dst} ({dst.stat().st_size / 1e6:.2f} MB) and {ZOO / (args.name + '.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
