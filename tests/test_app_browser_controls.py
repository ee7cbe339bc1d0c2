"""End to end: each kind of knob control of the web app, driven like a user in headless Chromium.

Tiny random-weight ResNets (8 channels, gentle weights: the outputs look like the photo with
a slightly different colour and contrast at each setting) of each knob domain, one server for
the module, a fresh page per test:

a. a strength-slider denoiser: the keyboard moves the slider; the instant preview (the blend
   of the anchor outputs, ``#after-preview``) is drawn *before* the exact result arrives; a
   contact-sheet tile sets the slider; the full-resolution download is a PNG of the image's size;
b. a 2-knob cube model: one slider per knob with its description; knobs move independently;
   the contact sheet is a 3x3 grid;
c. a 3-knob simplex model: dragging the triangle's dot sets three knobs that sum to one;
d. painting the strength over the left half of the image: only that half changes; the map
   exports as a grey PNG of the image's aspect, loads back, and ``tunableconv restore
   --knob-map`` accepts it (and agrees with the page away from the preview's borders);
e. a x4 super-resolution model: the result is 4x the preview region, beside a bicubic upscale.

Screenshots (``app-slider.png``, ``app-cube.png``, ``app-triangle.png``, ``app-paint.png``,
``app-sr.png``) go to pytest's tmp_path and, when ``$TUNABLECONV_ARTIFACTS`` is set, there too.
Needs ``playwright`` and a Chromium binary, like ``test_app_browser.py`` (skipped otherwise).
"""

from __future__ import annotations

import base64
import io
import os
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

from test_app_browser import CHROMIUM_ARGS, PIXEL_HASH, _photo, _playwright, running_server  # noqa: E402

from tunableconv.knobs import Knob, KnobSpace, Slider  # noqa: E402
from tunableconv.models import ResNet, ResNetConfig, save_model  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.usefixtures("one_thread")]

PREVIEW = 256  # the live region: a 256x256 crop of the 600x400 photo (64x64 for the x4 model)
TIMEOUT = 60_000

# the pixels of an <img> or a <canvas> as a PNG data URL (blob: URLs are same-origin: no tainting)
PIXELS = """(el) => {
  const c = document.createElement('canvas');
  c.width = el.naturalWidth || el.width; c.height = el.naturalHeight || el.height;
  c.getContext('2d').drawImage(el, 0, 0);
  return c.toDataURL('image/png');
}"""

# a log of what the page shows, in order: each instant preview drawn (and whether it is on
# screen at that moment) and each exact result
RECORD = """() => {
  const after = document.querySelector('#after');
  const pre = document.querySelector('#after-preview');
  window.__shown = [];
  new MutationObserver(() => window.__shown.push({kind: 'exact', version: after.dataset.version, p: after.dataset.p}))
    .observe(after, {attributes: true, attributeFilter: ['data-version']});
  new MutationObserver(() => {
    const r = pre.getBoundingClientRect();
    window.__shown.push({kind: 'preview', ms: pre.dataset.ms,
                         visible: !pre.hidden && getComputedStyle(pre).display !== 'none' && r.width > 0 && r.height > 0});
  }).observe(pre, {attributes: true, attributeFilter: ['data-ms']});
}"""


def _gentle(seed: int, **cfg) -> ResNet:
    torch.manual_seed(seed)
    model = ResNet(ResNetConfig(channels=8, num_blocks=2, **cfg))
    with torch.no_grad():  # halved weights (near the photo) plus a little noise (settings differ)
        for t in model.parameters():
            t.mul_(0.5)
            if t.dim() >= 2:
                t.add_(0.01 * torch.randn_like(t))
    return model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("controls")
    strength = KnobSpace([Knob("fidelity", "remove the noise"), Knob("noise_preservation", "keep the grain")],
                         "simplex", [1.0, 0.0],
                         [Slider("strength", (0.0, 1.0), (1.0, 0.0), "1: remove the noise; 0: keep it")])
    cube = KnobSpace([Knob("denoise", "how much noise to remove"), Knob("deblur", "how much blur to remove")],
                     "cube", [1.0, 1.0])
    blend = KnobSpace([Knob("mosaic", "the mosaic style"), Knob("candy", "the candy style"),
                       Knob("udnie", "the udnie style")], "simplex")
    sr = KnobSpace([Knob("fidelity", "faithful to the input"), Knob("perceptual", "realistic texture")],
                   "simplex", [1.0, 0.0],
                   [Slider("perception", (1.0, 0.0), (0.0, 1.0), "0: faithful; 1: realistic texture")], scale=4)
    models = {
        "denoiser": save_model(_gentle(0, num_params=2), d / "denoiser.safetensors", knob_space=strength,
                               info={"task": "denoise"}),
        "cube": save_model(_gentle(1, num_params=2, domain="cube"), d / "cube.safetensors", knob_space=cube,
                           info={"task": "test"}),
        "blend3": save_model(_gentle(2, num_params=3), d / "blend3.safetensors", knob_space=blend,
                             info={"task": "test"}),
        "sr4": save_model(_gentle(3, num_params=2, upscale=4), d / "sr4.safetensors", knob_space=sr,
                          info={"task": "test"}),
    }
    photo = _photo(d / "photo.png")
    sync_playwright, exe = _playwright()
    from tunableconv.app.server import AppConfig, create_app

    app = create_app(AppConfig(models=[str(p) for p in models.values()], include_zoo=False, max_jobs=2,
                               preview_size=PREVIEW))
    with running_server(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield {"base": base, "browser": browser, "models": models, "photo": photo}
        finally:
            browser.close()


class Session:
    """A fresh page on the server that records errors and every URL it asks for."""

    def __init__(self, setup, tmp_path: Path):
        self.base = setup["base"]
        self.tmp_path = tmp_path
        self.context = setup["browser"].new_context(viewport={"width": 1360, "height": 900}, accept_downloads=True)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.problems.append(str(e)))

    def open(self, model: str, photo: Path, tiles: int) -> None:
        """Load the page, pick ``model``, upload ``photo``; wait for the exact result and the
        contact sheet of ``tiles`` anchors."""
        page = self.page
        page.goto(self.base + "/")
        page.wait_for_function("() => document.querySelectorAll('#model-select option').length > 0")
        page.select_option("#model-select", model)
        page.set_input_files("#file-input", str(photo))
        self.wait_exact(0)
        page.wait_for_function(
            "n => { const t = [...document.querySelectorAll('#sheet .sheet-tile')];"
            " return t.length === n && t.every((i) => i.complete && i.naturalWidth > 0)"
            " && !document.querySelector('#sheet-box').hidden; }", arg=tiles, timeout=TIMEOUT)

    def version(self) -> int:
        return int(self.page.locator("#after").get_attribute("data-version") or 0)

    def wait_exact(self, after_version: int, p: str | None = None) -> None:
        """Until an exact result newer than ``after_version`` is shown (with data-p ``p``)."""
        self.page.wait_for_function(
            "([v, p]) => { const a = document.querySelector('#after');"
            " return Number(a.dataset.version || 0) > v && !a.classList.contains('stale') && !a.hidden"
            " && (p === null || a.dataset.p === p); }", arg=[after_version, p], timeout=TIMEOUT)

    def pixels(self, selector: str) -> np.ndarray:
        url = self.page.eval_on_selector(selector, PIXELS)
        return _decode(base64.b64decode(url.partition(",")[2]))

    def values(self, n: int) -> list[str]:
        return [self.page.locator(f"#knob-{i}").input_value() for i in range(n)]

    def screenshot(self, name: str) -> None:
        shot = self.tmp_path / name
        self.page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        artifacts = os.environ.get("TUNABLECONV_ARTIFACTS")
        if artifacts:
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(artifacts) / name)

    def close(self) -> None:
        self.context.close()
        outside = [u for u in self.requests
                   if not (u.startswith(self.base) or u.startswith("blob:") or u.startswith("data:"))]
        assert not outside, f"the page requested resources from outside the server: {outside}"
        assert not self.problems, f"errors in the page: {self.problems}"


@pytest.fixture
def session(setup, tmp_path):
    s = Session(setup, tmp_path)
    yield s
    s.close()


def _decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).astype(int)


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).mean())


def _p(values) -> str:
    return ",".join(f"{float(v):.6f}" for v in values)


# ----------------------------------------------------------------------------------------
# a. the main slider: instant preview first, then the exact result; the contact sheet; download
# ----------------------------------------------------------------------------------------
def test_slider_preview_then_exact_sheet_and_download(setup, session):
    page = session.page
    session.open("denoiser", setup["photo"], tiles=5)
    assert page.locator("#after").get_attribute("data-p") == _p([1, 0])
    at_one = session.pixels("#after")
    assert at_one.shape == (PREVIEW, PREVIEW, 3)
    assert page.locator("#sheet-title").inner_text() == "Along strength"

    page.evaluate(RECORD)
    slider = page.locator("#knob-strength")
    slider.focus()
    page.keyboard.press("Home")  # s = 0
    preview_at_zero = session.pixels("#after-preview")
    for _ in range(30):
        page.keyboard.press("ArrowRight")  # s = 0.30
    assert slider.input_value() == "0.3"
    preview_at_03 = session.pixels("#after-preview")
    assert _mad(preview_at_03, preview_at_zero) > 0.5, "the instant preview did not follow the slider"
    session.wait_exact(1, _p([0.3, 0.7]))
    shown = page.evaluate("() => window.__shown")
    kinds = [e["kind"] for e in shown]
    assert kinds and kinds[0] == "preview", shown
    first = shown[0]
    assert first["visible"] and float(first["ms"]) >= 0, first
    assert "exact" in kinds and kinds.index("exact") > 0, shown  # the preview came first
    assert page.locator("#after-preview").is_hidden()  # the exact result replaced it
    exact = session.pixels("#after")
    # the blend of the anchors at 0.25 and 0.5 lies near the exact result at 0.3
    assert _mad(preview_at_03, exact) < 0.5 * _mad(at_one, exact), (_mad(preview_at_03, exact), _mad(at_one, exact))
    assert page.locator("#p-readout").inner_text() == "(0.300, 0.700)"

    # a contact-sheet tile sets the slider
    tile = page.locator("#sheet .sheet-tile[data-index='1']")
    assert tile.get_attribute("alt") == "strength=0.25"
    version, exact_hash = session.version(), page.eval_on_selector("#after", PIXEL_HASH)
    tile.click()
    assert slider.input_value() == "0.25" and page.locator("#knob-strength-out").inner_text() == "0.25"
    assert "current" in tile.get_attribute("class")
    session.wait_exact(version, _p([0.25, 0.75]))
    assert page.eval_on_selector("#after", PIXEL_HASH) != exact_hash
    session.screenshot("app-slider.png")

    # the full-resolution download: a PNG of the photo's size
    with page.expect_download(timeout=TIMEOUT) as info:
        page.click("#download")
    saved = session.tmp_path / info.value.suggested_filename
    info.value.save_as(saved)
    assert saved.suffix == ".png" and "0.250000" in saved.name
    with Image.open(saved) as out, Image.open(setup["photo"]) as src:
        assert out.format == "PNG" and out.size == src.size == (600, 400)


# ----------------------------------------------------------------------------------------
# b. a cube model: one independent slider per knob; a 3x3 contact sheet
# ----------------------------------------------------------------------------------------
def test_cube_knobs_move_independently_and_sheet_is_a_grid(setup, session):
    page = session.page
    session.open("cube", setup["photo"], tiles=9)
    assert page.locator("#knob-strength").count() == 0 and page.locator("#raw-label").is_hidden()
    for i, (name, description) in enumerate([("denoise", "how much noise to remove"),
                                             ("deblur", "how much blur to remove")]):
        block = page.locator(".knob", has=page.locator(f"#knob-{i}"))
        assert block.locator("label").inner_text() == name
        assert block.locator(".knob-desc").inner_text() == description
        assert block.locator(".knob-desc").is_visible()
    assert session.values(2) == ["1", "1"]

    page.locator("#knob-0").focus()
    page.keyboard.press("Home")
    for _ in range(20):
        page.keyboard.press("ArrowRight")
    assert session.values(2) == ["0.2", "1"], "moving one cube knob moved the other"
    assert page.locator("#knob-1-out").inner_text() == "1.00"
    session.wait_exact(1, _p([0.2, 1.0]))
    assert page.locator("#p-readout").inner_text() == "(0.200, 1.000)"

    assert page.locator("#sheet .grid").count() == 1
    boxes = [page.locator(f"#sheet .sheet-tile[data-index='{k}']").bounding_box() for k in range(9)]
    assert len({round(b["x"]) for b in boxes}) == 3 and len({round(b["y"]) for b in boxes}) == 3
    for row in range(3):  # row-major: the first knob along the rows
        assert len({round(b["y"]) for b in boxes[3 * row: 3 * row + 3]}) == 1
    assert page.locator("#sheet-title").inner_text() == "Settings of denoise, deblur"
    session.screenshot("app-cube.png")


# ----------------------------------------------------------------------------------------
# c. a 3-knob simplex: the triangle picker
# ----------------------------------------------------------------------------------------
def test_triangle_drag_sets_three_knobs_on_the_simplex(setup, session):
    page = session.page
    session.open("blend3", setup["photo"], tiles=6)
    triangle = page.locator("#triangle")
    assert triangle.is_visible()
    before = [float(v) for v in session.values(3)]
    triangle.scroll_into_view_if_needed()  # the mouse acts in the viewport

    # the point with weights (0.2, 0.5, 0.3) of the corners (viewBox units, see app.js)
    corners = np.array([[140, 22], [22, 228], [258, 228]], dtype=float)
    target = np.array([0.2, 0.5, 0.3])
    x, y = target @ corners
    box = triangle.bounding_box()
    to_screen = lambda vx, vy: (box["x"] + vx * box["width"] / 280, box["y"] + vy * box["height"] / 264)  # noqa: E731
    dot = page.locator("#triangle-dot").bounding_box()
    version = session.version()
    page.mouse.move(dot["x"] + dot["width"] / 2, dot["y"] + dot["height"] / 2)
    page.mouse.down()
    page.mouse.move(*to_screen(x, y), steps=8)
    page.mouse.up()

    after = [float(v) for v in session.values(3)]
    assert sum(after) == pytest.approx(1.0, abs=1e-9), after
    assert after != before
    assert after == pytest.approx(target.tolist(), abs=0.02), after
    cx, cy = (float(page.locator("#triangle-dot").get_attribute(a)) for a in ("cx", "cy"))
    assert (cx, cy) == pytest.approx((x, y), abs=5)
    session.wait_exact(version, _p(after))
    assert page.locator("#p-readout").inner_text() == "(" + ", ".join(f"{v:.3f}" for v in after) + ")"

    # the contact sheet is a triangle of 1 + 2 + 3 tiles whose pictures and captions do not overlap
    figures = [page.locator("#sheet figure").nth(k).bounding_box() for k in range(6)]
    assert sorted(Counter(round(b["y"]) for b in figures).values()) == [1, 2, 3]
    for i, a in enumerate(figures):
        for b in figures[i + 1:]:
            apart = (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                     or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])
            assert apart, f"contact-sheet tiles overlap: {a} {b}"
    session.screenshot("app-triangle.png")


# ----------------------------------------------------------------------------------------
# d. paint the strength per pixel; export, reload and use the map with the CLI
# ----------------------------------------------------------------------------------------
def test_paint_left_half_export_reload_and_cli(setup, session):
    from tunableconv.cli import main

    page = session.page
    session.open("denoiser", setup["photo"], tiles=5)
    reference = session.pixels("#after")  # strength 1 everywhere

    version = session.version()
    page.check("#paint-toggle")
    session.wait_exact(version, "map")  # a map of the current strength: the same picture
    assert _mad(session.pixels("#after"), reference) < 0.05
    assert page.locator("#paint-controls").is_visible()
    assert page.locator("#paint-target").input_value() == "strength"
    page.locator("#brush-value").focus()
    page.keyboard.press("Home")
    assert page.locator("#brush-value-out").inner_text() == "0.00"
    page.locator("#brush-size").focus()
    page.keyboard.press("End")
    assert page.locator("#brush-size-out").inner_text() == "200"
    page.check("#show-map")

    # a stroke down the left edge: the brush (radius 100 map pixels) reaches x = 110 of 256;
    # the network's receptive field (2 blocks) adds about 14 pixels: the right half stays
    page.locator("#paint").scroll_into_view_if_needed()  # the mouse acts in the viewport
    box = page.locator("#paint").bounding_box()
    at = lambda mx, my: (box["x"] + mx * box["width"] / PREVIEW, box["y"] + my * box["height"] / PREVIEW)  # noqa: E731
    version = session.version()
    page.mouse.move(*at(10, 4))
    page.mouse.down()
    page.mouse.move(*at(10, PREVIEW - 4), steps=16)
    page.mouse.up()
    session.wait_exact(version, "map")
    painted = session.pixels("#after")
    half = PREVIEW // 2
    left, right = _mad(painted[:, :half], reference[:, :half]), _mad(painted[:, half:], reference[:, half:])
    assert left > 1.0, f"the painted half did not change ({left:.3f} levels)"
    assert right < 0.1 and np.abs(painted[:, half:] - reference[:, half:]).max() <= 2, right
    assert page.locator("#p-readout").inner_text() == "per pixel (the painted strength)"
    assert "visible" in page.locator("#paint").get_attribute("class")  # the map shown over the image
    # the divider (keyboard only while painting) to the left edge: the result over the whole view
    page.locator("#divider").focus()
    for _ in range(5):
        page.keyboard.press("Shift+ArrowLeft")
    assert page.locator("#divider").get_attribute("aria-valuenow") == "0"
    session.screenshot("app-paint.png")

    # export the map: a grey PNG over the whole image
    with page.expect_download(timeout=TIMEOUT) as info:
        page.click("#map-export")
    assert info.value.suggested_filename == "knob-map-strength.png"
    exported = session.tmp_path / "knob-map-strength.png"
    info.value.save_as(exported)
    with Image.open(exported) as im, Image.open(setup["photo"]) as src:
        assert im.format == "PNG" and im.size == src.size
        rgba = np.asarray(im.convert("RGBA")).astype(int)
    assert (rgba[..., 0] == rgba[..., 1]).all() and (rgba[..., 1] == rgba[..., 2]).all() and (rgba[..., 3] == 255).all()
    top, lft = (400 - PREVIEW) // 2, (600 - PREVIEW) // 2
    grey = rgba[..., 0]
    assert grey[top: top + PREVIEW, lft: lft + 60].max() <= 4  # painted (the feathered dabs add up to ~0)
    assert (grey[:, lft + half:] == 255).all() and (grey[:, :lft] == 255).all()  # not painted

    # fill the map (another result), then load the exported one back: the painted result again
    version = session.version()
    page.click("#map-fill")
    session.wait_exact(version, "map")
    assert _mad(session.pixels("#after")[:, half:], reference[:, half:]) > 1.0
    version = session.version()
    page.set_input_files("#map-load", str(exported))
    session.wait_exact(version, "map")
    assert _mad(session.pixels("#after"), painted) < 0.05
    overlay = session.pixels("#paint")[..., 0]  # the map shown over the image: the file's part under the region
    assert np.abs(overlay - grey[top: top + PREVIEW, lft: lft + PREVIEW]).max() <= 1

    # the command line takes the exported map, and agrees with the page inside the preview
    # region (away from its border, where the page's crop pads and the whole image does not)
    out = session.tmp_path / "cli.png"
    argv = ["restore", str(setup["photo"]), str(out), "--model", str(setup["models"]["denoiser"]),
            "--knob-map", f"strength={exported}"]
    assert main(argv) == 0
    cli = _decode(out.read_bytes())
    m = 16
    assert _mad(cli[top + m: top + PREVIEW - m, lft + m: lft + PREVIEW - m], painted[m:-m, m:-m]) < 0.5

    # a hard brush (feather 0) paints too: one click sets a disc of the brush value
    page.locator("#brush-feather").focus()
    page.keyboard.press("Home")
    assert page.locator("#brush-feather-out").inner_text() == "0.00"
    page.locator("#brush-value").focus()
    page.keyboard.press("End")
    page.locator("#paint").scroll_into_view_if_needed()
    box = page.locator("#paint").bounding_box()
    version = session.version()
    page.mouse.click(*at(40, 128))
    assert session.pixels("#paint")[128, 40, 0] == 255, "a brush with feather 0 painted nothing"
    session.wait_exact(version, "map")


# ----------------------------------------------------------------------------------------
# e. a x4 super-resolution model
# ----------------------------------------------------------------------------------------
def test_sr_result_is_four_times_the_region_beside_bicubic(setup, session):
    page = session.page
    session.open("sr4", setup["photo"], tiles=5)
    side = PREVIEW // 4  # the live region of a x4 model, in input pixels
    size = lambda sel: page.eval_on_selector(sel, "el => [el.naturalWidth, el.naturalHeight]")  # noqa: E731
    assert size("#after") == [4 * side, 4 * side]
    page.wait_for_function("() => document.querySelector('#before').naturalWidth > 0")
    assert size("#before") == [4 * side, 4 * side]
    assert page.locator("#tag-before").inner_text() == "bicubic ×4"
    assert page.locator("#tag-after").inner_text() == "sr4 ×4"
    assert f"central {side} px" in page.locator("#image-info").inner_text()

    page.locator("#knob-perception").focus()
    version = session.version()
    page.keyboard.press("End")
    session.wait_exact(version, _p([0.0, 1.0]))
    assert size("#after") == [4 * side, 4 * side]
    assert page.eval_on_selector("#after-preview", "c => [c.width, c.height]") == [4 * side, 4 * side]

    # a sweep strip covers the live view's region too: input + 5 panels of 4 * side, 4 px apart
    page.click("#sweep")
    page.wait_for_function("() => !document.querySelector('#sweep-box').hidden && "
                           "document.querySelector('#sweep-img').naturalWidth > 0", timeout=TIMEOUT)
    width, height = size("#sweep-img")
    assert width == 6 * 4 * side + 5 * 4 and 4 * side < height < 4 * side + 80, (width, height)
    session.screenshot("app-sr.png")
