"""The web app for every knob space: anchors (instant previews and the contact sheet) for a
slider, a cube grid, a 3-knob triangle and a x4 model; painted knob maps; the channel
protocol that cancels superseded requests. Tiny random-weight models, FastAPI's TestClient.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
pytest.importorskip("multipart")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

import httpx  # noqa: E402

from tunableconv.app.server import AppConfig, create_app  # noqa: E402
from tunableconv.io import read_image, to_uint8_array  # noqa: E402
from tunableconv.knobs import Knob, KnobSpace, Slider  # noqa: E402
from tunableconv.models import ResNet, ResNetConfig, save_model  # noqa: E402
from tunableconv.preview import anchor_set, blend  # noqa: E402
from tunableconv.restore import Restorer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

PREVIEW = 64


def _model(seed: int, **cfg) -> ResNet:
    torch.manual_seed(seed)
    model = ResNet(ResNetConfig(channels=8, num_blocks=2, **cfg))
    with torch.no_grad():  # random kernel sets far apart, so that settings differ visibly
        for name, t in model.named_parameters():
            if t.dim() >= 2:
                t.add_(0.05 * torch.randn_like(t))
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("spaces")
    strength = KnobSpace([Knob("fidelity", "remove the noise"), Knob("noise_preservation", "keep the grain")],
                         "simplex", [1.0, 0.0],
                         [Slider("strength", (0.0, 1.0), (1.0, 0.0), "1: remove the noise; 0: keep it")])
    cube = KnobSpace([Knob("denoise", "how much noise to remove"), Knob("deblur", "how much blur to remove")],
                     "cube", [1.0, 1.0])
    tri = KnobSpace([Knob("mosaic"), Knob("candy"), Knob("udnie")], "simplex")
    sr = KnobSpace([Knob("fidelity"), Knob("perceptual")], "simplex", [1.0, 0.0],
                   [Slider("perception", (1.0, 0.0), (0.0, 1.0), "0: faithful; 1: realistic texture")], scale=4)
    return {
        "strength": save_model(_model(0, num_params=2), d / "strength.safetensors", knob_space=strength,
                               info={"task": "test"}),
        "cube": save_model(_model(1, num_params=2, domain="cube"), d / "cube.safetensors", knob_space=cube,
                           info={"task": "test"}),
        "trunk": save_model(_model(2, num_params=2, domain="cube", trunk_blocks=1), d / "trunk.safetensors",
                            knob_space=cube, info={"task": "test"}),
        "tri": save_model(_model(3, num_params=3), d / "tri.safetensors", knob_space=tri, info={"task": "test"}),
        "sr": save_model(_model(4, num_params=2, upscale=4), d / "sr.safetensors", knob_space=sr,
                         info={"task": "test"}),
        "fixed": save_model(_model(5, num_params=0), d / "fixed.safetensors", info={"task": "test"}),
    }


def _config(models: dict[str, Path], **kw) -> AppConfig:
    return AppConfig(models=[str(p) for p in models.values()], include_zoo=False, preview_size=PREVIEW, **kw)


@pytest.fixture(scope="module")
def client(models):
    with TestClient(create_app(_config(models, tile=48))) as c:
        yield c


def _png(h: int, w: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _grey_png(values: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(np.round(values * 255).astype(np.uint8), mode="L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _upload(c, data: bytes) -> dict:
    r = c.post("/api/images", files={"file": ("photo.png", data, "image/png")})
    assert r.status_code == 201, r.text
    return r.json()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def _close(a: np.ndarray, b: np.ndarray, levels: int = 1) -> None:
    """Channels-last (the app) and NCHW (the library) may differ by float rounding: one level."""
    assert a.shape == b.shape, (a.shape, b.shape)
    diff = np.abs(a - b)
    assert diff.max() <= levels and (diff > 0).mean() < 5e-3, (diff.max(), (diff > 0).mean())


# ----------------------------------------------------------------------------------------
# every knob space described from the file alone
# ----------------------------------------------------------------------------------------
def test_models_describe_each_knob_space(client):
    by_name = {m["name"]: m for m in client.get("/api/models").json()["models"]}
    assert by_name["strength"]["main_slider"] == "strength" and by_name["strength"]["knob_maps"] is True
    assert by_name["cube"]["domain"] == "cube" and by_name["cube"]["main_slider"] is None
    assert [k["description"] for k in by_name["cube"]["knobs"]] == ["how much noise to remove",
                                                                    "how much blur to remove"]
    assert by_name["tri"]["num_params"] == 3 and by_name["tri"]["simplex"]
    assert by_name["sr"]["scale"] == 4 and by_name["sr"]["main_slider"] == "perception"
    assert by_name["fixed"]["knob_maps"] is False and "no knobs" in by_name["fixed"]["knob_maps_error"]
    for m in by_name.values():  # the memory estimate of a whole-image pass
        assert m["bytes_per_pixel"] > 0


# ----------------------------------------------------------------------------------------
# anchors: each tile is the exact result at its setting
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, control, layout, count", [
    ("strength", None, "line", 5),
    ("strength", "knobs", "line", 5),
    ("cube", None, "grid", 9),
    ("trunk", None, "grid", 9),
    ("tri", None, "triangle", 6),
    ("sr", None, "line", 5),
])
def test_anchor_tiles_equal_restore_at_their_settings(client, name, control, layout, count):
    info = _upload(client, _png(40, 56, seed=1))
    body = {"image_id": info["id"], "model": name}
    if control:
        body["control"] = control
    r = client.post("/api/anchors", json=body)
    assert r.status_code == 200, r.text
    a = r.json()
    assert a["layout"] == layout and len(a["tiles"]) == count == len(a["p"]) == len(a["points"])
    scale = 4 if name == "sr" else 1
    side = PREVIEW // scale
    h, w = min(40, side), min(56, side)
    assert a["region"] == {"top": (40 - h) // 2, "left": (56 - w) // 2, "height": h, "width": w}
    assert (a["height"], a["width"]) == (h * scale, w * scale)
    tiles = [_decode(client.get(t).content) for t in a["tiles"]]
    assert len({t.tobytes() for t in tiles}) == count  # the settings differ
    for tile, p in zip(tiles, a["p"]):
        exact = client.post("/api/restore", json={"image_id": info["id"], "model": name, "p": p})
        assert exact.status_code == 200, exact.text
        _close(tile, _decode(exact.content))
    # a second request is served from the cache
    again = client.post("/api/anchors", json=body).json()
    assert again["id"] == a["id"]


def test_anchor_tiles_follow_the_calibration(models):
    """Raw (calibrated=false) and calibrated anchors lie at other p when the slider is calibrated."""
    space = Restorer.load(str(models["strength"])).space
    from tunableconv.knobs import Calibration

    cal = space.with_slider_calibration("strength", Calibration((0.0, 0.5, 1.0), (0.0, 0.8, 1.0)))
    assert anchor_set(cal, calibrated=True).ps[2].tolist() == pytest.approx([0.8, 0.2])
    assert anchor_set(cal, calibrated=False).ps[2].tolist() == pytest.approx([0.5, 0.5])


def test_anchors_refused_with_a_reason(client):
    info = _upload(client, _png(16, 16))
    for body, word in [({"model": "fixed"}, "no knobs"), ({"model": "strength", "control": "nope"}, "no slider"),
                       ({"model": "cube", "steps": 9}, "at most")]:
        r = client.post("/api/anchors", json={"image_id": info["id"], **body})
        assert r.status_code == 422 and word in r.json()["detail"], r.text
    assert client.get("/api/anchors/unknownid123/0.png").status_code == 404


def test_blend_between_anchors_is_close_to_the_exact_result(client):
    """The instant preview (the page's blend of the anchors, here its Python twin) lands near
    the exact result between anchors and on it at an anchor."""
    info = _upload(client, _png(48, 48, seed=3))
    a = client.post("/api/anchors", json={"image_id": info["id"], "model": "cube"}).json()
    outputs = torch.stack([torch.from_numpy(_decode(client.get(t).content)).permute(2, 0, 1).float()
                           for t in a["tiles"]])
    space = Restorer.load(str(client.app.state.registry.entries["cube"].restorer.info.path)).space
    aset = anchor_set(space)
    at_anchor = blend(aset, outputs, torch.tensor(a["points"][4]))
    assert torch.equal(at_anchor, outputs[4])
    u = torch.tensor([0.3, 0.8])
    preview = blend(aset, outputs, u).round().permute(1, 2, 0).numpy()
    exact = _decode(client.post("/api/restore", json={"image_id": info["id"], "model": "cube",
                                                      "p": u.tolist()}).content)
    far = _decode(client.post("/api/restore", json={"image_id": info["id"], "model": "cube",
                                                    "p": [1.0, 0.0]}).content)
    assert np.abs(preview - exact).mean() < 0.5 * np.abs(far - exact).mean()


# ----------------------------------------------------------------------------------------
# knob maps
# ----------------------------------------------------------------------------------------
def test_constant_knob_map_equals_the_shared_setting(client):
    info = _upload(client, _png(32, 48, seed=4))
    # 0.2 = 51/255: exact in an 8-bit map
    shared = client.post("/api/restore", json={"image_id": info["id"], "model": "strength", "strength": 0.2})
    mapped = client.post("/api/restore", json={"image_id": info["id"], "model": "strength", "strength": 1.0,
                                               "knob_map": _grey_png(np.full((8, 12), 0.2))})
    assert mapped.status_code == 200, mapped.text
    assert mapped.headers["x-tunableconv-knob-map"] == "1"
    _close(_decode(mapped.content), _decode(shared.content), levels=2)


def test_half_and_half_knob_map(client):
    """Left half strength 0, right half 1: each side equals its shared result away from the seam."""
    info = _upload(client, _png(32, 64, seed=5))
    grey = np.zeros((32, 64))
    grey[:, 32:] = 1.0
    halves = client.post("/api/restore", json={"image_id": info["id"], "model": "strength",
                                               "knob_map": "data:image/png;base64," + _grey_png(grey)})
    assert halves.status_code == 200, halves.text
    out = _decode(halves.content)
    zero = _decode(client.post("/api/restore", json={"image_id": info["id"], "model": "strength",
                                                     "strength": 0.0}).content)
    one = _decode(client.post("/api/restore", json={"image_id": info["id"], "model": "strength",
                                                    "strength": 1.0}).content)
    reach = 2 * (2 * 2 + 3)  # receptive radius of 2 blocks of two 3x3 convs plus head, tail, body tail
    _close(out[:, : 32 - reach], zero[:, : 32 - reach], levels=2)
    _close(out[:, 32 + reach:], one[:, 32 + reach:], levels=2)
    assert np.abs(out[:, 32 + reach:] - zero[:, 32 + reach:]).mean() > 2


def test_knob_map_on_a_cube_knob_and_for_a_download(client):
    info = _upload(client, _png(32, 32, seed=6))
    grey = np.full((16, 16), 0.2)  # 51/255: exact in an 8-bit map
    mapped = client.post("/api/download", json={"image_id": info["id"], "model": "cube", "p": [0.6, 1.0],
                                                "knob_map": _grey_png(grey), "knob_map_target": "deblur"})
    assert mapped.status_code == 200, mapped.text
    shared = client.post("/api/download", json={"image_id": info["id"], "model": "cube", "p": [0.6, 0.2]})
    _close(_decode(mapped.content), _decode(shared.content), levels=2)


def test_bad_knob_maps_are_422(client):
    info = _upload(client, _png(32, 32))
    base = {"image_id": info["id"], "model": "strength"}
    cases = [
        ({"knob_map": "not base64!"}, "base64"),
        ({"knob_map": base64.b64encode(b"not a png").decode()}, "knob_map"),
        ({"knob_map": _grey_png(np.zeros((8, 32)))}, "aspect"),
        ({"knob_map_target": "strength"}, "without a knob_map"),
        ({"knob_map": _grey_png(np.zeros((8, 8))), "knob_map_target": "nope"}, "nope"),
    ]
    for extra, word in cases:
        r = client.post("/api/restore", json={**base, **extra})
        assert r.status_code == 422, (extra, r.text)
        assert word in r.json()["detail"], r.json()["detail"]
    r = client.post("/api/restore", json={"image_id": info["id"], "model": "fixed",
                                          "knob_map": _grey_png(np.zeros((8, 8)))})
    assert r.status_code == 422 and "knob maps" in r.json()["detail"]


# ----------------------------------------------------------------------------------------
# the channel protocol: superseded requests are cancelled
# ----------------------------------------------------------------------------------------
def test_an_older_request_on_a_channel_answers_204(client):
    info = _upload(client, _png(16, 16))
    body = {"image_id": info["id"], "model": "strength", "channel": "page-1.strength"}
    assert client.post("/api/restore", json={**body, "seq": 5, "strength": 0.2}).status_code == 200
    late = client.post("/api/restore", json={**body, "seq": 4, "strength": 0.9})
    assert late.status_code == 204 and late.content == b"" and late.headers["x-tunableconv-superseded"] == "1"
    assert client.post("/api/restore", json={**body, "seq": 6, "strength": 0.9}).status_code == 200
    r = client.post("/api/restore", json={**body, "strength": 0.9})  # a channel needs its seq
    assert r.status_code == 422 and "seq" in r.json()["detail"]


def test_a_newer_request_cancels_the_running_one(models):
    """A fast drag: the running pass stops at its next layer when a newer request arrives, and
    the newest result equals the library's at its knobs."""
    app = create_app(_config(models, max_jobs=2))
    entry = app.state.registry.entries["strength"]
    layers_run = []

    def slow(module, args):
        layers_run.append(1)
        time.sleep(0.05)

    handles = [m.register_forward_pre_hook(slow) for m in entry.restorer.model.modules()]
    data = _png(24, 24, seed=7)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            image_id = (await c.post("/api/images", files={"file": ("a.png", data, "image/png")})).json()["id"]
            body = {"image_id": image_id, "model": "strength", "channel": "drag"}
            first = asyncio.create_task(c.post("/api/restore", json={**body, "seq": 1, "strength": 0.1}))
            while not layers_run:
                await asyncio.sleep(0.01)
            start = time.perf_counter()
            second = await c.post("/api/restore", json={**body, "seq": 2, "strength": 0.7})
            return await first, second, time.perf_counter() - start

    try:
        first, second, _ = asyncio.run(scenario())
    finally:
        for h in handles:
            h.remove()
    assert first.status_code == 204 and first.headers["x-tunableconv-superseded"] == "1"
    assert second.status_code == 200
    total_layers = sum(1 for _ in entry.restorer.model.modules())
    assert len(layers_run) < 2 * total_layers  # the first pass did not run to its end
    r = Restorer.load(str(models["strength"]))
    want = to_uint8_array(r(read_image(data), r.params(slider=0.7))).astype(int)
    _close(_decode(second.content), want)
