"""How fast the web app answers a knob move: instant preview, exact result, full resolution.

For each model and image size it runs the app in-process (FastAPI's TestClient, the server's
own code path) on a photo degraded by the model's task (its default case) and measures,
side by side in one run:

- **full pass** (today's slider): one ``POST /api/restore`` of the live region, the whole
  network at one setting — what every slider move cost before instant previews;
- **anchors**: ``POST /api/anchors``, the model at the control's anchor settings (once per
  image, model and control; ``model.sweep`` runs a p-independent trunk once);
- **preview**: the blend of the anchors at a new setting — in the page itself when Chromium
  and Playwright are here (``--browser``: the input event, the page's blend and one frame),
  and always its Python twin (:func:`tunableconv.preview.blend`);
- **preview error**: PSNR of the blend against the exact result at random settings between
  the anchors (how faithful the instant preview is);
- **fast drag**: 8 knob values sent 40 ms apart, as a drag does; time from the last one to its
  result, with the channel protocol (superseded passes cancelled) and without it (every pass
  runs: the backlog the old page could build if it did not wait);
- **full resolution**: ``POST /api/download`` of the whole image (tiled where exact).

Sizes are the side of the *output* in pixels (a x4 model gets a quarter-size input). The
live region is the central ``preview_size`` square (768 by default, the app's), so at 2048
the live numbers cover that crop and only the download covers the whole image.

    python benchmarks/app_latency.py --json results/app_latency.json          # the shipped models
    python benchmarks/app_latency.py --models denoise --sizes 512 --browser   # plus the in-page blend

Run it on a quiet machine (no training beside it): the ratios are measured side by side, the
seconds drift with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import math
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _photo(side: int) -> torch.Tensor:
    """The bundled astronaut (512²) resized to side² (MATLAB bicubic); the model's task then
    degrades it (a x4 model's input is a quarter of it)."""
    from tunableconv.data import bundled_sample_image
    from tunableconv.data.degradations import imresize

    image = bundled_sample_image("astronaut")
    return imresize(image, size=(side, side)).clamp(0, 1) if side != image.shape[-1] else image


def _png(image: torch.Tensor) -> bytes:
    from tunableconv.io import to_uint8_array

    buf = io.BytesIO()
    Image.fromarray(to_uint8_array(image)).save(buf, format="PNG")
    return buf.getvalue()


def _decode(data: bytes) -> torch.Tensor:
    return torch.from_numpy(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")).copy()).permute(2, 0, 1).float()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _timed(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _knob_fields(model: dict, u: list[float]) -> dict:
    """The request fields that put the anchors' control at u."""
    if model["main_slider"]:
        return {"slider": model["main_slider"], "value": u[0]}
    return {"p": u}


def _random_u(anchors: dict, rng: np.random.Generator) -> list[float]:
    if anchors["layout"] == "triangle":
        w = rng.dirichlet(np.ones(len(anchors["axes"])))
        return [round(float(v), 4) for v in w[:-1]] + [round(1 - float(np.round(w[:-1], 4).sum()), 4)]
    return [round(float(v), 4) for v in rng.uniform(0, 1, len(anchors["axes"]))]


def measure(model_name: str, side: int, args, browser) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    import httpx

    from tunableconv.app.server import AppConfig, create_app
    from tunableconv.preview import AnchorSet, blend

    app = create_app(AppConfig(models=[model_name], include_zoo=False, max_jobs=args.jobs,
                               request_timeout=600, max_pixels=100_000_000))
    entry = app.state.registry.entries[next(iter(app.state.registry.entries))]
    info = entry.describe()
    scale = int(info["scale"])
    rng = np.random.default_rng(0)
    result: dict = {"model": model_name, "side": side, "scale": scale, "domain": info["domain"],
                    "main_slider": info["main_slider"], "tiling_exact": info["tiling_exact"]}
    with TestClient(app) as c:
        clean = c.post("/api/images", files={"file": ("photo.png", _png(_photo(side)), "image/png")}).json()
        image = clean
        if info.get("degrade_cases"):
            image = c.post(f"/api/images/{clean['id']}/degrade", json={"model": entry.name}).json()
            result["degradation"] = image["degradation"]["case"]
        result["input"] = f"{image['width']}x{image['height']}"
        base = {"image_id": image["id"], "model": entry.name}

        # anchors of the control the page shows first (once per image: the first request computes)
        t0 = time.perf_counter()
        anchors = c.post("/api/anchors", json=base).json()
        result["anchors_s"] = time.perf_counter() - t0
        result["anchors"] = len(anchors["tiles"])
        result["layout"] = anchors["layout"]
        result["live_region"] = f"{anchors['region']['width']}x{anchors['region']['height']}"
        result["live_output"] = f"{anchors['width']}x{anchors['height']}"
        outputs = torch.stack([_decode(c.get(t).content) for t in anchors["tiles"]])
        aset = AnchorSet(anchors["layout"], anchors["control"], tuple(anchors["axes"]), tuple(anchors["values"]),
                         torch.tensor(anchors["points"]), torch.tensor(anchors["p"]), anchors["calibrated"])

        # today's slider: one full pass of the live region per move
        u = _random_u(anchors, rng)
        body = {**base, **_knob_fields(info, u), "region": "preview"}
        result["full_pass_s"], _ = _timed(lambda: c.post("/api/restore", json=body), args.repeats)

        # the preview: the blend at a setting between anchors (Python twin) and its error
        errors, blend_times = [], []
        for _ in range(args.settings):
            u = _random_u(anchors, rng)
            t0 = time.perf_counter()
            preview = blend(aset, outputs, torch.tensor(u)).round().clamp(0, 255)
            blend_times.append(time.perf_counter() - t0)
            exact = _decode(c.post("/api/restore", json={**base, **_knob_fields(info, u)}).content)
            errors.append(_psnr(preview, exact))
        result["blend_python_ms"] = 1000 * statistics.median(blend_times)
        result["preview_psnr_db"] = {"median": statistics.median(errors), "min": min(errors), "n": len(errors)}

        # full resolution (tiled where exact)
        result["download_s"], resp = _timed(lambda: c.post("/api/download", json={**base, **_knob_fields(info, u)}), 1)
        result["download_size"] = resp.headers.get("x-tunableconv-size")

    # a fast drag: 8 values 40 ms apart, with and without the channel protocol
    async def drag(channel: bool) -> float:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app", timeout=600) as ac:
            values = [round(0.1 * (k + 1), 2) for k in range(8)]
            tasks = []
            for k, v in enumerate(values):
                u = [v] if len(anchors["axes"]) == 1 else ([v, 1.0 - v, 0.0] if aset.layout == "triangle"
                                                         else [v] * len(anchors["axes"]))
                body = {**base, **_knob_fields(info, u), "region": "preview"}
                if channel:
                    body.update(channel=drag.channel, seq=k + 1)
                if k == len(values) - 1:
                    last_sent = time.perf_counter()
                tasks.append(asyncio.create_task(ac.post("/api/restore", json=body)))
                await asyncio.sleep(0.04)
            responses = await asyncio.gather(*tasks)
            done = time.perf_counter()
            assert responses[-1].status_code == 200, responses[-1].text
            drag.cancelled = sum(r.status_code == 204 for r in responses)
            return done - last_sent

    drag.channel = "bench-drag-1"
    result["drag_last_to_result_channel_s"] = asyncio.run(drag(True))
    result["drag_cancelled"] = drag.cancelled
    result["drag_last_to_result_no_channel_s"] = asyncio.run(drag(False))

    if browser is not None:
        result.update(browser(app, clean, image, entry.name, info))
    result["ratios"] = {
        "preview_python_vs_full_pass": result["blend_python_ms"] / 1000 / result["full_pass_s"],
        "anchors_vs_full_pass": result["anchors_s"] / result["full_pass_s"],
        "drag_channel_vs_no_channel": result["drag_last_to_result_channel_s"] / result["drag_last_to_result_no_channel_s"],
        "download_vs_full_pass": result["download_s"] / result["full_pass_s"],
    }
    if "blend_page_ms" in result:
        result["ratios"]["preview_page_vs_full_pass"] = result["blend_page_ms"] / 1000 / result["full_pass_s"]
    return result


def page_timer(chromium: str):
    """A function that measures the in-page preview: from an input event on the page's control
    to the blended frame (two animation frames later), median of 10 moves."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_app_browser import CHROMIUM_ARGS, running_server

    def run(app, clean, image, model_name, info) -> dict:
        from playwright.sync_api import sync_playwright

        import tempfile

        from tunableconv.io import write_image

        with tempfile.TemporaryDirectory() as tmp, running_server(app) as base, sync_playwright() as pw:
            path = Path(tmp) / "photo.png"
            img = app.state.store.get(image["id"]).tensor()
            write_image(img.clamp(0, 1), path)
            browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(base + "/")
                page.wait_for_function("() => document.querySelectorAll('#model-select option').length > 0")
                page.select_option("#model-select", model_name)
                page.set_input_files("#file-input", str(path))
                page.wait_for_function("() => document.querySelector('#preview-note').textContent.startsWith('Instant')",
                                       timeout=600_000)
                control = f"#knob-{info['main_slider']}" if info["main_slider"] else "#knob-0"
                times = page.evaluate("""async (sel) => {
                    const el = document.querySelector(sel);
                    const frame = () => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
                    const out = [];
                    for (let k = 0; k < 10; k++) {
                        const t0 = performance.now();
                        el.value = String(0.05 + 0.09 * k);
                        el.dispatchEvent(new Event('input'));
                        await frame();
                        out.push(performance.now() - t0);
                        await new Promise((r) => setTimeout(r, 30));
                    }
                    return out;
                }""", control)
                # then the exact result of the last move
                t0 = time.perf_counter()
                page.wait_for_function("() => !document.querySelector('#after').classList.contains('stale')",
                                       timeout=600_000)
                exact_after_last = time.perf_counter() - t0
            finally:
                browser.close()
        return {"blend_page_ms": statistics.median(times), "blend_page_ms_max": max(times),
                "page_exact_after_rest_s": exact_after_last}

    return run


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="denoise,deblur-denoise,sr4", help="comma-separated model names or files")
    ap.add_argument("--sizes", default="512,2048", help="output sides in pixels")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (the app's default: all cores)")
    ap.add_argument("--jobs", type=int, default=2, help="the app's max_jobs")
    ap.add_argument("--repeats", type=int, default=3, help="best of N for the full pass")
    ap.add_argument("--settings", type=int, default=6, help="random settings for the preview error")
    ap.add_argument("--browser", action="store_true", help="also time the blend in headless Chromium (Playwright)")
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    browser = None
    if args.browser:
        import shutil

        chromium = shutil.which("chromium") or "/usr/bin/chromium"
        browser = page_timer(chromium)
    rows = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        for side in [int(s) for s in args.sizes.split(",")]:
            t0 = time.perf_counter()
            r = measure(name, side, args, browser)
            r["wall_s"] = time.perf_counter() - t0
            rows.append(r)
            page = f" page {r['blend_page_ms']:.0f} ms" if "blend_page_ms" in r else ""
            print(f"{name:16s} {side:5d}  full pass {r['full_pass_s']:.2f} s | preview: python {r['blend_python_ms']:.0f} ms"
                  f"{page} ({r['preview_psnr_db']['median']:.1f} dB from exact) | anchors x{r['anchors']} "
                  f"{r['anchors_s']:.1f} s | drag: last->result {r['drag_last_to_result_channel_s']:.2f} s "
                  f"(no channel {r['drag_last_to_result_no_channel_s']:.2f} s, {r['drag_cancelled']} cancelled) | "
                  f"download {r['download_s']:.1f} s", flush=True)
    out = {"torch": torch.__version__, "threads": args.threads, "jobs": args.jobs, "machine": platform.machine(),
           "processor": platform.processor(), "command": "python benchmarks/app_latency.py " + " ".join(argv or sys.argv[1:]),
           "results": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
