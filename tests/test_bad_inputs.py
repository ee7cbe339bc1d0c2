"""Every bad input refused cleanly, no output ever lost (issue 16): one table to scan.

Each row of :data:`ROWS` is ``(group, class of bad input, command, expected message fragment)``.
The command runs through the real command-line entry, :func:`tunableconv.cli.main`, in this
process (under a 20 s alarm, so that a FIFO that blocks the reader fails the row instead of
hanging it; the disk-full row under a 4 KiB file-size limit, ``ulimit -f 4``). Every row must give

- exit status 2 and exactly one line on stderr, containing the fragment; no traceback;
- no output file, and every file already there (an old output, the inputs, the model files)
  byte-for-byte and mode-for-mode as it was.

Placeholders in the commands: ``{model}`` a tiny two-knob simplex model (slider
``strength``), ``{plain}`` one without knobs, ``{img}`` a 30x40 image, ``{out}`` the output
folder (it holds old outputs ``old.png``, ``old.jpg``, ``old.gif`` and ``old.safetensors``),
``{F}`` the folder of bad inputs built by :func:`bad`. docs/robustness.md lists the same
refusals for users.

Below the table: the inputs that are used, but not quite as given (a warning line), the
file mode and ``--tile 0`` conventions, and the web app's refusals.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shlex
import signal
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tunableconv.cli import main
from tunableconv.io import write_image
from tunableconv.models import ResNet, ResNetConfig, save_model
from tunableconv.train import get_recipe

KNOBS = [{"name": "fidelity", "description": "noise removal"},
         {"name": "noise_preservation", "description": "grain and detail kept"}]

# (group, class, command, expected fragment of the one stderr line)
ROWS = [
    # -- images: what is read -------------------------------------------------------------
    ("image", "zero-byte file", "restore {F}/zero.png {out}/old.png --model {model}", "the file is empty (0 bytes)"),
    ("image", "truncated PNG", "restore {F}/trunc.png {out}/old.png --model {model}", "truncated or corrupt"),
    ("image", "text named .png", "restore {F}/text.png {out}/old.png --model {model}", "not an image file"),
    ("image", "too many pixels", "restore {img} {out}/old.png --model {model} --max-pixels 100",
     "40x30 = 1,200 pixels, more than the limit of 100 (raise the limit with --max-pixels"),
    ("image", "FIFO input", "restore {F}/fifo.png {out}/old.png --model {model}", "is a FIFO (named pipe), not a regular file"),
    ("image", "symlink loop", "restore {F}/loop1.png {out}/old.png --model {model}", "is a symbolic link loop"),
    ("image", "broken symlink", "restore {F}/broken.png {out}/old.png --model {model}", "is a broken symbolic link"),
    ("image", "missing input", "restore {F}/nothing.png {out}/old.png --model {model}", "input not found"),
    ("image", "folder holding a symlink loop", "restore {F}/loopdir {out}/dir --model {model}",
     "loopdir/b.png is a symbolic link loop; nothing was written"),
    ("image", "folder holding a truncated image", "restore {F}/baddir {out}/dir --model {model}",
     "truncated or corrupt image file"),
    ("image", "sweep of a FIFO", "sweep {F}/fifo.png -o {out}/old.png --model {model}", "is a FIFO"),
    # -- outputs ----------------------------------------------------------------------------
    ("output", "unknown extension", "restore {img} {out}/o.xyz --model {model}", "unknown image extension '.xyz'"),
    ("output", "output is the input", "restore {img} {img} --model {model}", "OUT is the input file"),
    ("output", "output is a symlink", "restore {img} {out}/link.png --model {model}", "it is a symbolic link"),
    ("output", "sweep strip is a symlink", "sweep {img} -o {out}/link.png --model {model}", "it is a symbolic link"),
    ("output", "disk full (file-size limit)", "restore {F}/big.png {out}/old.jpg --model {model}",
     "old.jpg: File too large"),
    # -- model files ------------------------------------------------------------------------
    ("model", "zero-byte file", "restore {img} {out}/old.png --model {F}/zero.safetensors", "the file is empty (0 bytes)"),
    ("model", "truncated file", "restore {img} {out}/old.png --model {F}/trunc.safetensors",
     "is not a readable .safetensors file"),
    ("model", "an image as the model", "restore {img} {out}/old.png --model {img}", "is not a readable .safetensors file"),
    ("model", "FIFO model", "restore {img} {out}/old.png --model {F}/fifo.safetensors", "is a FIFO"),
    ("model", "symlink loop model", "restore {img} {out}/old.png --model {F}/loop.safetensors",
     "is a symbolic link loop"),
    ("model", "unknown format", "restore {img} {out}/old.png --model {F}/format.safetensors", "not a tunableconv model file"),
    ("model", "channels of the wrong type", "restore {img} {out}/old.png --model {F}/channels_many.safetensors",
     "arguments.channels must be an integer, got \"many\""),
    ("model", "channels out of range", "restore {img} {out}/old.png --model {F}/channels_neg.safetensors",
     "arguments.channels must be an integer in [0, 65536], got -4"),
    ("model", "upscale out of range", "restore {img} {out}/old.png --model {F}/upscale5.safetensors",
     "upscale must be 1, 2, 3, 4 or 8, got 5"),
    ("model", "arguments not an object", "restore {img} {out}/old.png --model {F}/arguments_list.safetensors",
     "arguments must be a JSON object, got list"),
    ("model", "info not an object", "restore {img} {out}/old.png --model {F}/info_list.safetensors",
     "info must be a JSON object, got list"),
    ("model", "unknown mapping", "restore {img} {out}/old.png --model {F}/mapping.safetensors", "arguments"),
    ("model", "metadata not JSON", "restore {img} {out}/old.png --model {F}/badjson.safetensors",
     "knob_space is not valid JSON"),
    ("model", "knob list of the wrong length", "restore {img} {out}/old.png --model {F}/knobs1.safetensors "
     "--knob fidelity=1", "knob"),
    ("model", "calibration of the wrong shape", "restore {img} {out}/old.png --model {F}/cal_shape.safetensors",
     "calibration"),
    ("model", "decreasing calibration", "restore {img} {out}/old.png --model {F}/cal_down.safetensors",
     "calibration"),
    ("model", "int32 tensors", "restore {img} {out}/old.png --model {F}/int32.safetensors",
     "model weights must be floating point"),
    ("model", "NaN weights", "restore {img} {out}/old.png --model {F}/nan.safetensors",
     "weights hold NaN/Inf values: the model file is broken (the input is not the cause)"),
    ("model", "device this machine lacks", "restore {img} {out}/old.png --model {model} --device mps",
     "--device mps was asked for but this machine has no usable MPS"),
    ("model", "unknown device", "restore {img} {out}/old.png --model {model} --device tpu", "unknown device 'tpu'"),
    # -- knob values ------------------------------------------------------------------------
    ("knobs", "p off the simplex", "restore {img} {out}/old.png --model {model} --p 0,0",
     "--p 0,0: p = (0, 0) sums to 0, off the simplex"),
    ("knobs", "p summing to 1.5", "restore {img} {out}/old.png --model {model} --p 1,0.5", "sums to 1.5"),
    ("knobs", "knobs off the simplex", "restore {img} {out}/old.png --model {model} --knob fidelity=0.2 "
     "--knob noise_preservation=0.2", "off the simplex"),
    ("knobs", "wrong knob count", "restore {img} {out}/old.png --model {model} --p 0.5", "this model has 2 knobs"),
    ("knobs", "value outside [0, 1]", "restore {img} {out}/old.png --model {model} --p 1.5,0", "[0, 1]"),
    ("knobs", "NaN value", "restore {img} {out}/old.png --model {model} --p nan,0.5", "NaN"),
    ("knobs", "not numbers", "restore {img} {out}/old.png --model {model} --p a,b",
     "error: --p must be comma-separated numbers, got 'a,b'"),
    ("knobs", "unknown knob", "restore {img} {out}/old.png --model {model} --knob fidelty=1 "
     "--knob noise_preservation=0", "unknown knob 'fidelty'"),
    ("knobs", "slider out of range", "restore {img} {out}/old.png --model {model} --slider 2", "--slider must be in [0, 1]"),
    ("knobs", "knobs for a plain model", "restore {img} {out}/old.png --model {plain} --slider 0.5",
     "this model has no knobs: drop --slider"),
    ("knobs", "unknown slider", "restore {img} {out}/old.png --model {model} --slider nope=0.5", "nope"),
    ("knobs", "sweep --base of the wrong length", "sweep {img} -o {out}/old.png --model {model} --knob fidelity "
     "--base 0.5", "--base: this model has 2 knobs"),
    # -- counts and sizes a user types ------------------------------------------------------
    ("bounds", "sweep --steps 100000", "sweep {img} -o {out}/old.png --model {model} --steps 100000",
     "--steps must be a whole number in [2, 33], got 100000"),
    ("bounds", "sweep --steps 1", "sweep {img} -o {out}/old.png --model {model} --steps 1", "--steps must be"),
    ("bounds", "calibrate --grid 100000", "calibrate {model} -o {out}/c.safetensors --grid 100000 --max-points 4",
     "--grid must be in [3, 101], got 100000"),
    ("bounds", "calibrate --max-points below --grid", "calibrate {model} -o {out}/c.safetensors --grid 11 "
     "--max-points 4", "--max-points (4) must be at least --grid (11)"),
    ("bounds", "calibrate --images 0", "calibrate {model} -o {out}/c.safetensors --images 0", "--images must be in"),
    ("bounds", "calibrate --repeats 1000", "calibrate {model} -o {out}/c.safetensors --repeats 1000", "--repeats must be in"),
    ("bounds", "calibrate --points 100000", "calibrate {model} -o {out}/c.safetensors --points 100000", "--points must be in"),
    ("bounds", "--tile negative", "restore {img} {out}/old.png --model {model} --tile -3",
     "--tile must be 0 (no tiling) or a tile side of at least 16 pixels, got -3"),
    ("bounds", "--tile too small", "restore {img} {out}/old.png --model {model} --tile 8 --overlap 4",
     "--tile must be 0 (no tiling)"),
    ("bounds", "--overlap not below --tile", "restore {img} {out}/old.png --model {model} --tile 32 --overlap 32",
     "--overlap must satisfy 0 <= overlap < tile (32)"),
    ("bounds", "eval --tile below the overlap", "eval --model {model} --data {F}/imgs --tile 20 --out {out}/ev --no-plot",
     "--tile must be larger than the tiles' overlap of 32 pixels, got 20"),
    ("bounds", "--max-pixels negative", "restore {img} {out}/old.png --model {model} --max-pixels -1", "--max-pixels must be >= 0"),
    ("bounds", "sweep --degrade 300", "sweep {img} -o {out}/old.png --model {model} --degrade 300", "--degrade: a denoising case is one noise sigma in 0..255"),
    ("bounds", "sweep --degrade two cases", "sweep {img} -o {out}/old.png --model {model} --degrade 15,25", "--degrade takes one case"),
    ("bounds", "sweep --degrade named levels on denoising", "sweep {img} -o {out}/old.png --model {model} --degrade noise=3", "--degrade: a denoising case is one noise sigma"),
    ("bounds", "sweep --duration 1", "sweep {img} --gif {out}/old.gif --model {model} --duration 1", "--duration must be"),
    # -- calibrate --------------------------------------------------------------------------
    ("calibrate", "-o is the input model", "calibrate {model} -o {model}", "is the input model file"),
    ("calibrate", "-o not a model file name", "calibrate {model} -o {out}/old.png", "a model file must end in .safetensors"),
    ("calibrate", "--sigma (no such option)", "calibrate {model} -o {out}/c.safetensors --sigma -1",
     "tunableconv calibrate: error: unrecognized arguments: --sigma -1"),
    ("calibrate", "nothing to calibrate", "calibrate {plain} -o {out}/c.safetensors --data {F}/imgs",
     "nothing to calibrate"),
    # -- command-line mistakes --------------------------------------------------------------
    ("options", "not a number", "sweep {img} -o {out}/old.png --steps many", "argument --steps: invalid int value: 'many'"),
    ("options", "unknown option", "restore {img} {out}/old.png --strenght 1", "unrecognized arguments: --strenght 1"),
    ("options", "two ways of giving knobs", "restore {img} {out}/old.png --model {model} --slider 0.5 --p 1,0",
     "give the knob values one way"),
    # -- recipes (training) -----------------------------------------------------------------
    ("recipe", "a section that is not a mapping", "train --recipe {F}/train_abc.yaml --out {out}/run",
     "recipe section 'train' must be a mapping, got 'abc'"),
    ("recipe", "channels of the wrong type", "train --recipe {F}/channels_many.yaml --out {out}/run",
     "model.args.channels must be an integer, got \"many\""),
    ("recipe", "lr NaN", "train --recipe denoise-small --set train.lr=nan --out {out}/run", "train.lr"),
    ("recipe", "steps not whole", "train --recipe denoise-small --set train.steps=1.5 --out {out}/run", "train.steps"),
    ("recipe", "zero steps", "train --recipe denoise-small --set train.steps=0 --out {out}/run", "train.steps"),
    ("recipe", "batch size 0", "train --recipe denoise-small --set train.batch_size=0 --out {out}/run", "train.batch_size"),
    ("recipe", "device tpu", "train --recipe denoise-small --set train.device=tpu --out {out}/run", "train.device"),
    ("recipe", "--out naming a file", "train --recipe denoise-small --out {out}/old.png", "old.png"),
]

OLD_OUTPUTS = ("old.png", "old.jpg", "old.gif", "old.safetensors")


def _tiny(path: Path, num_params: int = 2, **info) -> Path:
    torch.manual_seed(1)
    model = ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=num_params))
    if num_params == 0:
        return save_model(model, path, info={"task": "denoise", **info})
    return save_model(model, path, knobs=KNOBS, info={"task": "denoise", "strength": "p = (s, 1 - s)", **info})


def _mutated(src: Path, dst: Path, tensors=None, **fields) -> Path:
    """A copy of model file ``src`` with metadata fields replaced (JSON-encoded unless a str)."""
    with safe_open(str(src), "pt") as f:
        meta = dict(f.metadata())
    for key, value in fields.items():
        meta[key] = value if isinstance(value, str) else json.dumps(value)
    save_file(tensors if tensors is not None else load_file(str(src)), str(dst), metadata=meta)
    return dst


@pytest.fixture(scope="module")
def bad(tmp_path_factory) -> dict[str, Path]:
    """The folder of bad inputs (``{F}``), the good model and image; built once."""
    F = tmp_path_factory.mktemp("bad")
    model, plain = _tiny(F / "tiny.safetensors"), _tiny(F / "plain.safetensors", 0)
    g = torch.Generator().manual_seed(0)
    img = write_image(torch.rand(3, 30, 40, generator=g), F / "in.png")
    write_image(torch.rand(3, 96, 96, generator=g), F / "big.png")  # > 4 kB as a JPEG
    data = img.read_bytes()
    (F / "zero.png").write_bytes(b"")
    (F / "trunc.png").write_bytes(data[: len(data) // 2])
    (F / "text.png").write_text("just some text\n")
    os.mkfifo(F / "fifo.png")
    os.symlink("loop2.png", F / "loop1.png")
    os.symlink("loop1.png", F / "loop2.png")
    os.symlink("gone.png", F / "broken.png")
    for name, broken in (("loopdir", "loop"), ("baddir", "trunc")):
        folder = F / name
        folder.mkdir()
        write_image(torch.rand(3, 20, 20, generator=g), folder / "a.png")
        if broken == "loop":
            os.symlink("b.png", folder / "b.png")
        else:
            (folder / "b.png").write_bytes(data[: len(data) // 2])
    (F / "imgs").mkdir()
    write_image(torch.rand(3, 48, 48, generator=g), F / "imgs" / "0.png")

    (F / "zero.safetensors").write_bytes(b"")
    mdata = model.read_bytes()
    (F / "trunc.safetensors").write_bytes(mdata[: len(mdata) // 2])
    os.mkfifo(F / "fifo.safetensors")
    os.symlink("loop.safetensors", F / "loop.safetensors")
    with safe_open(str(model), "pt") as f:
        meta = f.metadata()
    args, space = json.loads(meta["arguments"]), json.loads(meta["knob_space"])
    _mutated(model, F / "format.safetensors", format="something-else/9")
    _mutated(model, F / "channels_many.safetensors", arguments={**args, "channels": "many"})
    _mutated(model, F / "channels_neg.safetensors", arguments={**args, "channels": -4})
    _mutated(model, F / "upscale5.safetensors", arguments={**args, "upscale": 5})
    _mutated(model, F / "arguments_list.safetensors", arguments=[1, 2, 3])
    _mutated(model, F / "info_list.safetensors", info=[1, 2])
    _mutated(model, F / "mapping.safetensors", arguments={**args, "mapping": "quadratic"})
    _mutated(model, F / "badjson.safetensors", knob_space="{not json")
    _mutated(model, F / "knobs1.safetensors", knob_space={**space, "knobs": space["knobs"][:1]})
    slider = space["sliders"][0]
    _mutated(model, F / "cal_shape.safetensors",
             knob_space={**space, "sliders": [{**slider, "calibration": {"slider": "x", "raw": 3}}]})
    _mutated(model, F / "cal_down.safetensors",
             knob_space={**space, "sliders": [{**slider, "calibration": {"slider": [0, 1], "raw": [1, 0]}}]})
    tensors = load_file(str(model))
    _mutated(model, F / "int32.safetensors", tensors={k: v.to(torch.int32) for k, v in tensors.items()})
    _mutated(model, F / "nan.safetensors", tensors={k: v * float("nan") for k, v in tensors.items()})

    recipe = get_recipe("denoise-small").to_dict()
    (F / "train_abc.yaml").write_text(yaml.safe_dump({**recipe, "train": "abc"}))
    recipe["model"]["args"]["channels"] = "many"
    (F / "channels_many.yaml").write_text(yaml.safe_dump(recipe))
    return {"F": F, "model": model, "plain": plain, "img": img}


def _snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed, FIFOs not opened): kind, mode, content."""
    snap = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(folder) / name
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                snap[str(p.relative_to(root))] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                snap[str(p.relative_to(root))] = ("file", stat.S_IMODE(st.st_mode), p.read_bytes())
            else:
                snap[str(p.relative_to(root))] = ("other", stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
    return snap


def _out_folder(tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    for name in OLD_OUTPUTS:
        (out / name).write_bytes(b"an old output: must survive")
    (out / "target.png").write_bytes(b"the target of a symbolic link: must survive")
    os.symlink("target.png", out / "link.png")
    return out


class _Hang(Exception):
    pass


def _alarm(signum, frame):
    raise _Hang("the command blocked for 20 s (reading a FIFO?)")


def _run(argv: list[str], cls: str, capsys) -> tuple[int, str]:
    """``tunableconv ARGV`` in this process: (exit status, stderr)."""
    fsize = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(20)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a refusal must not come with warnings either
            if "disk full" in cls:  # ulimit -f 4 (Python ignores SIGXFSZ: a write beyond fails with EFBIG)
                resource.setrlimit(resource.RLIMIT_FSIZE, (4096, fsize[1]))
            try:
                rc = main(argv)
            except SystemExit as exc:  # argparse's mistakes
                rc = exc.code
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, fsize)
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old_handler)
    return rc, capsys.readouterr().err


@pytest.mark.parametrize("group,cls,command,fragment", ROWS, ids=[f"{g}: {c}" for g, c, _, _ in ROWS])
def test_bad_input_is_refused_in_one_line_and_nothing_is_written(bad, tmp_path, capsys, group, cls, command, fragment):
    out = _out_folder(tmp_path)
    names = {"F": bad["F"], "model": bad["model"], "plain": bad["plain"], "img": bad["img"], "out": out}
    argv = [part.format(**names) for part in shlex.split(command)]
    before_inputs, before_out = _snapshot(bad["F"]), _snapshot(out)
    rc, err = _run(argv, cls, capsys)
    lines = err.strip().splitlines()
    assert rc == 2, (rc, err)
    assert "Traceback" not in err, err
    assert len(lines) == 1, err
    assert lines[0].startswith(f"tunableconv {argv[0]}: error: ") or lines[0].startswith("tunableconv: error:"), lines[0]
    assert fragment in lines[0], lines[0]
    assert _snapshot(out) == before_out  # no new file, no temporary file, old outputs and the link kept
    assert _snapshot(bad["F"]) == before_inputs  # inputs and models untouched


def test_the_table_covers_every_group_of_the_issue():
    groups = {g for g, *_ in ROWS}
    assert groups == {"image", "output", "model", "knobs", "bounds", "calibrate", "options", "recipe"}
    assert len({(g, c) for g, c, _, _ in ROWS}) == len(ROWS)  # one row per class


# ----------------------------------------------------------------------------------------
# used, but not quite as given: one warning line; conventions that are not refusals
# ----------------------------------------------------------------------------------------
def test_animated_gif_says_it_uses_the_first_frame(bad, tmp_path, capsys):
    frames = [Image.new("RGB", (20, 20), (60 * i, 0, 0)) for i in range(3)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], loop=0)
    rc = main(["restore", str(gif), str(tmp_path / "o.png"), "--model", str(bad["model"])])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 0 and (tmp_path / "o.png").is_file()
    assert err == [f"tunableconv restore: warning: {gif}: GIF with 3 frames: using the first one only"]


def test_a_replaced_output_keeps_its_mode(bad, tmp_path, capsys):
    out = tmp_path / "o.png"
    out.write_bytes(b"old")
    out.chmod(0o640)
    assert main(["restore", str(bad["img"]), str(out), "--model", str(bad["model"])]) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640 and out.read_bytes() != b"old"


def test_tile_0_means_no_tiling_everywhere(bad, tmp_path, capsys):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    assert main(["restore", str(bad["img"]), str(a), "--model", str(bad["model"])]) == 0
    assert main(["restore", str(bad["img"]), str(b), "--model", str(bad["model"]), "--tile", "0"]) == 0
    assert a.read_bytes() == b.read_bytes()
    assert main(["sweep", str(bad["img"]), "-o", str(tmp_path / "s.png"), "--model", str(bad["model"]), "--tile", "0",
                 "--steps", "2"]) == 0
    rc = main(["eval", "--model", str(bad["model"]), "--data", str(bad["F"] / "imgs"), "--tile", "0", "--levels", "25",
               "--p-grid", "0,1", "--out", str(tmp_path / "ev"), "--no-plot", "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "ev" / "results.json").read_text())["options"]["tile"] is None


def test_calibrate_prints_no_progress_bars_off_a_terminal(bad, tmp_path, capsys):
    rc = main(["calibrate", str(bad["model"]), "-o", str(tmp_path / "c.safetensors"), "--data", str(bad["F"] / "imgs"),
               "--images", "1", "--crop", "32", "--repeats", "1", "--grid", "3", "--max-points", "5"])
    out, err = capsys.readouterr()
    assert rc == 0 and err == "", err  # capsys is not a terminal
    from tunableconv.cli import build_parser

    args = build_parser().parse_args(["calibrate", str(bad["model"]), "-o", "c.safetensors", "--no-progress"])
    assert args.no_progress


# ----------------------------------------------------------------------------------------
# the web app: the same refusals as 4xx JSON {"detail": "..."} (never 500)
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client(bad):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    pytest.importorskip("multipart")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from tunableconv.app.server import AppConfig, create_app

    app = create_app(AppConfig(models=[str(bad["model"])], include_zoo=False, tile=64, preview_size=96))
    with TestClient(app) as c:
        yield c


def _png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (9, 90, 9)).save(buf, format="PNG")
    return buf.getvalue()


APP_ROWS = [  # (class, restore request fields, status, fragment)
    ("value true", {"value": True}, 422, "value: Input should be a valid number"),
    ("p as booleans", {"p": [True, False]}, 422, "Input should be a valid number"),
    ("p off the simplex", {"p": [0, 0]}, 422, "sums to 0, off the simplex"),
    ("knobs off the simplex", {"knobs": {"fidelity": 0.5, "noise_preservation": 0.9}}, 422, "sums to 1.4"),
]


@pytest.mark.parametrize("cls,body,status,fragment", APP_ROWS, ids=[r[0] for r in APP_ROWS])
def test_app_refuses_bad_knobs(client, cls, body, status, fragment):
    image = client.post("/api/images", files={"file": ("a.png", _png(16, 16), "image/png")}).json()["id"]
    r = client.post("/api/restore", json={"image_id": image, "model": "tiny", **body})
    assert r.status_code == status and fragment in r.json()["detail"], r.text


def test_app_and_cli_say_the_same_of_a_zero_byte_file(client, bad, capsys):
    r = client.post("/api/images", files={"file": ("zero.png", b"", "image/png")})
    assert r.status_code == 400
    assert main(["restore", str(bad["F"] / "zero.png"), "o.png", "--model", str(bad["model"])]) == 2
    cli = capsys.readouterr().err.strip()
    assert r.json()["detail"] == "'zero.png': the file is empty (0 bytes), not an image"
    assert cli.endswith(f"{bad['F'] / 'zero.png'}: the file is empty (0 bytes), not an image")


def test_app_degrade_says_what_the_cli_says(client, bad, capsys, tmp_path):
    """The degrade endpoint goes through the model file's task, as ``sweep --degrade``: the
    same refusal of a level out of the task's range (one line, 422), and a tiny image works."""
    image = client.post("/api/images", files={"file": ("t.png", _png(3, 3), "image/png")}).json()["id"]
    r = client.post(f"/api/images/{image}/degrade", json={"model": "tiny", "levels": "300"})
    detail = r.json()["detail"]
    assert r.status_code == 422 and "levels: a denoising case is one noise sigma in 0..255" in detail, r.text
    assert "\n" not in detail and str(bad["model"].parent) not in detail
    assert main(["sweep", str(bad["F"] / "in.png"), "-o", str(tmp_path / "s.png"), "--model", str(bad["model"]),
                 "--degrade", "300"]) == 2
    assert "--degrade: a denoising case is one noise sigma in 0..255" in capsys.readouterr().err
    r = client.post(f"/api/images/{image}/degrade", json={"model": "tiny", "levels": "15,25"})
    assert r.status_code == 422 and "give one case" in r.json()["detail"], r.text
    r = client.post(f"/api/images/{image}/degrade", json={"model": "tiny", "levels": None, "seed": 1})
    assert r.status_code == 201 and r.json()["degradation"]["case"] == "sigma=25", r.text


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_sigma_is_a_deprecated_name_of_levels(command, capsys):
    from tunableconv.cli import build_parser

    parser = build_parser()
    required = ["--task", "denoise", "--out", "x"] if command == "compare" else []
    assert parser.parse_args([command, *required, "--levels", "15,25"]).levels == "15,25"
    assert "warning" not in capsys.readouterr().err
    assert parser.parse_args([command, *required, "--sigma", "15,25"]).levels == "15,25"  # still works ...
    err = capsys.readouterr().err
    assert "--sigma is deprecated" in err and "--levels" in err and err.count("\n") == 1  # ... with one warning line
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    assert "--sigma" not in sub.format_help()
