"""End to end: the web app in a real headless Chromium, driven by Playwright.

Starts the server (uvicorn in a thread, a free 127.0.0.1 port) with a tiny random-weight
model, loads the page, uploads an image, degrades it as the model's task does (the default
case the server offers), moves the strength slider with the
keyboard and checks that the shown result's *pixels* change; then the raw-p toggle, the
divider and a sweep strip. Saves a screenshot to pytest's tmp_path and, when
``$TUNABLECONV_ARTIFACTS`` is set, copies it there as ``app.png``.

Needs the Python package ``playwright`` (no browser download: ``playwright install`` is not
used) and a Chromium binary: ``$TUNABLECONV_CHROMIUM``, else ``/usr/bin/chromium``, else
``chromium`` / ``chromium-browser`` on PATH (Debian: ``apt-get install chromium``). Skipped
with the reason when either is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest
import torch

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")

from tunableconv.io import icon_data_uri, write_image  # noqa: E402
from tunableconv.knobs import Calibration, KnobSpace  # noqa: E402
from tunableconv.models import ResNet, ResNetConfig, load_model, save_model  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


def _chromium() -> str | None:
    for candidate in (os.environ.get("TUNABLECONV_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def _playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed (pip install playwright; "
                    "no browser download needed)")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium binary found (/usr/bin/chromium, $TUNABLECONV_CHROMIUM or chromium on PATH); "
                    "Debian: apt-get install chromium")
    return sync_playwright, exe


@contextlib.contextmanager
def running_server(app):
    """uvicorn serving ``app`` on a free loopback port, in a thread; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


# the pixels of an <img>, hashed in the page (blob: URLs are same-origin: no canvas tainting)
PIXEL_HASH = """(img) => {
  const c = document.createElement('canvas');
  c.width = img.naturalWidth; c.height = img.naturalHeight;
  const ctx = c.getContext('2d');
  ctx.drawImage(img, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let h = 2166136261;
  for (let i = 0; i < d.length; i++) { h ^= d[i]; h = Math.imul(h, 16777619) >>> 0; }
  return `${c.width}x${c.height}:${h}`;
}"""


def _photo(path: Path) -> Path:
    """A natural photo if scikit-image ships one, else a synthetic dead-leaves image."""
    from tunableconv.data import bundled_photo_paths, bundled_sample_image, dead_leaves

    if any(p.name == "coffee.png" for p in bundled_photo_paths()):
        image = bundled_sample_image("coffee")
    else:
        image = dead_leaves(384, torch.Generator().manual_seed(0))
    return write_image(image, path)


def test_browser_upload_slider_changes_image(tmp_path):
    sync_playwright, exe = _playwright()
    from tunableconv.app.server import AppConfig, create_app

    torch.manual_seed(0)
    model = ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=2))
    with torch.no_grad():  # a gentle random model: outputs stay close to natural images
        for prm in model.parameters():
            prm.mul_(0.5)
    model_path = save_model(model, tmp_path / "tiny-denoiser.safetensors", knobs=[
        {"name": "fidelity", "description": "weight of the L1 distance to the clean image: noise removal"},
        {"name": "noise_preservation",
         "description": "weight of the distance to clean + beta*(noisy - clean): detail and grain kept"},
    ], info={"task": "denoise", "strength": "p = (s, 1 - s)", "beta": 0.9})
    three = ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=3))
    three_path = save_model(three, tmp_path / "three-knobs.safetensors", info={"task": "demo", "sampler": "simplex"},
                            knobs=[{"name": n, "description": f"the {n} objective"}
                                   for n in ("sharpness", "smoothness", "colour")])
    # a weight warp on one knob (as tunableconv calibrate writes): the page sends weights, the server warps
    warp = Calibration.from_dict({"slider": [0, 0.5, 1], "raw": [0, 0.25, 1]}, "test", "calibration")
    space = KnobSpace.from_model_info(load_model(three_path)[1]).with_knob_calibration("sharpness", warp)
    icon = icon_data_uri(torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1)), size=16)
    space = dataclasses.replace(space, knobs=[dataclasses.replace(k, icon=icon) for k in space.knobs])  # the corners' pictures
    three_path = save_model(three, three_path, info={"task": "demo", "sampler": "simplex"}, knob_space=space)
    photo = _photo(tmp_path / "photo.png")
    app = create_app(AppConfig(models=[str(model_path), str(three_path)], include_zoo=False, max_jobs=2))

    with running_server(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1360, "height": 900})
            requests, problems = [], []
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))

            page.goto(base + "/")
            page.wait_for_function("() => document.querySelectorAll('#model-select option').length > 0")
            assert page.locator("#model-select").input_value() == "tiny-denoiser"
            assert page.locator("#knob-strength").count() == 1
            assert "noise_preservation" in page.locator("#knobs").inner_text()

            # upload, then degrade it for the demonstration: the model's default case, from the server
            page.set_input_files("#file-input", str(photo))
            after = page.locator("#after")
            page.wait_for_function("() => Number(document.querySelector('#after').dataset.version || 0) >= 1",
                                   timeout=60_000)
            cases = page.eval_on_selector_all("#degrade-case option", "els => els.map((e) => e.value)")
            assert cases == ["sigma=15", "sigma=25", "sigma=50"]
            assert page.locator("#degrade-case").input_value() == "sigma=25"  # the default case
            page.click("#degrade-apply")
            page.wait_for_function("() => document.querySelector('#image-info').textContent.includes('+ sigma=25')",
                                   timeout=60_000)
            page.wait_for_function("() => Number(document.querySelector('#after').dataset.version) >= 2 && "
                                   "!document.querySelector('#after').classList.contains('stale')", timeout=60_000)
            version = int(after.get_attribute("data-version"))
            first_hash = after.evaluate(PIXEL_HASH)
            assert after.get_attribute("data-p") == "1.000000,0.000000"

            # move the strength slider like a user: focus it and press keys
            slider = page.locator("#knob-strength")
            slider.focus()
            page.keyboard.press("Home")          # s = 0
            for _ in range(30):
                page.keyboard.press("ArrowRight")  # s = 0.30, one debounced request per pause
            assert slider.input_value() == "0.3"
            page.wait_for_function(
                "() => document.querySelector('#after').dataset.p === '0.300000,0.700000' && "
                "!document.querySelector('#after').classList.contains('stale')", timeout=60_000)
            assert int(after.get_attribute("data-version")) > version
            second_hash = after.evaluate(PIXEL_HASH)
            assert second_hash != first_hash, "the shown result did not change when the slider moved"
            assert page.locator("#p-readout").inner_text() == "(0.300, 0.700)"

            # raw p: one slider per knob, moving together on the simplex
            page.check("#raw-toggle")
            assert page.locator("#knob-0").input_value() == "0.3"
            page.eval_on_selector("#knob-0", "el => { el.value = '0.6'; el.dispatchEvent(new Event('input')); }")
            assert page.locator("#knob-1").input_value() == "0.4"
            page.wait_for_function("() => document.querySelector('#after').dataset.p === '0.600000,0.400000'",
                                   timeout=60_000)
            page.uncheck("#raw-toggle")
            assert page.locator("#knob-strength").input_value() == "0.6"

            # the divider follows the pointer
            box = page.locator("#compare").bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
            page.mouse.down()
            page.mouse.move(box["x"] + box["width"] * 0.42, box["y"] + box["height"] * 0.5, steps=4)
            page.mouse.up()
            assert page.locator("#divider").get_attribute("aria-valuenow") == "42"

            # a sweep strip
            page.fill("#sweep-steps", "4")
            page.click("#sweep")
            page.wait_for_selector("#sweep-box:not([hidden])", timeout=60_000)
            page.wait_for_function("() => document.querySelector('#sweep-img').naturalWidth > 0")
            assert "error" not in (page.locator("#status").get_attribute("class") or "")

            shot = tmp_path / "app.png"
            page.screenshot(path=str(shot), full_page=True)

            # a three-knob model on the simplex: moving one knob rescales the others
            page.select_option("#model-select", "three-knobs")
            assert page.locator("#knob-strength").count() == 0 and page.locator("#knob-2").count() == 1
            assert page.locator("#triangle-box .corner-icon").count() == 3  # the icons, from knob_space
            # its file names no task the server knows: nothing to degrade with, the original is shown
            assert page.locator("#degrade-case").is_disabled() and page.locator("#degrade-apply").is_disabled()
            page.wait_for_function("() => !document.querySelector('#image-info').textContent.includes('+ sigma')",
                                   timeout=60_000)
            page.eval_on_selector("#knob-0", "el => { el.value = '0.5'; el.dispatchEvent(new Event('input')); }")
            assert [page.locator(f"#knob-{i}").input_value() for i in range(3)] == ["0.5", "0.25", "0.25"]
            page.eval_on_selector("#knob-1", "el => { el.value = '0.7'; el.dispatchEvent(new Event('input')); }")
            assert [page.locator(f"#knob-{i}").input_value() for i in range(3)] == ["0.2", "0.7", "0.1"]
            # sharpness's warp: c(0.2) = 0.1, so p = (0.1, 0.7, 0.1) / 0.9; the readout says both
            page.wait_for_function("() => document.querySelector('#after').dataset.p === '0.111111,0.777778,0.111111'",
                                   timeout=60_000)
            assert page.locator("#p-readout").inner_text() == "weights (0.200, 0.700, 0.100) → p (0.111, 0.778, 0.111)"
        finally:
            browser.close()

    outside = [u for u in requests if not (u.startswith(base) or u.startswith("blob:") or u.startswith("data:"))]
    assert not outside, f"the page requested resources from outside the server: {outside}"
    assert not problems, f"errors in the page: {problems}"
    assert shot.stat().st_size > 10_000
    artifacts = os.environ.get("TUNABLECONV_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(artifacts) / "app.png")
