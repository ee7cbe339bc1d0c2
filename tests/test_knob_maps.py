"""Knob maps for users: :mod:`tunableconv.knob_maps`, ``Restorer`` with a map and
``tunableconv restore --knob-map``, on tiny random-weight ResNets (images <= 64 px)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tunableconv.cli import main
from tunableconv.errors import InputError, InvalidParamsError
from tunableconv.io import write_image
from tunableconv.knobs import Calibration
from tunableconv.knob_maps import check_knob_map_size, interp, knob_map_params, read_knob_map
from tunableconv.models import ResNet, ResNetConfig, save_model
from tunableconv.restore import Restorer

pytestmark = pytest.mark.usefixtures("one_thread")

KNOBS = [{"name": "fidelity", "description": ""}, {"name": "noise_preservation", "description": ""}]
CAL = {"slider": [0.0, 0.3, 1.0], "raw": [0.0, 0.7, 1.0]}


def _save(path: Path, *, domain: str = "simplex", num_params: int = 2, seed: int = 0, **info) -> Path:
    torch.manual_seed(seed)
    model = ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=num_params, domain=domain))
    with torch.no_grad():  # outputs mostly inside [0, 1] (little clamping)
        for prm in model.parameters():
            prm.mul_(0.5)
    if domain == "cube":
        knobs = [{"name": "denoise", "description": ""}, {"name": "deblur", "description": ""}]
        return save_model(model, path, knobs=knobs, info={"task": "test", "sampler": "cube", **info})
    if num_params == 2:
        return save_model(model, path, knobs=KNOBS, info={"task": "test", "strength": "p = (s, 1 - s)", **info})
    knobs = [{"name": f"k{i}", "description": ""} for i in range(num_params)]
    return save_model(model, path, knobs=knobs, info={"task": "test", "sampler": "simplex", **info})


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("knob_maps")
    image = d / "in.png"
    write_image(torch.rand(3, 32, 48, generator=torch.Generator().manual_seed(0)), image)
    return {
        "simplex": _save(d / "simplex.safetensors", calibration=CAL),
        "cube": _save(d / "cube.safetensors", domain="cube", seed=1),
        "three": _save(d / "three.safetensors", num_params=3, seed=2),
        "four": _save(d / "four.safetensors", num_params=4, seed=3),
        "image": image,
    }


def _restorer(files, name: str) -> Restorer:
    return Restorer.load(str(files[name]))


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array, mode).save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------------------
# reading
# ----------------------------------------------------------------------------------------
def test_read_grey_rgb_and_16_bit():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    t = read_knob_map(_png(grey))
    assert t.shape == (1, 3, 4) and t.dtype == torch.float32
    torch.testing.assert_close(t[0], torch.from_numpy(grey).float() / 255)
    # a grey picture saved as RGB counts as grey; real colour keeps its 3 channels
    assert read_knob_map(_png(np.repeat(grey[..., None], 3, axis=2))).shape == (1, 3, 4)
    colour = np.stack([grey, 255 - grey, np.zeros_like(grey)], axis=2)
    assert read_knob_map(_png(colour)).shape == (3, 3, 4)
    # 16-bit grey keeps its precision
    deep = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000 + 1)
    t16 = read_knob_map(_png(deep.astype(np.uint16)))
    assert t16.shape == (1, 3, 4)
    torch.testing.assert_close(t16[0], torch.from_numpy(deep.astype(np.float32)) / 65535, atol=1e-7, rtol=0)


def test_read_refusals(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    with pytest.raises(InputError, match="transparent pixels") as e:
        read_knob_map(_png(rgba, "RGBA"))
    assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="transparent pixels"):
        read_knob_map(_png(np.zeros((4, 4, 2), dtype=np.uint8), "LA"))
    # a fully opaque alpha channel (a browser canvas's PNG) is ignored
    opaque = np.zeros((4, 4, 4), dtype=np.uint8)
    opaque[..., :3], opaque[..., 3] = 51, 255
    torch.testing.assert_close(read_knob_map(_png(opaque, "RGBA")), torch.full((1, 4, 4), 0.2), atol=1e-6, rtol=0)
    with pytest.raises(InputError, match="not an image"):
        read_knob_map(b"hello, not a picture")
    with pytest.raises(InputError, match="truncated or corrupt"):
        noisy = np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
        data = _png(noisy)
        read_knob_map(data[: len(data) // 2])
    with pytest.raises(InputError, match="more than the limit"):
        read_knob_map(_png(np.zeros((20, 20), dtype=np.uint8)), max_pixels=100)
    with pytest.raises(InputError, match="not found"):
        read_knob_map(tmp_path / "missing.png")


# ----------------------------------------------------------------------------------------
# values -> p
# ----------------------------------------------------------------------------------------
def test_interp_equals_numpy():
    x = torch.cat([torch.rand(500), torch.tensor([0.0, 0.3, 0.5, 1.0])])
    for xp, fp in (([0, 0.5, 0.5, 1], [0, 0.2, 0.8, 1]), ([0, 0.3, 1], [0, 0.7, 1])):
        np.testing.assert_allclose(interp(x, xp, fp).numpy(), np.interp(x.double().numpy(), xp, fp), atol=1e-6)


def test_grey_map_through_the_calibrated_slider(files):
    r = _restorer(files, "simplex")
    slider = r.space.main_slider
    assert slider is not None and slider.calibration is not None
    u = torch.rand(1, 8, 12)
    for calibrated in (True, False):
        pm = r.knob_map(u, (8, 12), calibrated=calibrated)
        assert pm.shape == (2, 8, 12) and pm.dtype == torch.float32
        want = torch.tensor([slider.p(float(v), calibrated) for v in u.reshape(-1)]).T.reshape(2, 8, 12)
        torch.testing.assert_close(pm, want, atol=1e-6, rtol=0)
    # the slider by name is the same
    torch.testing.assert_close(r.knob_map(u, (8, 12), target="strength"), r.knob_map(u, (8, 12)))


def test_one_knob_maps(files):
    u = torch.rand(1, 6, 6)
    simplex = _restorer(files, "simplex").space
    pm = knob_map_params(simplex, u, (6, 6), target="noise_preservation")
    torch.testing.assert_close(pm[1], u[0])
    torch.testing.assert_close(pm[0], 1 - u[0])
    cube = _restorer(files, "cube").space.with_knob_calibration("deblur", Calibration((0.0, 1.0), (0.0, 0.5)))
    pm = knob_map_params(cube, u, (6, 6), target="deblur", base=torch.tensor([0.25, 0.9]))
    torch.testing.assert_close(pm[0], torch.full((6, 6), 0.25))
    torch.testing.assert_close(pm[1], u[0] * 0.5)
    torch.testing.assert_close(knob_map_params(cube, u, (6, 6), target="deblur", calibrated=False)[1], u[0])
    # without base: the knob space's default for the others
    assert float(knob_map_params(cube, u, (6, 6), target="deblur")[0, 0, 0]) == cube.default[0]
    with pytest.raises(InvalidParamsError, match="no slider for a grey knob map: name the knob"):
        knob_map_params(cube, u, (6, 6))
    with pytest.raises(InvalidParamsError, match="unknown slider or knob 'blur'.*sliders: none; knobs: denoise, deblur"):
        knob_map_params(cube, u, (6, 6), target="blur")
    three = _restorer(files, "three").space
    with pytest.raises(InvalidParamsError, match="ambiguous on a simplex of 3 knobs"):
        knob_map_params(three, u, (6, 6), target="k0")


def test_one_channel_per_knob_and_channel_counts(files):
    space = _restorer(files, "simplex").space
    a = torch.rand(1, 6, 6)
    two = torch.cat([a, 1 - a])
    torch.testing.assert_close(knob_map_params(space, two, (6, 6)), two)
    # RGB with blue 0 for two knobs; 8-bit rounding is renormalised exactly
    rgb = torch.cat([two, torch.zeros(1, 6, 6)])
    rgb[0] = (rgb[0] - 1 / 255).clamp_min(0)
    pm = knob_map_params(space, rgb, (6, 6))
    torch.testing.assert_close(pm.sum(0), torch.ones(6, 6))
    rgb[2, 3, 4] = 0.5
    with pytest.raises(InvalidParamsError, match="blue channel all 0"):
        knob_map_params(space, rgb, (6, 6))
    off = two.clone()
    off[0, 2, 5] = 0.1
    off[1, 2, 5] = 0.1
    with pytest.raises(InvalidParamsError, match=r"pixel \(x=5, y=2\) sums to 0.2") as e:
        knob_map_params(space, off, (6, 6))
    assert "\n" not in str(e.value)
    with pytest.raises(InvalidParamsError, match="sets every knob"):
        knob_map_params(space, two, (6, 6), target="fidelity")
    for c in (4, 5):
        with pytest.raises(InvalidParamsError, match=f"1 channel .* or 2 channels, one per knob.*this one has {c} channels"):
            knob_map_params(space, torch.rand(c, 6, 6), (6, 6))
    cube = _restorer(files, "cube").space  # raw values, no sum
    cube_map = torch.rand(2, 6, 6)
    torch.testing.assert_close(knob_map_params(cube, cube_map, (6, 6)), cube_map)
    three = _restorer(files, "three").space
    with pytest.raises(InvalidParamsError, match="this one has 2 channels"):
        knob_map_params(three, torch.rand(2, 6, 6), (6, 6))
    w = torch.rand(3, 6, 6)
    w = w / w.sum(0, keepdim=True)
    torch.testing.assert_close(knob_map_params(three, w, (6, 6)), w)


def test_any_resolution_and_the_aspect_refusal(files):
    space = _restorer(files, "simplex").space
    small = torch.rand(1, 4, 6)
    pm = knob_map_params(space, small, (32, 48), calibrated=False)
    want = torch.nn.functional.interpolate(small[None], size=(32, 48), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(pm[0], want[0], atol=1e-6, rtol=0)
    big = torch.rand(1, 64, 96)  # shrunk with antialiasing
    want = torch.nn.functional.interpolate(big[None], size=(16, 24), mode="bilinear", align_corners=False,
                                           antialias=True)[0]
    torch.testing.assert_close(knob_map_params(space, big, (16, 24), calibrated=False)[0], want[0], atol=1e-6, rtol=0)
    # within 2 %, or the image's size halved and rounded: accepted
    knob_map_params(space, torch.rand(1, 16, 24), (33, 48))
    check_knob_map_size((16, 24), (33, 49))
    with pytest.raises(InvalidParamsError, match=r"knob map is 40x20 pixels but the image is 48x32 .*differ by more than 2%") as e:
        knob_map_params(space, torch.rand(1, 20, 40), (32, 48))
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------
# Restorer
# ----------------------------------------------------------------------------------------
def test_constant_map_equals_the_shared_p(files):
    for name, p in (("simplex", [0.3, 0.7]), ("cube", [0.2, 0.9])):
        r = _restorer(files, name)
        x = torch.rand(3, 24, 32)
        pm = torch.tensor(p).view(2, 1, 1).expand(2, 24, 32).contiguous()
        torch.testing.assert_close(r(x, pm), r(x, torch.tensor(p)), atol=1e-5, rtol=0)


def test_half_half_map_equals_both_ends_away_from_the_seam(files):
    r = _restorer(files, "simplex")
    x = torch.rand(3, 32, 48)
    u = torch.zeros(1, 32, 48)
    u[..., 24:] = 1
    pm = r.knob_map(u, (32, 48), calibrated=False)
    y = r(x, pm)
    left, right = r(x, r.params(slider=0.0, calibrated=False)), r(x, r.params(slider=1.0, calibrated=False))
    rf = r.space.receptive_field or 8
    torch.testing.assert_close(y[..., : 24 - rf - 1], left[..., : 24 - rf - 1], atol=1e-5, rtol=0)
    torch.testing.assert_close(y[..., 24 + rf + 1 :], right[..., 24 + rf + 1 :], atol=1e-5, rtol=0)
    assert (left - right).abs().max() > 1e-3  # the two ends differ, so the test means something


def test_tiled_equals_untiled_with_a_map(files):
    r = _restorer(files, "cube")
    x = torch.rand(3, 40, 56)
    pm = r.knob_map(torch.rand(2, 10, 14), (40, 56))
    full = r(x, pm)
    torch.testing.assert_close(r(x, pm, tile=16, overlap=8), full, atol=1e-5, rtol=0)


def test_restorer_refuses_bad_maps(files):
    r = _restorer(files, "simplex")
    x = torch.rand(3, 16, 20)
    with pytest.raises(InvalidParamsError, match=r"the knob map has shape \(2, 16, 16\) but .* \(2, 16, 20\)"):
        r(x, torch.rand(2, 16, 16))
    with pytest.raises(InvalidParamsError, match=r"\(2, 16, 20\)"):
        r(x, torch.rand(3, 16, 20))
    with pytest.raises(InvalidParamsError, match=r"\[0, 1\]"):
        r(x, torch.full((2, 16, 20), 1.5))


def test_models_without_knob_maps_give_their_one_line_reason(tmp_path):
    from tunableconv.models.converted import TunableNAFNet

    torch.manual_seed(0)
    model = TunableNAFNet(width=8, enc_blocks=[1], middle_blocks=1, dec_blocks=[1], num_params=2).eval()
    r = Restorer.load(str(save_model(model, tmp_path / "n.safetensors")))
    with pytest.raises(InvalidParamsError, match="knob map") as e:
        r(torch.rand(3, 16, 16), torch.full((2, 16, 16), 0.5))
    assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------------
def _cli(capsys, *args) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(rc: int, err: str, needle: str) -> None:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]


def test_cli_knob_map_end_to_end(files, tmp_path, capsys):
    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.linspace(0, 255, 24).astype(np.uint8), (16, 1))).save(mask)  # half size, grey
    out = tmp_path / "out.png"
    rc, stdout, err = _cli(capsys, "restore", files["image"], out, "--model", files["simplex"], "--knob-map", mask,
                           "--no-progress")
    assert rc == 0 and out.exists(), err
    assert "knob map" in stdout
    # the same as the library
    from tunableconv.io import read_image, to_uint8_array

    r = _restorer(files, "simplex")
    image = read_image(files["image"])
    want = to_uint8_array(r(image, r.knob_map(read_knob_map(mask), tuple(image.shape[-2:]))))
    with Image.open(out) as im:
        assert np.abs(np.asarray(im).astype(int) - want.astype(int)).max() <= 1
    # a named knob of a cube model, the other from --knob, raw, tiled
    out2 = tmp_path / "out2.png"
    rc, _, err = _cli(capsys, "restore", files["image"], out2, "--model", files["cube"], "--knob-map", f"deblur={mask}",
                      "--knob", "denoise=0.4", "--raw", "--tile", "16", "--overlap", "8", "--no-progress")
    assert rc == 0 and out2.exists(), err


@pytest.mark.parametrize("case,needle", [
    ("alpha", "transparent pixels"),
    ("stretched", "differ by more than 2%"),
    ("channels", "1 channel (grey: a slider, or one knob named with --knob-map NAME=FILE) or 4 channels"),
    ("unknown", "unknown slider or knob 'sharpness'"),
    ("slider", "give --knob-map or --slider, not both"),
    ("strength", "give --knob-map or --strength, not both"),
    ("not-image", "not an image file"),
    ("no-slider", "name the knob it sets with --knob-map NAME=FILE"),
    ("base-unused", "drop --p"),
])
def test_cli_bad_maps_exit_2_and_write_nothing(files, tmp_path, capsys, case, needle):
    bad = tmp_path / "map.png"
    model, extra, spec = files["simplex"], [], str(bad)
    if case == "alpha":
        Image.fromarray(np.zeros((16, 24, 4), dtype=np.uint8), "RGBA").save(bad)
    elif case == "stretched":
        Image.fromarray(np.zeros((16, 16), dtype=np.uint8)).save(bad)
    elif case == "channels":
        Image.fromarray(np.full((16, 24, 3), 100, dtype=np.uint8) + np.arange(3, dtype=np.uint8) * 50).save(bad)
        model = files["four"]
    else:
        Image.fromarray(np.zeros((16, 24), dtype=np.uint8)).save(bad)
    if case == "unknown":
        spec = f"sharpness={bad}"
    elif case in ("slider", "strength"):
        extra = [f"--{case}", "0.5"]
    elif case == "not-image":
        bad.write_bytes(b"not a png at all")
    elif case == "no-slider":
        model = files["cube"]
    elif case == "base-unused":
        extra = ["--p", "0.5,0.5"]
    out = tmp_path / "out.png"
    rc, _, err = _cli(capsys, "restore", files["image"], out, "--model", model, "--knob-map", spec, *extra)
    _one_line_error(rc, err, needle)
    assert not out.exists()
    assert not [f for f in tmp_path.iterdir() if f.name.startswith(".out")]  # no temporary file left


def test_cli_help_mentions_knob_maps(capsys):
    with pytest.raises(SystemExit):
        main(["restore", "--help"])
    assert "--knob-map" in capsys.readouterr().out
