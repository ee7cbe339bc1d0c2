"""The web app's HTTP API (``tunableconv serve``) through FastAPI's TestClient.

Tiny random-weight models are written to a temporary folder and passed to the app factory,
so these tests never depend on shipped weights. Every bad input must give a 4xx JSON
``{"detail": "..."}``, never a 500.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import threading
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

with warnings.catch_warnings():  # recent Starlette warns that it prefers httpx2
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

import httpx  # noqa: E402

from tunableconv.app.server import AppConfig, create_app  # noqa: E402
from tunableconv.io import read_image, to_uint8_array  # noqa: E402
from tunableconv.models import ResNet, ResNetConfig, save_model  # noqa: E402
from tunableconv.restore import Restorer  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

KNOBS = [
    {"name": "fidelity", "description": "weight of the distance to the clean image: noise removal"},
    {"name": "noise_preservation", "description": "weight of the noise-preservation target: detail kept"},
]
INFO = {"task": "denoise", "strength": "p = (s, 1 - s)", "beta": 0.9}


def _save(path: Path, num_params: int = 2, seed: int = 0, **info) -> Path:
    torch.manual_seed(seed)
    model = ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=num_params))
    if num_params == 2:
        return save_model(model, path, knobs=KNOBS, info={**INFO, **info})
    knobs = [{"name": f"k{i}", "description": f"knob number {i}"} for i in range(num_params)]
    return save_model(model, path, knobs=knobs, info={"task": "test", "sampler": "simplex", **info})


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("models")
    return {
        "tiny": _save(d / "tiny.safetensors"),
        "three": _save(d / "three.safetensors", num_params=3, seed=1),
        "cal": _save(d / "cal.safetensors", seed=2, calibration={"slider": [0.0, 0.5, 1.0], "raw": [0.0, 0.8, 1.0]}),
    }


def _config(models: dict[str, Path], **kw) -> AppConfig:
    return AppConfig(models=[str(p) for p in models.values()], include_zoo=False, **kw)


@pytest.fixture(scope="module")
def client(models):
    app = create_app(_config(models, tile=64, preview_size=96, max_jobs=2))
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def small_client(models):
    """An app with small limits."""
    app = create_app(_config(models, max_upload_bytes=100_000, max_pixels=10_000, max_images=3))
    with TestClient(app) as c:
        yield c


def _png(h: int = 48, w: int = 64, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _upload(c, data: bytes | None = None, name: str = "photo.png", **form) -> dict:
    r = c.post("/api/images", files={"file": (name, data if data is not None else _png(), "image/png")}, data=form)
    assert r.status_code == 201, r.text
    return r.json()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _expected(path: Path, image: torch.Tensor, *, tile=None, **knobs) -> np.ndarray:
    r = Restorer.load(str(path))
    if "value" in knobs:  # the app's value without a slider name: the main slider
        knobs["slider"] = knobs.pop("value")
    return to_uint8_array(r(image, r.params(**knobs), tile=tile))


def _assert_matches_library(actual: np.ndarray, expected: np.ndarray) -> None:
    """The app runs models on channels-last tensors (faster on CPU): float rounding may move a
    rare pixel by one 8-bit level against the library's NCHW path."""
    assert actual.shape == expected.shape
    diff = np.abs(actual.astype(int) - expected.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3, (diff.max(), (diff > 0).mean())


def _assert_json_error(r, status: int | tuple[int, ...]) -> str:
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert "Traceback" not in body["detail"]
    return body["detail"]


# ----------------------------------------------------------------------------------------
# information, page, docs
# ----------------------------------------------------------------------------------------
def test_list_models(client):
    r = client.get("/api/models")
    assert r.status_code == 200
    body = r.json()
    assert body["default"] == "tiny"
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"tiny", "three", "cal"}
    tiny = by_name["tiny"]
    assert tiny["num_params"] == 2 and tiny["main_slider"] == "strength" and tiny["simplex"]
    assert [k["name"] for k in tiny["knobs"]] == ["fidelity", "noise_preservation"]
    assert tiny["knobs"][0]["description"].startswith("weight of the distance")
    assert tiny["sliders"][0]["formula"] == "p = (s, 1 - s)" and tiny["calibrated"] is False
    assert "/" not in (tiny["file"] or "")  # no server paths are disclosed
    three = by_name["three"]
    assert three["num_params"] == 3 and three["main_slider"] is None and three["simplex"]
    assert three["default_p"] == pytest.approx([1 / 3] * 3)
    assert by_name["cal"]["calibrated"] is True
    # the degradation cases come from the file's task (denoising: its evaluation sigmas)
    assert tiny["degrade_cases"] == ["sigma=15", "sigma=25", "sigma=50"] and tiny["default_case"] == "sigma=25"
    assert tiny["degrade_error"] is None
    assert three["degrade_cases"] is None and three["default_case"] is None  # task "test" is not a task
    assert "unknown task 'test'" in three["degrade_error"] and "/" not in three["degrade_error"]


def test_config_health_samples(client):
    cfg = client.get("/api/config").json()
    assert cfg["max_upload_bytes"] == 20 * 1024 * 1024 and cfg["preview_size"] == 96
    assert not any("sigma" in k for k in cfg)  # degradations are the models' tasks', not the server's
    assert client.get("/api/health").json()["status"] == "ok"
    samples = client.get("/api/samples").json()["samples"]
    assert [s["name"] for s in samples] == ["astronaut", "coffee", "chelsea", "rocket"]


def test_page_and_offline_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/app.js" in page.text
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    for name in ("index.html", "app.js", "style.css", "docs.html", "docs.js", "docs.css"):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200, name
        assert "http://" not in r.text and "https://" not in r.text and "//cdn" not in r.text, name
    docs = client.get("/docs")
    assert docs.status_code == 200 and "/static/docs.js" in docs.text
    assert "cdn" not in docs.text.lower()
    spec = client.get("/openapi.json").json()
    for path in ("/api/models", "/api/images", "/api/restore", "/api/download", "/api/sweep",
                 "/api/images/from-sample", "/api/images/{image_id}/degrade"):
        assert path in spec["paths"], path
    assert client.get("/redoc").status_code == 404


# ----------------------------------------------------------------------------------------
# upload, restore, sweep, download
# ----------------------------------------------------------------------------------------
def test_upload_and_restore_equals_library(client, models):
    data = _png(48, 64)
    info = _upload(client, data)
    assert (info["width"], info["height"]) == (64, 48) and info["source"] == "upload"
    assert info["preview"] == {"top": 0, "left": 0, "width": 64, "height": 48, "cropped": False}

    before = client.get(f"/api/images/{info['id']}/image.png")
    assert before.status_code == 200 and before.headers["content-type"] == "image/png"
    np.testing.assert_array_equal(_decode(before.content), _decode(data))

    image = read_image(data)
    for knobs in ({"value": 0.3}, {"p": [0.8, 0.2]}):
        r = client.post("/api/restore", json={"image_id": info["id"], "model": "tiny", **knobs})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"] == "image/png"
        _assert_matches_library(_decode(r.content), _expected(models["tiny"], image, **knobs))
    assert r.headers["x-tunableconv-p"] == "0.800000,0.200000"
    assert r.headers["x-tunableconv-size"] == "64x48"

    jpeg = client.post("/api/restore", json={"image_id": info["id"], "model": "tiny", "value": 0.5, "format": "jpeg"})
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    assert _decode(jpeg.content).shape == (48, 64, 3)


def test_nchw_mode_is_bit_identical_to_the_library(models):
    app = create_app(_config(models, channels_last=False, tile=64, preview_size=512))
    data = _png(150, 200, seed=4)
    with TestClient(app) as c:
        image_id = _upload(c, data)["id"]
        for region, tile in (("preview", None), ("full", 64)):
            r = c.post("/api/restore", json={"image_id": image_id, "model": "tiny", "value": 0.6, "region": region})
            np.testing.assert_array_equal(_decode(r.content),
                                          _expected(models["tiny"], read_image(data), tile=tile, slider=0.6))


def test_knobs_change_the_result(client):
    info = _upload(client)
    outs = [client.post("/api/restore", json={"image_id": info["id"], "model": "tiny", "value": s}).content
            for s in (0.0, 1.0)]
    assert not np.array_equal(_decode(outs[0]), _decode(outs[1]))


def test_strength_is_the_old_name_of_value(client):
    """``strength`` (deprecated) runs the main slider, as ``value`` without ``slider`` does."""
    info = _upload(client, _png(24, 16))
    new = client.post("/api/restore", json={"image_id": info["id"], "model": "tiny", "value": 0.3})
    old = client.post("/api/restore", json={"image_id": info["id"], "model": "tiny", "strength": 0.3})
    named = client.post("/api/restore", json={"image_id": info["id"], "model": "tiny", "slider": "strength", "value": 0.3})
    assert new.status_code == old.status_code == named.status_code == 200
    assert new.headers["x-tunableconv-p"] == old.headers["x-tunableconv-p"] == named.headers["x-tunableconv-p"] \
        == "0.300000,0.700000"
    assert new.content == old.content == named.content
    fields = client.get("/openapi.json").json()["components"]["schemas"]["RestoreRequest"]["properties"]
    assert fields["strength"].get("deprecated") is True


def test_calibrated_and_raw_strength(client):
    info = _upload(client)
    body = {"image_id": info["id"], "model": "cal", "value": 0.5}
    calibrated = client.post("/api/restore", json=body)
    raw = client.post("/api/restore", json={**body, "calibrated": False})
    assert calibrated.headers["x-tunableconv-p"] == "0.800000,0.200000"
    assert raw.headers["x-tunableconv-p"] == "0.500000,0.500000"
    by_p = client.post("/api/restore", json={"image_id": info["id"], "model": "cal", "p": [0.8, 0.2]})
    assert by_p.content == calibrated.content
    default = client.post("/api/restore", json={"image_id": info["id"], "model": "cal"})
    assert default.headers["x-tunableconv-p"] == "1.000000,0.000000"  # strength 1, as on the command line


def test_three_knob_model(client, models):
    data = _png(40, 40, seed=3)
    info = _upload(client, data)
    p = [0.2, 0.3, 0.5]
    r = client.post("/api/restore", json={"image_id": info["id"], "model": "three", "p": p})
    assert r.status_code == 200, r.text
    _assert_matches_library(_decode(r.content), _expected(models["three"], read_image(data), p=p))
    # no knob values: the knob space's default p (1/3 each on the 3-simplex)
    default = client.post("/api/restore", json={"image_id": info["id"], "model": "three"})
    assert default.status_code == 200 and default.headers["x-tunableconv-p"] == ",".join(["0.333333"] * 3)
    detail = _assert_json_error(client.post("/api/restore", json={"image_id": info["id"], "model": "three",
                                                                  "p": [0.5, 0.5]}), 422)
    assert "k0, k1, k2" in detail
    detail = _assert_json_error(
        client.post("/api/restore", json={"image_id": info["id"], "model": "three", "value": 0.5}), 422)
    assert "model 'three' has no slider: give its knobs (k0, k1, k2)" in detail


def test_preview_crop_and_tiled_download(client, models):
    data = _png(150, 200, seed=5)  # larger than preview_size 96 and tile 64
    info = _upload(client, data, name="big photo.png")
    assert info["preview"] == {"top": 27, "left": 52, "width": 96, "height": 96, "cropped": True}
    image = read_image(data)

    preview = client.post("/api/restore", json={"image_id": info["id"], "model": "tiny", "value": 0.4})
    assert preview.headers["x-tunableconv-size"] == "96x96"
    crop = image[:, 27:27 + 96, 52:52 + 96]
    _assert_matches_library(_decode(preview.content), _expected(models["tiny"], crop, slider=0.4))
    before = _decode(client.get(f"/api/images/{info['id']}/image.png?region=preview").content)
    assert before.shape == (96, 96, 3)

    r = client.post("/api/download", json={"image_id": info["id"], "model": "tiny", "value": 0.4})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["content-disposition"] == 'attachment; filename="big_photo-tiny-0.400000_0.600000.png"'
    out = _decode(r.content)
    assert out.shape == (150, 200, 3)
    _assert_matches_library(out, _expected(models["tiny"], image, tile=64, slider=0.4))
    full = client.post("/api/restore", json={"image_id": info["id"], "model": "tiny", "value": 0.4, "region": "full"})
    np.testing.assert_array_equal(_decode(full.content), out)


def test_sweep_strip(client):
    info = _upload(client, _png(40, 50))
    r = client.post("/api/sweep", json={"image_id": info["id"], "model": "tiny", "steps": 3})
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    strip = Image.open(io.BytesIO(r.content))
    assert strip.width == 4 * 50 + 3 * 4  # input + 3 panels, 4 px gaps
    assert strip.height > 40  # the label band
    r = client.post("/api/sweep", json={"image_id": info["id"], "model": "three", "steps": 2, "knob_index": 1,
                                        "with_input": False})
    assert r.status_code == 200 and Image.open(io.BytesIO(r.content)).width == 2 * 50 + 4
    _assert_json_error(client.post("/api/sweep", json={"image_id": info["id"], "model": "tiny", "steps": 50}), 422)
    _assert_json_error(client.post("/api/sweep", json={"image_id": info["id"], "model": "tiny", "steps": 1}), 422)
    _assert_json_error(client.post("/api/sweep", json={"image_id": info["id"], "model": "three"}), 422)
    _assert_json_error(client.post("/api/sweep", json={"image_id": info["id"], "model": "three", "knob_index": 7}), 422)
    _assert_json_error(client.post("/api/sweep", json={"image_id": info["id"], "model": "three", "knob_index": 0,
                                                       "base": [0.5, 2, 0]}), 422)


def test_degrade_is_seeded(client):
    original = _upload(client, _png(32, 32))
    url = f"/api/images/{original['id']}/degrade"
    a = client.post(url, json={"model": "tiny", "levels": "25", "seed": 7})
    b = client.post(url, json={"model": "tiny", "levels": "sigma=25", "seed": 7})  # a case label
    c = client.post(url, json={"model": "tiny", "levels": None, "seed": 8})  # the default case
    assert a.status_code == b.status_code == c.status_code == 201, a.text
    ia, ib, ic = a.json(), b.json(), c.json()
    assert ia["id"] != ib["id"] and ia["parent"] == original["id"] and ia["source"] == "degraded"
    assert ia["degradation"] == {"model": "tiny", "case": "sigma=25", "levels": {"sigma": 25.0}, "seed": 7}
    assert ic["degradation"]["case"] == "sigma=25" and ic["degradation"]["seed"] == 8
    assert ia["name"] == "photo.png + sigma=25" and (ia["width"], ia["height"]) == (32, 32)
    pixels = [client.get(f"/api/images/{i['id']}/image.png").content for i in (ia, ib, ic, original)]
    assert pixels[0] == pixels[1] and pixels[0] != pixels[2] and pixels[0] != pixels[3]
    r = client.post("/api/restore", json={"image_id": ia["id"], "model": "tiny", "value": 1})
    assert r.status_code == 200
    _assert_json_error(client.post(url, json={"model": "tiny", "seed": -1}), 422)
    _assert_json_error(client.post(url, json={"levels": "25"}), 422)  # the model is required
    _assert_json_error(client.post(url, json={"model": "tiny", "noise_sigma": 25}), 422)  # the old fields are gone
    _assert_json_error(client.post(url, json={"model": "nosuchmodel", "levels": "25"}), 404)
    _assert_json_error(client.post("/api/images/nosuchimage00/degrade", json={"model": "tiny"}), 404)


def test_degrade_noise_has_the_tasks_sigma(client):
    """Denoising at levels "25": the difference from the original has std 25/255 (the
    task's unclipped Gaussian noise, as ``tunableconv sweep --degrade 25``)."""
    original = _upload(client, _png(128, 128, seed=3))
    r = client.post(f"/api/images/{original['id']}/degrade", json={"model": "tiny", "levels": "25", "seed": 1})
    assert r.status_code == 201, r.text
    store = client.app.state.store
    diff = store.get(r.json()["id"]).tensor() - store.get(original["id"]).tensor()
    assert float(diff.mean()) == pytest.approx(0, abs=0.01)
    assert float(diff.std()) == pytest.approx(25 / 255, rel=0.03)


@pytest.mark.parametrize("levels,fragment", [
    ("300", "levels: a denoising case is one noise sigma in 0..255"),
    ("15,25", "levels: give one case of the task's levels, got 2"),
    ("noise=15,blur=2", "levels: a denoising case is one noise sigma"),
    ("lots", "levels"),
    ("", "levels"),
])
def test_degrade_bad_levels_are_one_line_422(client, levels, fragment):
    original = _upload(client, _png(16, 16))
    r = client.post(f"/api/images/{original['id']}/degrade", json={"model": "tiny", "levels": levels})
    detail = _assert_json_error(r, 422)
    assert fragment in detail and "\n" not in detail
    assert "sigma=15, sigma=25, sigma=50" in detail  # the cases there are


def test_degrade_goes_through_the_models_task(models, tmp_path):
    """A model file without a task cannot degrade (422, one line, no server path); a
    super-resolution model degrades to its smaller bicubic-downscaled input."""
    torch.manual_seed(0)
    net = ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=2))
    notask = save_model(net, tmp_path / "notask.safetensors", knobs=KNOBS, info={"strength": "p = (s, 1 - s)"})
    sr = save_model(net, tmp_path / "sr4.safetensors", knobs=KNOBS, info={"task": "sr"})
    app = create_app(AppConfig(models=[str(models["tiny"]), str(notask), str(sr)], include_zoo=False))
    with TestClient(app) as c:
        by_name = {m["name"]: m for m in c.get("/api/models").json()["models"]}
        assert by_name["notask"]["degrade_cases"] is None and by_name["notask"]["default_case"] is None
        assert by_name["sr4"]["degrade_cases"] == ["x4"] and by_name["sr4"]["default_case"] == "x4"
        original = _upload(c, _png(48, 64))
        url = f"/api/images/{original['id']}/degrade"
        for levels in (None, "25"):
            detail = _assert_json_error(c.post(url, json={"model": "notask", "levels": levels}), 422)
            assert "names no task" in detail and "\n" not in detail and str(tmp_path) not in detail
        r = c.post(url, json={"model": "sr4"})
        assert r.status_code == 201, r.text
        info = r.json()
        assert (info["width"], info["height"]) == (16, 12) and info["degradation"]["case"] == "x4"
        from tunableconv.tasks.sr import downscale

        stored = app.state.store.get(info["id"]).tensor()
        expected = downscale(app.state.store.get(original["id"]).tensor(), 4)
        assert torch.allclose(stored, expected, atol=2e-3)  # float16 storage
        # the model runs on it
        r = c.post("/api/restore", json={"image_id": info["id"], "model": "sr4"})
        assert r.status_code == 200
        detail = _assert_json_error(c.post(url, json={"model": "sr4", "levels": "2"}), 422)
        assert "x4" in detail
        tiny = _upload(c, _png(3, 3))
        detail = _assert_json_error(c.post(f"/api/images/{tiny['id']}/degrade", json={"model": "sr4"}), 422)
        assert "smaller than the scale factor 4" in detail


def test_sample_image(client):
    from tunableconv.data import bundled_photo_paths

    if not any(p.name == "astronaut.png" for p in bundled_photo_paths()):
        pytest.skip("scikit-image's sample photos are not installed")
    r = client.post("/api/images/from-sample", json={"name": "astronaut"})
    assert r.status_code == 201, r.text
    info = r.json()
    assert (info["name"], info["width"], info["height"], info["source"]) == ("astronaut", 512, 512, "sample")
    assert client.post("/api/images/from-sample", json={"name": "astronaut.png"}).status_code == 201


def test_delete_and_lru_store(small_client):
    ids = [_upload(small_client, _png(8, 8, seed=i))["id"] for i in range(3)]
    assert small_client.get(f"/api/images/{ids[0]}").status_code == 200  # ids[0] is now the most recent
    newer = _upload(small_client, _png(8, 8, seed=9))["id"]  # evicts ids[1], the least recently used
    _assert_json_error(small_client.get(f"/api/images/{ids[1]}"), 404)
    for i in (ids[0], ids[2], newer):
        assert small_client.get(f"/api/images/{i}").status_code == 200
    assert small_client.delete(f"/api/images/{newer}").status_code == 204
    _assert_json_error(small_client.get(f"/api/images/{newer}"), 404)
    _assert_json_error(small_client.delete(f"/api/images/{newer}"), 404)


def test_store_byte_budget(models):
    app = create_app(_config(models, max_store_bytes=3 * 32 * 32 * 3, max_images=100))  # three 32x32 8-bit images
    with TestClient(app) as c:
        ids = [_upload(c, _png(32, 32, seed=i))["id"] for i in range(5)]
        assert [c.get(f"/api/images/{i}").status_code for i in ids] == [404, 404, 200, 200, 200]
        assert c.get("/api/health").json()["image_bytes"] == 3 * 32 * 32 * 3
        big = _upload(c, _png(64, 64))["id"]  # larger than the budget on its own: kept, the others go
        assert c.get(f"/api/images/{big}").status_code == 200
        assert all(c.get(f"/api/images/{i}").status_code == 404 for i in ids)


def test_shrink_on_upload(client):
    info = _upload(client, _png(60, 120), max_side="40")
    assert (info["width"], info["height"]) == (40, 20)


# ----------------------------------------------------------------------------------------
# bad input: always a 4xx JSON error
# ----------------------------------------------------------------------------------------
def _multipart(parts: list[bytes]) -> tuple[dict, list[bytes]]:
    head = (b'--BOUNDARY\r\nContent-Disposition: form-data; name="file"; filename="big.png"\r\n'
            b"Content-Type: image/png\r\n\r\n")
    return {"content-type": "multipart/form-data; boundary=BOUNDARY"}, [head, *parts, b"\r\n--BOUNDARY--\r\n"]


@pytest.mark.parametrize("case", ["text", "truncated", "empty", "garbage_png_header", "too_large", "too_many_pixels",
                                  "no_file", "streamed_too_large", "bad_max_side"])
def test_bad_uploads(small_client, case):
    c = small_client
    png = _png(64, 64)
    if case == "text":
        r = c.post("/api/images", files={"file": ("notes.txt", b"just some text", "text/plain")})
        assert "not an image" in _assert_json_error(r, 415)
    elif case == "truncated":
        r = c.post("/api/images", files={"file": ("cut.png", png[: len(png) // 2], "image/png")})
        assert "truncated" in _assert_json_error(r, 400)
    elif case == "empty":
        _assert_json_error(c.post("/api/images", files={"file": ("e.png", b"", "image/png")}), 400)
    elif case == "garbage_png_header":
        r = c.post("/api/images", files={"file": ("g.png", b"\x89PNG\r\n\x1a\n" + b"\xff" * 500, "image/png")})
        _assert_json_error(r, (400, 415))
    elif case == "too_large":  # limit 100 kB
        r = c.post("/api/images", files={"file": ("big.png", b"\0" * 200_000, "image/png")})
        assert "too large" in _assert_json_error(r, 413)
    elif case == "streamed_too_large":  # no Content-Length: counted while the body streams in
        headers, chunks = _multipart([b"\0" * 50_000] * 6)
        r = c.post("/api/images", content=iter(chunks), headers=headers)
        assert "too large" in _assert_json_error(r, 413)
    elif case == "too_many_pixels":  # limit 10,000 pixels; the file itself is small
        buf = io.BytesIO()
        Image.new("RGB", (200, 200), (9, 9, 9)).save(buf, format="PNG")
        r = c.post("/api/images", files={"file": ("wide.png", buf.getvalue(), "image/png")})
        assert "pixels" in _assert_json_error(r, 413)
    elif case == "no_file":
        _assert_json_error(c.post("/api/images", data={"max_side": "5"}), 422)
    elif case == "bad_max_side":
        r = c.post("/api/images", files={"file": ("a.png", _png(8, 8), "image/png")}, data={"max_side": "huge"})
        _assert_json_error(r, 422)


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "astronaut.png/../../../etc/passwd",
                                  "..\\..\\windows\\win.ini", "%2e%2e%2fetc%2fpasswd", "", "nosuchphoto",
                                  "file:///etc/passwd", "astronaut\x00.png"])
def test_bad_sample_names(client, name):
    detail = _assert_json_error(client.post("/api/images/from-sample", json={"name": name}), 404)
    assert "unknown sample" in detail


@pytest.mark.parametrize("body,status,needle", [
    ({"image_id": "doesnotexist0000", "value": 0.5}, 404, "unknown image id"),
    ({"image_id": "../../etc/passwd", "value": 0.5}, 404, "unknown image id"),
    ({"model": "nosuchmodel", "value": 0.5}, 404, "unknown model"),
    ({"model": "/etc/passwd", "value": 0.5}, 404, "unknown model"),
    ({"model": "tiny.safetensors"}, 404, "unknown model"),
    ({"p": [0.5]}, 422, "model 'tiny' has 2 knobs"),
    ({"p": [0.2, 0.3, 0.5]}, 422, "model 'tiny' has 2 knobs"),
    ({"p": []}, 422, "model 'tiny' has 2 knobs"),
    ({"p": [0.5, 1.5]}, 422, "[0, 1]"),
    ({"p": [-0.1, 0.5]}, 422, "[0, 1]"),
    ({"p": [0.5, "x"]}, 422, "valid number"),
    ({"p": 0.5}, 422, "valid list"),
    ({"value": 1.01}, 422, "[0, 1]"),
    ({"value": -3}, 422, "[0, 1]"),
    ({"value": 0.5, "p": [0.5, 0.5]}, 422, "not both"),
    ({"value": 0.5, "region": "everything"}, 422, "region"),
    ({"value": 0.5, "format": "gif"}, 422, "format"),
    ({"value": 0.5, "unexpected": 1}, 422, "unexpected"),
])
def test_bad_restore_requests(client, body, status, needle):
    info = _upload(client, _png(16, 16))
    detail = _assert_json_error(client.post("/api/restore", json={"image_id": info["id"], "model": "tiny", **body}), status)
    assert needle in detail


@pytest.mark.parametrize("raw", [
    b'{"image_id": "%s", "model": "tiny", "p": [NaN, 0.5]}',
    b'{"image_id": "%s", "model": "tiny", "p": [0.5, Infinity]}',
    b'{"image_id": "%s", "model": "tiny", "value": NaN}',
    b'{"image_id": "%s", "model": "tiny", "value": -Infinity}',
    b'{"image_id": "%s", "model": "tiny", "value": 0.5',
    b'not json at all %s',
    b'[1, 2, "%s"]',
])
def test_nan_and_malformed_knobs(client, raw):
    info = _upload(client, _png(16, 16))
    r = client.post("/api/restore", content=raw.replace(b"%s", info["id"].encode()),
                    headers={"content-type": "application/json"})
    _assert_json_error(r, 422)


def test_errors_are_never_500(client):
    """A sweep of nonsense over every endpoint."""
    info = _upload(client, _png(16, 16))
    junk = [None, 0, -1, 1e308, "", "x" * 300, [], {}, [None], "../..", {"a": [1]}]
    requests = []
    for value in junk:
        for field in ("image_id", "model", "p", "value", "strength", "calibrated", "region", "format"):
            requests.append(("/api/restore", {"image_id": info["id"], "model": "tiny", field: value}))
            requests.append(("/api/download", {"image_id": info["id"], "model": "tiny", field: value}))
        for field in ("steps", "knob_index", "base", "with_input"):
            requests.append(("/api/sweep", {"image_id": info["id"], "model": "tiny", field: value}))
        for field in ("model", "levels", "seed"):
            requests.append((f"/api/images/{info['id']}/degrade", {"model": "tiny", field: value}))
        requests.append(("/api/images/from-sample", {"name": value}))
    for path, body in requests:
        r = client.post(path, json=body)
        assert r.status_code < 500, (path, body, r.status_code, r.text)
        if r.status_code >= 400:
            _assert_json_error(r, r.status_code)
    for path in ("/api/images/%2e%2e", "/api/images/x/image.png", "/api/images/" + "a" * 500, "/api/nothing",
                 "/static/../server.py", "/static/%2e%2e/server.py"):
        r = client.get(path)
        assert r.status_code in (404, 422), (path, r.status_code)
        assert "import" not in r.text


def test_request_body_limit_for_json(client):
    r = client.post("/api/restore", content=b'{"p": [' + b"0.5, " * 300_000 + b"0.5]}",
                    headers={"content-type": "application/json"})
    _assert_json_error(r, 413)


# ----------------------------------------------------------------------------------------
# concurrency, timeouts
# ----------------------------------------------------------------------------------------
class _Rendezvous:
    """Wraps a model so that ``parties`` calls must be inside it at the same time."""

    def __init__(self, model, parties: int) -> None:
        self.model = model
        self.barrier = threading.Barrier(parties, timeout=20)

    def __call__(self, *args, **kwargs):
        self.barrier.wait()
        return self.model(*args, **kwargs)


def test_concurrent_requests_keep_their_own_knobs(models):
    app = create_app(_config(models, max_jobs=2))
    data = _png(64, 64, seed=11)
    image = read_image(data)
    cases = [{"value": 0.1}, {"p": [0.9, 0.1]}]
    expected = [_expected(models["tiny"], image, **k) for k in cases]
    assert not np.array_equal(expected[0], expected[1])

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            r = await c.post("/api/images", files={"file": ("a.png", data, "image/png")})
            image_id = r.json()["id"]
            singles = []
            for k in cases:  # one at a time
                singles.append((await c.post("/api/restore", json={"image_id": image_id, "model": "tiny", **k})).content)
            entry = app.state.registry.entries["tiny"]
            original = entry.restorer
            entry.restorer = dataclasses.replace(original, model=_Rendezvous(original.model, 2))
            try:  # both jobs must be running inside the model at once
                together = await asyncio.gather(*[
                    c.post("/api/restore", json={"image_id": image_id, "model": "tiny", **k}) for k in cases])
            finally:
                entry.restorer = original
            return singles, together

    singles, together = asyncio.run(scenario())
    for single, response, want in zip(singles, together, expected):
        assert response.status_code == 200, response.text
        assert response.content == single
        _assert_matches_library(_decode(response.content), want)
    assert together[0].headers["x-tunableconv-p"] == "0.100000,0.900000"
    assert together[1].headers["x-tunableconv-p"] == "0.900000,0.100000"


class _Slow:
    def __init__(self, model, seconds: float) -> None:
        self.model, self.seconds = model, seconds

    def __call__(self, *args, **kwargs):
        time.sleep(self.seconds)
        return self.model(*args, **kwargs)


def test_timeout_and_busy_are_503(models):
    app = create_app(_config(models, max_jobs=1, max_queued=0, request_timeout=0.3))
    entry = app.state.registry.entries["tiny"]
    entry.restorer = dataclasses.replace(entry.restorer, model=_Slow(entry.restorer.model, 0.8))
    data = _png(16, 16)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            image_id = (await c.post("/api/images", files={"file": ("a.png", data, "image/png")})).json()["id"]
            body = {"image_id": image_id, "model": "tiny", "value": 0.5}
            slow, busy = await asyncio.gather(c.post("/api/restore", json=body), c.post("/api/restore", json=body))
            await asyncio.sleep(1.0)  # the slow job finishes and frees its slot
            entry.restorer = dataclasses.replace(entry.restorer, model=entry.restorer.model.model)
            after = await c.post("/api/restore", json=body)
            return slow, busy, after

    slow, busy, after = asyncio.run(scenario())
    details = sorted([_assert_json_error(slow, 503), _assert_json_error(busy, 503)])
    assert any("busy" in d for d in details) and any("timeout" in d for d in details)
    assert after.status_code == 200


# ----------------------------------------------------------------------------------------
# configuration and the command line
# ----------------------------------------------------------------------------------------
def test_config_validation(models):
    from tunableconv.errors import InputError

    for bad in ({"max_upload_bytes": 0}, {"max_jobs": 0}, {"request_timeout": float("nan")}, {"max_images": -1},
                {"tile_overlap": 600}, {"preview_size": 4}):
        with pytest.raises(InputError):
            AppConfig(**bad)
    with pytest.raises(InputError, match="unknown model"):
        create_app(AppConfig(models=["/nonexistent/model.safetensors"], include_zoo=False))
    with pytest.raises(InputError, match="default model"):
        create_app(_config(models, default_model="nope"))
    app = create_app(AppConfig(models=[str(models["tiny"]), str(models["tiny"])], include_zoo=False))
    assert list(app.state.registry.entries) == ["tiny", "tiny-2"]


def test_cli_serve_options(models, capsys):
    from tunableconv.cli import build_parser, main
    from tunableconv.commands.serve import config_from_args

    args = build_parser().parse_args(["serve", "--model", str(models["tiny"]), str(models["cal"]), "--model",
                                      str(models["three"]), "--no-zoo", "--max-upload-mb", "5", "--jobs", "3",
                                      "--timeout", "9", "--max-images", "4", "--max-pixels", "1000",
                                      "--max-store-mb", "2"])
    cfg = config_from_args(args)
    assert cfg.models == [str(models["tiny"]), str(models["cal"]), str(models["three"])]
    assert (cfg.include_zoo, cfg.max_upload_bytes, cfg.max_jobs, cfg.request_timeout, cfg.max_images, cfg.max_pixels) == \
        (False, 5 * 1024 * 1024, 3, 9.0, 4, 1000)
    assert cfg.max_store_bytes == 2 * 1024 * 1024
    assert args.host == "127.0.0.1" and args.port == 8000
    assert main(["serve", "--no-zoo"]) == 2
    assert "--no-zoo needs" in capsys.readouterr().err
    assert main(["serve", "--model", "/nonexistent.safetensors", "--no-zoo", "--port", "0"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_the_stored_image_upscaled_bicubically_for_a_super_resolution_model(client, small_client):
    """The "before" side of an SR model: MATLAB's bicubic upscale of the preview region
    (``upscale=s``), which for a x s model is the central (preview_size / s)² of the input, so
    that the output is shown at its real size."""
    import torch

    from tunableconv.data.degradations import imresize
    from tunableconv.io import to_uint8_array

    info = _upload(client)
    full = _decode(client.get(f"/api/images/{info['id']}/image.png?region=full").content)
    side = 96 // 4  # the client's preview_size / scale
    top, left = (full.shape[0] - side) // 2, (full.shape[1] - side) // 2
    plain = full[top:top + side, left:left + side]
    r = client.get(f"/api/images/{info['id']}/image.png?region=preview&upscale=4")
    assert r.status_code == 200
    up = _decode(r.content)
    assert up.shape[:2] == (side * 4, side * 4)
    expected = to_uint8_array(imresize(torch.from_numpy(plain.copy()).permute(2, 0, 1).float() / 255, scale=4.0).clamp(0, 1))
    assert np.abs(up.astype(int) - expected.astype(int)).max() <= 1
    assert client.get(f"/api/images/{info['id']}/image.png?upscale=9").status_code == 422
    small = _upload(small_client, _png(80, 80))  # 6400 pixels; x2 would be 25600 > 10000
    r = small_client.get(f"/api/images/{small['id']}/image.png?region=full&upscale=2")
    assert r.status_code == 413 and "pixels" in r.json()["detail"]
