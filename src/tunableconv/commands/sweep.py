"""``tunableconv sweep``: a model's outputs along a slider or a knob, side by side and as a GIF;
or over two cube knobs, as an image grid.

Examples::

    tunableconv sweep photo.png --model denoise --steps 5 -o strip.png
    tunableconv sweep clean.png --model denoise --degrade 25 --with-input --crop 256 -o strip.png --gif anim.gif
    tunableconv sweep clean.png --model deblur-denoise --degrade noise=15,blur=2 --grid denoise,deblur -o grid.png
    tunableconv sweep photo.png --model denoise --raw -o raw_strip.png
    tunableconv sweep photo.png --model denoise --slider strength -o strip.png
    tunableconv sweep photo.png --model three_knobs.safetensors --knob k2 --base 0.2,0.3,0 -o strip.png
    tunableconv sweep photo.png --model cube.safetensors --grid denoise,deblur --steps 3 -o grid.png
    tunableconv sweep photo.png --model restore3 --grid 3 -o sheet.png
    tunableconv sweep photo.png --model style3 --grid 5 -o triangle.png
    tunableconv sweep clean.png --model restore3 --degrade blur=2,noise=25,jpeg=30 --grid 3 --auto -o sheet.png

What is swept (the model's knob space says what exists: ``tunableconv models``):

- ``--slider NAME``: the named slider from 0 to 1, through its calibration (``--raw``: not);
- ``--knob NAME`` or ``--knob-index I``: that knob from 0 to 1, the other knobs at their
  defaults or at ``--base`` (a full p vector whose entry for this knob is ignored); on the
  cube the values go through the knob's calibration (``--raw``: not);
- neither: the model's first slider, else its only knob;
- ``--grid A,B``: knobs A (rows) and B (columns) of a cube model, ``--steps`` values each,
  the other knobs at their defaults; writes one image grid (``-o``, no GIF).
- ``--grid N``: *every* setting of a cube model's knobs at N values each (N ** P settings, at
  most 27: three knobs at 0, 0.5, 1 are the 27 effects), as one contact sheet (``-o``): rows
  follow the first P // 2 knobs, columns the others. A model with a p-independent trunk
  computes it once for all settings (``model.sweep``); the time it took is printed. On a
  3-knob simplex model (three styles) ``--grid N`` draws the triangle of blends with N points
  per edge (``--grid 5``: the 15 blends of step 0.25), the first knob at the top.

``--auto`` picks one setting of the sweep or grid by a no-reference score, NIQE (lower is
more natural; it needs the NIQE parameters of the weights root, ``TUNABLECONV_WEIGHTS``, and
outputs of at least 96 x 96 pixels), says which, frames it in red and, with ``--auto-output
FILE``, writes that output alone. NIQE is a guess, not an oracle: ``results/many-effects``
measures how far it lands from the best setting.

``--degrade LEVELS`` first degrades the input as the model's task does in evaluation, at one
case of its levels (the model file names its task; each task's form is in the option's help),
seeded by ``--seed``: a demonstration on a
clean photo. ``--with-input`` puts
the (degraded) input as the first panel. ``--crop SIZE`` takes a centred SIZE x SIZE crop first.
The strip is ``panels x crop + 4 px gaps`` wide; the GIF goes there and back and loops forever.
At most 33 steps (11 per axis for a grid).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..tasks import case_examples
from . import add_model_option
from ..errors import InputError, InvalidParamsError


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("sweep", help="outputs along a slider or knob: labelled strip and GIF, or a 2-knob grid",
                        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", metavar="IN", help="an image file")
    ap.add_argument("-o", "--output", metavar="STRIP", help="the strip (or grid) image (.png, .jpg, ...)")
    ap.add_argument("--gif", metavar="ANIM.gif", help="also write an animated GIF (there and back, looping)")
    add_model_option(ap)
    ap.add_argument("--steps", type=int, help="number of values from 0 to 1 (default 5)")
    ap.add_argument("--crop", type=int, metavar="SIZE", help="centred SIZE x SIZE crop of the input first")
    ap.add_argument("--raw", action="store_true", help="sweep uncalibrated values")
    ap.add_argument("--slider", metavar="NAME", help="the named slider to sweep")
    ap.add_argument("--knob", metavar="NAME", help="the knob to sweep, by name")
    ap.add_argument("--knob-index", type=int, metavar="I", help="the knob to sweep, by position")
    ap.add_argument("--base", metavar="V1,V2,...", help="values of the other knobs in a knob sweep (a full p)")
    ap.add_argument("--grid", metavar="A,B|N", help="sweep two knobs of a cube model as an image grid (A,B), or render "
                    "every setting of its knobs at N values each as one contact sheet (N; on a 3-knob simplex: the triangle of "
                    "blends, N per edge)")
    ap.add_argument("--auto", action="store_true", help="pick one setting by NIQE (lower is more natural) and say which")
    ap.add_argument("--auto-output", metavar="FILE", help="with --auto: also write the chosen output alone")
    ap.add_argument("--degrade", metavar="LEVELS",
                    help="degrade the input first as the model's task does, at one case of its levels "
                         f"({case_examples()}); a demonstration on a clean photo")
    ap.add_argument("--seed", type=int, default=0, help="seed of --degrade (default 0)")
    ap.add_argument("--with-input", action="store_true", help="the input as the first panel")
    ap.add_argument("--duration", type=int, default=300, help="GIF frame duration in ms (default 300)")
    ap.add_argument("--tile", type=int, metavar="SIZE", help="process in tiles of SIZE >= 16 pixels (0: no tiling)")
    ap.add_argument("--overlap", type=int, default=32, help="tile overlap in pixels (default 32)")
    ap.add_argument("--force-tiling", action="store_true", help="tile even a model whose tiled inference is not exact")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    ap.add_argument("--max-pixels", type=int, metavar="N", help="refuse larger images (default 64,000,000; 0: no limit)")
    ap.set_defaults(func=run)


def center_crop(image, size: int):
    """The centred ``size x size`` crop of ``(C, H, W)`` (smaller sides are kept whole)."""
    h, w = image.shape[-2:]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return image[..., top : top + ch, left : left + cw]


def _grid_knobs(text: str) -> list[str] | int:
    """``--grid``: two knob names ``A,B``, or a whole number N (every knob at N values)."""
    if text.strip().isdigit():
        return int(text.strip())
    names = [t.strip() for t in text.split(",")]
    if len(names) != 2 or not all(names):
        raise InvalidParamsError(f"--grid expects two knob names A,B, got {text!r}")
    return names


def degradation_case(restorer, text: str):
    """``(task, case)``: the model file's task and the one evaluation case ``text`` names
    (``--degrade``); a clear error when the file names no task or ``text`` is not one case."""
    from ..evaluation import parse_levels, task_of

    try:
        task = task_of(restorer.info)
    except InputError as exc:
        raise InputError(f"--degrade: {exc}") from None
    levels = parse_levels(text, "--degrade")  # its errors already name --degrade
    try:
        cases = task.evaluation_cases(levels)
    except InputError as exc:
        raise InputError(f"--degrade: {exc}") from None
    if len(cases) != 1:
        raise InputError(f"--degrade takes one case of the task's levels, got {len(cases)} in {text!r}")
    return task, cases[0]


def _auto(outputs, labels, auto_path) -> int:
    """``--auto``: the index of the lowest-NIQE output; prints the choice and writes it alone
    to ``auto_path`` (when given)."""
    from ..io import write_image
    from ..sweep import choose_setting

    best, scores = choose_setting(outputs)
    ranked = sorted((v, i) for i, v in enumerate(scores) if v == v)
    runner = f"; next: {labels[ranked[1][1]]} ({ranked[1][0]:.2f})" if len(ranked) > 1 else ""
    print(f"auto (lowest NIQE): {labels[best]} (NIQE {scores[best]:.2f}{runner})")
    if auto_path is not None:
        auto_path.parent.mkdir(parents=True, exist_ok=True)
        write_image(outputs[best], auto_path)
        print(f"wrote {auto_path} (the automatic choice)")
    return best


def _contact_sheet(args, restorer, image, settings, strip_path, auto_path, tile, overlap) -> int:
    """``--grid N``: every setting of the knobs as one contact sheet (cube grid or simplex
    triangle; and ``--auto``)."""
    import time

    import numpy as np

    from ..io import from_uint8_array, icon_image, write_image
    from ..sweep import contact_sheet, has_shared_trunk, settings_outputs

    shared = has_shared_trunk(restorer) and not tile
    start = time.perf_counter()
    outputs = settings_outputs(restorer, image, settings.ps, tile=tile, overlap=overlap, force_tiling=args.force_tiling)
    seconds = time.perf_counter() - start
    how = "the layers that do not depend on p run once" if shared else "one pass per setting"
    print(f"{len(outputs)} settings in {seconds:.2f} s ({how}; {seconds / len(outputs) * 1000:.0f} ms per setting)")
    best = None
    if args.auto:
        names = [", ".join(f"{a}={float(u):g}" for a, u in zip(settings.axes, pt)) for pt in settings.points]
        best = _auto(outputs, names, auto_path)
    if strip_path is not None:
        icons = [k.icon for k in restorer.space.knobs]
        corners = [icon_image(i) for i in icons] if settings.layout == "triangle" and all(icons) else None
        sheet = contact_sheet(outputs, settings, highlight=best, corner_images=corners)
        strip_path.parent.mkdir(parents=True, exist_ok=True)
        write_image(from_uint8_array(np.asarray(sheet)), strip_path)
        print(f"wrote {strip_path} ({len(outputs)} settings, {sheet.width}x{sheet.height})")
    return 0


def run(args: argparse.Namespace) -> int:
    import torch

    from ..io import check_output_path, path_problem, read_image, write_image
    from ..restore import Restorer
    from ..sweep import (MAX_GRID_STEPS, MAX_STEPS, grid_outputs, grid_params, make_gif, make_grid, make_strip, save_gif,
                         knob_settings, framed, sweep_labels, sweep_outputs, sweep_params, sweep_values)
    from .restore import check_max_pixels, check_output_file, check_tiling, parse_values, same_path

    src = Path(args.input)
    if not args.output and not args.gif and not args.auto_output:
        raise InputError("give -o STRIP.png and/or --gif ANIM.gif (or --auto --auto-output FILE)")
    grid_knobs = _grid_knobs(args.grid) if args.grid is not None else None
    full_grid = isinstance(grid_knobs, int)
    if full_grid and args.steps is not None:
        raise InputError(f"--grid {grid_knobs} sets the values per knob itself: drop --steps")
    if args.auto_output and not args.auto:
        raise InputError("--auto-output writes the automatic choice: add --auto")
    if full_grid and args.with_input:
        raise InputError("--with-input adds a panel to a strip; the --grid N contact sheet holds the outputs only")
    if grid_knobs is not None:
        if args.gif:
            raise InputError("--grid writes one image grid (-o GRID.png); a GIF is for a slider or knob sweep")
        if any(v is not None for v in (args.slider, args.knob, args.knob_index, args.base)):
            raise InvalidParamsError("--grid chooses the two knobs itself: drop --slider/--knob/--knob-index/--base")
    strip_path = Path(args.output) if args.output else None
    gif_path = Path(args.gif) if args.gif else None
    auto_path = Path(args.auto_output) if args.auto_output else None
    for out in (strip_path, auto_path):
        if out is not None:
            check_output_file(out)
    if gif_path is not None and gif_path.suffix.lower() != ".gif":
        raise InputError(f"cannot write {gif_path}: --gif needs a .gif file name")
    for out in (strip_path, gif_path, auto_path):
        if out is not None and same_path(src, out):
            raise InputError(f"{out} is the input file: choose another output path")
        if out is not None:
            check_output_path(out)
    outs = [o for o in (strip_path, gif_path, auto_path) if o is not None]
    if any(same_path(a, b) for i, a in enumerate(outs) for b in outs[i + 1:]):
        raise InputError("the strip, the GIF and the --auto-output file need different file names")
    if args.crop is not None and args.crop < 1:
        raise InputError(f"--crop must be a positive size in pixels, got {args.crop}")
    if args.duration < 10:
        raise InputError(f"--duration must be at least 10 ms, got {args.duration}")
    tile, overlap = check_tiling(args.tile, args.overlap)
    max_pixels = check_max_pixels(args.max_pixels)
    if full_grid:
        values = []
        if grid_knobs < 2:
            raise InputError(f"--grid N needs N >= 2 values per knob, got {grid_knobs}")
    else:
        try:
            values = sweep_values(5 if args.steps is None else args.steps,
                                  max_steps=MAX_GRID_STEPS if grid_knobs else MAX_STEPS)
        except InputError as exc:
            raise InputError(f"--{exc}") from None
    base = parse_values(args.base, "--base") if args.base is not None else None
    problem = path_problem(src)
    if problem:  # before the model is loaded; a FIFO would block the reader
        raise InputError(f"input not found: {src}" if problem == "not found" else f"{src} {problem}")

    restorer = Restorer.load(args.model, args.device)
    case = degradation_case(restorer, args.degrade) if args.degrade is not None else None
    if tile:
        restorer.check_tiling(args.force_tiling)
    calibrated = not args.raw
    choice = {"slider": args.slider, "knob": args.knob, "knob_index": args.knob_index}
    if full_grid:
        settings = knob_settings(restorer, grid_knobs, calibrated=calibrated)  # validate before reading the image
        labels = []
    elif grid_knobs is not None:
        grid_params(restorer, grid_knobs, values, calibrated=calibrated)  # validate before reading the image
        labels = []
    else:
        sweep_params(restorer, values, base=base, calibrated=calibrated, **choice)
        labels = sweep_labels(restorer, values, calibrated=calibrated, **choice)
    image = read_image(src, max_pixels=max_pixels)
    if args.crop:
        image = center_crop(image, args.crop)
    first_label = "input"
    if case is not None:
        task, case = case
        image = task.degrade_case(image, case, torch.Generator().manual_seed(args.seed)).input
        first_label = f"degraded, {case.label}"

    if full_grid:
        return _contact_sheet(args, restorer, image, settings, strip_path, auto_path, tile, overlap)
    if grid_knobs is not None:
        import numpy as np

        from ..io import from_uint8_array

        rows = grid_outputs(restorer, image, grid_knobs, values, calibrated=calibrated, tile=tile, overlap=overlap,
                            force_tiling=args.force_tiling)
        prefix = "" if calibrated or not restorer.space.calibrated else "raw "
        row_labels = [f"{prefix}{grid_knobs[0]}={v:.2f}" for v in values]
        column_labels = [f"{prefix}{grid_knobs[1]}={v:.2f}" for v in values]
        if args.auto:
            flat = [o for row in rows for o in row]
            best = _auto(flat, [f"{a}, {b}" for a in row_labels for b in column_labels], auto_path)
            rows = [[framed(o) if r * len(values) + c == best else o for c, o in enumerate(row)]
                    for r, row in enumerate(rows)]
        if strip_path is not None:  # --auto --auto-output alone writes the choice only
            grid = make_grid(rows, row_labels, column_labels)
            strip_path.parent.mkdir(parents=True, exist_ok=True)
            write_image(from_uint8_array(np.asarray(grid)), strip_path)
            print(f"wrote {strip_path} ({len(values)}x{len(values)} grid, {grid.width}x{grid.height})")
        return 0

    outputs = sweep_outputs(restorer, image, values, base=base, calibrated=calibrated, tile=tile, overlap=overlap,
                            force_tiling=args.force_tiling, **choice)
    panels, names = list(outputs), list(labels)
    if args.auto:
        best = _auto(outputs, labels, auto_path)
        panels[best] = framed(panels[best])
    if args.with_input:
        shown = image.clamp(0, 1)
        if shown.shape[-2:] != outputs[0].shape[-2:]:  # upscaling models: show the input at output size
            shown = torch.nn.functional.interpolate(shown[None], size=tuple(outputs[0].shape[-2:]), mode="nearest")[0]
        panels.insert(0, shown)
        names.insert(0, first_label)

    if strip_path is not None:
        import numpy as np

        from ..io import from_uint8_array

        strip = make_strip(panels, names)
        strip_path.parent.mkdir(parents=True, exist_ok=True)
        write_image(from_uint8_array(np.asarray(strip)), strip_path)
        print(f"wrote {strip_path} ({len(panels)} panels, {strip.width}x{strip.height})")
    if gif_path is not None:
        frames = make_gif(outputs, labels)
        gif_path.parent.mkdir(parents=True, exist_ok=True)
        save_gif(frames, gif_path, duration_ms=args.duration)
        print(f"wrote {gif_path} ({len(frames)} frames, looping)")
    return 0
