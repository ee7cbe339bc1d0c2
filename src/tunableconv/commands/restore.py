"""``tunableconv restore``: run a tunable model on an image or on every image of a folder.

Examples::

    tunableconv restore noisy.png clean.png --model denoise                 # the default p
    tunableconv restore noisy.png clean.png --model denoise --slider 0.7    # the main slider
    tunableconv restore noisy.png clean.png --model denoise --slider strength=0.7 --raw
    tunableconv restore noisy.png clean.png --model denoise --p 0.7,0.3
    tunableconv restore noisy.png clean.png --model denoise --knob fidelity=0.7 --knob noise_preservation=0.3
    tunableconv restore blurry.png sharp.png --model cube.safetensors --knob deblur=0.4   # other knobs at defaults
    tunableconv restore photos/ restored/ --model my_model.safetensors --tile 512
    tunableconv restore big.tif big_out.png --model denoise --tile 512 --overlap 32
    tunableconv restore noisy.png clean.png --model denoise --knob-map mask.png  # grey: the main slider per pixel
    tunableconv restore blurry.png sharp.png --model cube.safetensors --knob-map deblur=mask.png --knob denoise=0.5

Knob values (one way at a time; ``tunableconv models`` shows each model's knob space):

- nothing: the model's default p.
- ``--p V1,V2,...``: one raw value in [0, 1] per knob, in the model's knob order.
- ``--knob NAME=VALUE`` (repeatable): knobs by name. On a simplex model (the knobs are
  weights that sum to one) give every knob but one (it is 1 minus the others), or weights
  that already sum to 1 (the knobs not named are 0: ``--knob mosaic=1`` is pure mosaic); on
  a cube model the others stay at their defaults, and each value goes through the knob's
  calibration (``--raw``: not).
- ``--slider NAME=VALUE``: a named slider of the model (a 1-D path through the knobs) at
  VALUE in [0, 1], through its calibration (``--raw``: uncalibrated). ``--slider VALUE``:
  the model's main slider (its first; ``tunableconv models`` lists the sliders).

On a simplex model the values given with ``--p`` or ``--knob`` must sum to 1 (to within
1e-3): p off the simplex the model was trained on is refused, not projected.

Knob maps (a different setting per pixel; instead of ``--slider``):

- ``--knob-map FILE``: a grey image (8 or 16 bits; an RGB file with R = G = B counts as
  grey); its grey level (black 0, white 1) is the position of
  the model's main slider at each pixel, calibrated unless
  ``--raw``.
- ``--knob-map NAME=FILE``: a grey image for the slider or knob NAME. On a cube model the
  other knobs come from ``--knob`` / ``--p`` or their defaults; on a two-knob simplex the
  other knob is 1 - value.
- ``--knob-map FILE`` with one channel per knob (an RGB file with blue 0 for two knobs): the
  raw knob values; on a simplex model they must sum to 1 at every pixel (within 2/255).

The map may have any resolution with the image's aspect ratio (within 2 %): it is resized
bilinearly to the input image's size. An alpha channel, another channel count or a
stretched map is refused with one line (exit status 2, nothing written).

``--tile``: models whose tiled inference is not exact (global operations such as instance
norm; ``tunableconv models`` says "tiling exact: no") are refused unless ``--force-tiling``.

IN and OUT: a file and a file (OUT's extension chooses the format; an existing folder as OUT
receives IN's file name), or a folder and a folder (every image in IN, written under the same
file names into OUT, which is created). OUT must not be IN.

Folder input: every image is decoded once *before anything is written*; if any cannot be
used (unreadable, truncated, not an image, too many pixels, unsupported mode) the command
stops with the first error, a count of the others, and writes nothing. With ``--skip-bad``
the bad files are listed as warnings, the others are restored, and the exit status is 1.
Outputs are written atomically: there is never a partial output file.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from . import add_model_option
from ..errors import InputError, InvalidParamsError

if TYPE_CHECKING:  # pragma: no cover
    from torch import Tensor

    from ..restore import Restorer


# ----------------------------------------------------------------------------------------
# option parsing shared with ``tunableconv sweep``
# ----------------------------------------------------------------------------------------
def parse_number(text: str, option: str) -> float:
    """A finite number from an option value, or a one-line error naming the option."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise InvalidParamsError(f"{option} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise InvalidParamsError(f"{option} must be a finite number in [0, 1], got {text!r}")
    return value


def parse_values(text: str, option: str = "--p") -> list[float]:
    """``'0.7,0.3'`` -> ``[0.7, 0.3]`` (the count and range are checked against the model later)."""
    items = [t.strip() for t in text.split(",")]
    try:
        return [float(t) for t in items]
    except ValueError:
        raise InvalidParamsError(f"{option} must be comma-separated numbers, got {text!r}") from None


def parse_assignments(items: Sequence[str], option: str) -> dict[str, float]:
    """``['fidelity=0.7', 'noise_preservation=0.3']`` -> ``{'fidelity': 0.7, ...}``.

    Checks the ``NAME=VALUE`` form, that VALUE is a finite number and that no name is given
    twice; the names and ranges are checked against the model's knob space later.
    """
    values: dict[str, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidParamsError(f"{option} expects NAME=VALUE, got {item!r}")
        if name in values:
            raise InvalidParamsError(f"{option} {name!r} given twice")
        values[name] = parse_number(text.strip(), f"{option} {name}")
    return values


def parse_knobs(items: Sequence[str], names: Sequence[str] | None = None) -> dict[str, float]:
    """``--knob NAME=VALUE`` items -> ``{name: value}`` (see :func:`parse_assignments`)."""
    if names is not None and not names:
        raise InvalidParamsError("this model has no knobs: drop --knob")
    return parse_assignments(items, "--knob")


def parse_slider(text: str) -> tuple[str | None, float]:
    """``--slider NAME=VALUE`` -> ``(name, value)``; ``--slider VALUE`` -> ``(None, value)``
    (the model's main slider)."""
    if "=" not in text:
        try:
            float(text)
        except ValueError:
            raise InvalidParamsError(f"--slider expects VALUE (the main slider) or NAME=VALUE, got {text!r}") from None
        return None, parse_number(text.strip(), "--slider")
    ((name, value),) = parse_assignments([text], "--slider").items()
    return name, value


def old_strength_option(strength: str | None, slider: str | None) -> str | None:
    """``--strength S``, the old name of ``--slider S`` (from the days of one task): a warning
    on stderr and the ``--slider`` text it stands for (None when not given)."""
    if strength is None:
        return slider
    if slider is not None:
        raise InvalidParamsError("give --slider once (--strength is its old name)")
    print(f"tunableconv: warning: --strength is deprecated; use --slider {strength} (the model's main slider)",
          file=sys.stderr)
    return strength


def knob_values(
    restorer: "Restorer",
    *,
    strength: str | None = None,
    p: str | None = None,
    knobs: Sequence[str] | None = None,
    slider: str | None = None,
    raw: bool = False,
) -> "Tensor | None":
    """The p tensor selected by ``--p`` / ``--knob`` / ``--slider`` (``--strength``: its old
    name), or the model's default p; None for a model without knobs. Everything goes through
    the model's knob space (:meth:`KnobSpace.resolve`).

    Raises:
        InvalidParamsError: more than one way given, non-numbers, values outside [0, 1],
            wrong count or unknown knob or slider names, knobs given to a plain model.
    """
    slider = old_strength_option(strength, slider)
    given = [name for name, v in (("--p", p), ("--knob", knobs), ("--slider", slider))
             if v is not None and v != []]
    if len(given) > 1:
        raise InvalidParamsError(f"give the knob values one way: {' or '.join(given)}, not both")
    if restorer.num_params == 0 and given:
        raise InvalidParamsError(f"this model has no knobs: drop {given[0]}")
    if knobs:
        return restorer.params(knobs=parse_knobs(knobs), calibrated=not raw)
    if p is not None:
        values = parse_values(p, "--p")
        try:
            return restorer.params(p=values)
        except InvalidParamsError as exc:
            raise InvalidParamsError(f"--p {p}: {exc}") from None
    if slider is not None:
        name, value = parse_slider(slider)
        if name is None and not 0.0 <= value <= 1.0:
            raise InvalidParamsError(f"--slider must be in [0, 1], got {value:g}")
        return restorer.params(slider=(name, value), calibrated=not raw)
    return restorer.params(calibrated=not raw)


def describe_setting(args: argparse.Namespace, p: "Tensor | None", main_slider: str | None = None) -> str:
    """How the knobs were given, and the p used: ``'slider strength=0.7, p = (0.700, 0.300)'``."""
    raw = " (raw)" if getattr(args, "raw", False) else ""
    if getattr(args, "knob_map", None) is not None:
        base = f", others at {describe_p(p)}" if p is not None else ""
        return f"knob map {args.knob_map}{raw}{base}"
    setting = describe_p(p)
    slider = getattr(args, "slider", None) or getattr(args, "strength", None)
    if slider is not None:
        name, value = parse_slider(slider)
        return f"slider {name or main_slider or 'main'}={value:g}{raw}, {setting}"
    if p is not None and args.p is None and not args.knob:
        return f"default, {setting}"
    return setting


def describe_p(p: "Tensor | None") -> str:
    """``'p = (0.700, 0.300)'``, or ``'no knobs'``."""
    if p is None:
        return "no knobs"
    return "p = (" + ", ".join(f"{v:.3f}" for v in p.tolist()) + ")"


def split_knob_map(text: str, restorer: "Restorer") -> tuple[str | None, str]:
    """``--knob-map [NAME=]FILE`` -> (NAME or None, FILE). NAME must be a slider or knob of
    the model; a FILE whose own name holds ``=`` is taken whole when it exists."""
    space = restorer.space
    name, sep, path = text.partition("=")
    name = name.strip()
    known = [s.name for s in space.sliders] + list(space.names)
    if sep and name in known:
        if not path:
            raise InvalidParamsError(f"--knob-map {text}: give a file after '=' (--knob-map NAME=FILE)")
        return name, path
    if sep and name and not Path(text).exists():
        sliders = ", ".join(s.name for s in space.sliders) or "none"
        raise InvalidParamsError(f"--knob-map {text}: unknown slider or knob {name!r}; sliders: {sliders}; "
                                 f"knobs: {', '.join(space.names)}")
    return None, text


def knob_map_setting(restorer: "Restorer", args: argparse.Namespace, max_pixels: int | None
                     ) -> "tuple[Tensor, str | None, Tensor | None]":
    """For ``--knob-map``: the map's values ``(C, h, w)``, its target (None: the main slider or
    one channel per knob) and the base p from ``--p`` / ``--knob`` (None: the defaults).
    Everything that does not depend on the image is checked here, before any image is read.

    Raises:
        InvalidParamsError, InputError: one line (a bad file, option or combination).
    """
    from ..knob_maps import knob_map_uses_base, read_knob_map

    given = [o for o, v in (("--slider", args.slider), ("--strength", args.strength)) if v is not None]
    if given:
        raise InvalidParamsError(f"give --knob-map or {given[0]}, not both (a knob map sets the knobs per pixel)")
    if restorer.num_params == 0:
        raise InvalidParamsError("this model has no knobs: drop --knob-map")
    target, path = split_knob_map(args.knob_map, restorer)
    try:
        values = read_knob_map(path, max_pixels=max_pixels)
    except InputError as exc:
        raise InputError(f"--knob-map: {exc}") from None
    base = None
    if args.p is not None or args.knob:
        option = "--p" if args.p is not None else "--knob"
        if not knob_map_uses_base(restorer.space, values.shape[0], target):
            raise InvalidParamsError(f"{option} sets the knobs a one-knob map leaves on a cube model "
                                     f"(--knob-map NAME=FILE); this knob map sets every knob: drop {option}")
        if args.knob and target in parse_knobs(args.knob):
            raise InvalidParamsError(f"--knob {target} is set by --knob-map {args.knob_map}: drop one")
        base = knob_values(restorer, p=args.p, knobs=args.knob, raw=args.raw)
    # the target, channel count and values checked once against the model, at the map's own size
    restorer.knob_map(values, tuple(values.shape[-2:]), target, base, calibrated=not args.raw)
    return values, target, base


def check_tiling(tile: int | None, overlap: int) -> tuple[int | None, int]:
    """Validated (tile or None, overlap): ``--tile 0`` is no tiling, as in every command
    (:func:`tunableconv.tiling.check_tile`)."""
    from ..tiling import check_tile

    return check_tile(tile, overlap), overlap


def check_max_pixels(value: int | None) -> int | None:
    """``--max-pixels``: None/default kept, 0 means no limit, negative is an error."""
    if value is None:
        from ..io import DEFAULT_MAX_PIXELS

        return DEFAULT_MAX_PIXELS
    if value < 0:
        raise InputError(f"--max-pixels must be >= 0 (0: no limit), got {value}")
    return value or None


def check_output_file(path: Path) -> None:
    """OUT's extension must be one :func:`tunableconv.io.write_image` writes."""
    from ..io import WRITE_FORMATS

    if path.suffix.lower() not in WRITE_FORMATS:
        raise InputError(f"cannot write {path}: unknown image extension {path.suffix!r} (use one of {', '.join(WRITE_FORMATS)})")


def same_path(a: Path, b: Path) -> bool:
    """Whether two paths name the same file or folder (also if neither exists yet)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


# ----------------------------------------------------------------------------------------
# the command
# ----------------------------------------------------------------------------------------
def add_knob_options(ap: argparse.ArgumentParser) -> None:
    """``--p``, ``--knob``, ``--slider`` (``--strength``: its old name, hidden) and ``--raw``."""
    ap.add_argument("--p", metavar="V1,V2,...", help="raw knob values in [0, 1], one per knob")
    ap.add_argument("--knob", action="append", default=[], metavar="NAME=VALUE",
                    help="a knob value by name (repeatable; on the simplex give every knob, on the cube the others "
                         "stay at their defaults)")
    ap.add_argument("--slider", metavar="[NAME=]VALUE",
                    help="a named slider of the model at VALUE in [0, 1]; without NAME, the main slider")
    ap.add_argument("--strength", metavar="S", help=argparse.SUPPRESS)  # the old name of --slider S
    ap.add_argument("--raw", action="store_true", help="use slider and knob values (and knob maps) uncalibrated")


def add_knob_map_option(ap: argparse.ArgumentParser) -> None:
    """``--knob-map [NAME=]FILE``."""
    ap.add_argument("--knob-map", metavar="[NAME=]FILE",
                    help="a knob map: an image setting the knobs per pixel. Grey: the main slider ("
                         "black 0, white 1) or, with NAME=, that slider or knob (other knobs from --knob/--p or their "
                         "defaults); one channel per knob (RGB with blue 0 for two knobs): raw values. Any resolution "
                         "with the image's aspect ratio; calibrated unless --raw; not with --slider")


def register(sub: argparse._SubParsersAction) -> None:
    ap = sub.add_parser("restore", help="restore an image or a folder of images", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("input", metavar="IN", help="an image file or a folder of images")
    ap.add_argument("output", metavar="OUT", help="output image file (its extension sets the format) or folder")
    add_model_option(ap)
    add_knob_options(ap)
    add_knob_map_option(ap)
    ap.add_argument("--tile", type=int, metavar="SIZE",
                    help="process in tiles of SIZE >= 16 pixels (large images; 0: no tiling, the default)")
    ap.add_argument("--overlap", type=int, default=32, help="tile overlap and context in pixels (default 32)")
    ap.add_argument("--force-tiling", action="store_true",
                    help="tile even a model whose tiled inference is not exact (global operations)")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
    ap.add_argument("--max-pixels", type=int, metavar="N",
                    help="refuse images with more pixels (default 64,000,000; 0: no limit, trusted files only)")
    ap.add_argument("--skip-bad", action="store_true",
                    help="folder input: skip unusable images with a warning (exit status 1) instead of stopping")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    ap.set_defaults(func=run)


def plan_jobs(src: Path, dst: Path) -> tuple[list[tuple[Path, Path]], bool]:
    """(input, output) pairs and whether IN is a folder; checks paths only (nothing written)."""
    from ..io import check_output_path, list_images, path_problem

    problem = path_problem(src)
    if problem == "not found":
        raise InputError(f"input not found: {src}")
    if src.is_dir():
        if dst.exists() and not dst.is_dir():
            raise InputError(f"{dst} is a file: a folder IN needs a folder OUT")
        if same_path(src, dst):
            raise InputError(f"OUT must be another folder than IN ({src}): the inputs would be overwritten")
        jobs = [(f, dst / f.name) for f in list_images(src)]
        for _, out in jobs:
            check_output_path(out)
        return jobs, True
    if problem:  # a symbolic link loop, a broken link, a FIFO (reading it would block), a device
        raise InputError(f"{src} {problem}")
    target = dst / src.name if dst.is_dir() else dst
    check_output_file(target)
    if same_path(src, target):
        raise InputError(f"OUT is the input file {src}: choose another output path")
    check_output_path(target)
    return [(src, target)], False


def check_inputs(files: Sequence[Path], max_pixels: int | None,
                 map_size: tuple[int, int] | None = None) -> list[tuple[Path, str]]:
    """Decode every file once; returns (file, one-line reason) for those that cannot be used
    (with ``map_size``, the ``(h, w)`` of ``--knob-map``: also an aspect ratio it does not fit)."""
    from ..io import read_image
    from ..knob_maps import check_knob_map_size

    bad = []
    for f in files:
        try:
            image = read_image(f, max_pixels=max_pixels)
            if map_size is not None:
                check_knob_map_size(map_size, image.shape[-2:])
        except (InputError, InvalidParamsError) as exc:
            bad.append((f, f"{f}: {exc}" if isinstance(exc, InvalidParamsError) else str(exc)))
    return bad


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..io import read_image, write_image
    from ..restore import Restorer

    tile, overlap = check_tiling(args.tile, args.overlap)
    max_pixels = check_max_pixels(args.max_pixels)
    jobs, folder = plan_jobs(Path(args.input), Path(args.output))
    restorer = Restorer.load(args.model, args.device)
    map_values = None
    if args.knob_map is not None:
        map_values, target, p = knob_map_setting(restorer, args, max_pixels)
    else:
        p = knob_values(restorer, strength=args.strength, p=args.p, knobs=args.knob, slider=args.slider, raw=args.raw)
    setting = describe_setting(args, p, restorer.space.main_slider.name if restorer.space.main_slider else None)
    if tile:
        restorer.check_tiling(args.force_tiling)

    def params_for(image: "Tensor") -> "Tensor | None":
        """p for one image: the shared p, or the knob map at this image's size."""
        if map_values is None:
            return p
        return restorer.knob_map(map_values, tuple(image.shape[-2:]), target, p, calibrated=not args.raw)

    if not folder:
        (src, dst), = jobs
        image = read_image(src, max_pixels=max_pixels)
        out = restorer(image, params_for(image), tile=tile, overlap=overlap, force_tiling=args.force_tiling,
                       progress=bool(tile) and not args.no_progress and sys.stderr.isatty())
        dst.parent.mkdir(parents=True, exist_ok=True)
        write_image(out, dst)
        print(f"{src} -> {dst} ({out.shape[-1]}x{out.shape[-2]}, {setting})")
        return 0

    bad = check_inputs([s for s, _ in jobs], max_pixels, None if map_values is None else tuple(map_values.shape[-2:]))
    if bad and not args.skip_bad:
        more = f" (and {len(bad) - 1} more unusable file(s))" if len(bad) > 1 else ""
        raise InputError(f"{bad[0][1]}{more}; nothing was written (use --skip-bad to restore the others)")
    for _, reason in bad:
        print(f"tunableconv restore: warning: skipped {reason}", file=sys.stderr)
    skipped = {s for s, _ in bad}
    todo = [(s, d) for s, d in jobs if s not in skipped]
    if not todo:
        raise InputError("no usable image in the input folder; nothing was written")
    Path(args.output).mkdir(parents=True, exist_ok=True)
    failed = 0
    bar = tqdm(todo, desc="restore", unit="image", disable=True if args.no_progress else None)
    for src, dst in bar:
        try:
            image = read_image(src, max_pixels=max_pixels)
            out = restorer(image, params_for(image), tile=tile, overlap=overlap, force_tiling=args.force_tiling)
            write_image(out, dst)
        except InputError as exc:
            if not args.skip_bad:
                raise
            failed += 1
            tqdm.write(f"tunableconv restore: warning: skipped {src}: {exc}", file=sys.stderr)
    done = len(todo) - failed
    print(f"restored {done} image(s) into {args.output} ({setting})"
          + (f"; skipped {len(bad) + failed}" if bad or failed else ""))
    return 1 if bad or failed else 0
