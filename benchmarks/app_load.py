"""Load check of the web app: concurrent slider requests against a real server process.

Starts ``tunableconv serve`` on 127.0.0.1 (a free port, loopback only) with one model, uploads
one image, and then:

1. **single**: one request at a time for each of N knob values (the reference results and the
   unloaded latency);
2. **concurrent**: the same N requests all at once; each result must equal the single-request
   result for its knobs (no request sees another's knob values);
3. **memory**: uploads more images than the server keeps (``--uploads`` > ``--max-images``)
   and repeats the concurrent round: the server's resident memory must level off.

Reports latency percentiles (client side, per request) and the server process's resident
memory (sampled every 20 ms from /proc, plus the kernel's high-water mark VmHWM), and writes
them as JSON with ``--json``. Everything is bounded: N requests (at most 200), a per-request
timeout and a total time limit.

    python benchmarks/app_load.py                              # a tiny random model, 50 requests
    python benchmarks/app_load.py --model denoise --size 256 --json results/app_load.json
    python benchmarks/app_load.py --model runs/x/model.safetensors --requests 20 --jobs 1
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HOST = "127.0.0.1"  # loopback only, on purpose


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _tiny_model(folder: Path) -> Path:
    import torch

    from tunableconv.models import ResNet, ResNetConfig, save_model

    torch.manual_seed(0)
    model = ResNet(ResNetConfig(channels=8, num_blocks=1, num_params=2))
    return save_model(model, folder / "tiny.safetensors", knobs=[
        {"name": "fidelity", "description": "noise removal"},
        {"name": "noise_preservation", "description": "grain kept"},
    ], info={"task": "denoise", "strength": "p = (s, 1 - s)", "beta": 0.9})


def _test_image(size: int, seed: int = 0) -> bytes:
    """A size x size PNG: a crop of a bundled photo plus noise, or dead leaves."""
    import torch

    from tunableconv.data import add_gaussian_noise, bundled_sample_image, dead_leaves, pad_to_size
    from tunableconv.io import to_uint8_array

    try:
        image = bundled_sample_image("astronaut")
    except Exception:
        image = dead_leaves(size, torch.Generator().manual_seed(seed))
    image = pad_to_size(image, size, size)[:, :size, :size]
    image = add_gaussian_noise(image, 20.0, torch.Generator().manual_seed(seed), clip=True)
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(to_uint8_array(image)).save(buf, format="PNG")
    return buf.getvalue()


class RssMonitor:
    """Samples a process's resident memory (VmRSS) from /proc; Linux only."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self.pid, self.interval = pid, interval
        self.peak = 0
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def field(self, name: str) -> int | None:
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith(name + ":"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
        return None

    def _run(self) -> None:
        t0 = time.monotonic()
        while not self._stop.is_set():
            rss = self.field("VmRSS")
            if rss is not None:
                self.peak = max(self.peak, rss)
                self.samples.append((time.monotonic() - t0, rss))
            self._stop.wait(self.interval)

    def start(self) -> "RssMonitor":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


def _percentiles(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    if not v:
        return {}

    def q(p: float) -> float:
        return float(np.percentile(v, p))

    return {"n": len(v), "min_ms": v[0] * 1e3, "p50_ms": q(50) * 1e3, "p90_ms": q(90) * 1e3, "p95_ms": q(95) * 1e3,
            "p99_ms": q(99) * 1e3, "max_ms": v[-1] * 1e3, "mean_ms": statistics.fmean(v) * 1e3}


def _knob_bodies(model: dict, n: int) -> list[dict]:
    """n distinct knob settings for ``model`` (its /api/models entry)."""
    if model["num_params"] == 0:
        return [{} for _ in range(n)]
    if model["main_slider"]:
        return [{"value": round(i / max(1, n - 1), 6)} for i in range(n)]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        p = rng.dirichlet(np.ones(model["num_params"])) if model["simplex"] else rng.random(model["num_params"])
        out.append({"p": [round(float(x), 6) for x in np.clip(p, 0, 1)]})
    return out


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


async def _scenario(base: str, args, monitor: RssMonitor, image: bytes) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=args.requests + 4, max_keepalive_connections=args.requests + 4)
    timeout = httpx.Timeout(args.request_timeout)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout) as c:
        models = (await c.get("/api/models")).json()
        model = next(m for m in models["models"] if m["name"] == models["default"])
        r = await c.post("/api/images", files={"file": ("bench.png", image, "image/png")})
        r.raise_for_status()
        image_id = r.json()["id"]
        bodies = [{"image_id": image_id, "model": model["name"], "format": "png", **k}
                  for k in _knob_bodies(model, args.requests)]

        async def one(body: dict) -> tuple[float, httpx.Response]:
            t0 = time.perf_counter()
            resp = await c.post("/api/restore", json=body)
            return time.perf_counter() - t0, resp

        # warm-up (first-call allocations), then the reference results one at a time
        await one(bodies[0])
        rss_warm = monitor.field("VmRSS")
        singles, reference, compute = [], [], []
        for body in bodies:
            dt, resp = await one(body)
            resp.raise_for_status()
            singles.append(dt)
            compute.append(float(resp.headers["x-tunableconv-compute-ms"]) / 1e3)
            reference.append(_decode(resp.content))

        async def concurrent_round() -> tuple[list[float], int, int, float]:
            t0 = time.perf_counter()
            results = await asyncio.gather(*[one(b) for b in bodies])
            wall = time.perf_counter() - t0
            latencies, mismatches, errors = [], 0, 0
            for (dt, resp), ref in zip(results, reference):
                if resp.status_code != 200:
                    errors += 1
                    continue
                latencies.append(dt)
                if not np.array_equal(_decode(resp.content), ref):
                    mismatches += 1
            return latencies, mismatches, errors, wall

        lat1, mism1, err1, wall1 = await concurrent_round()
        rss_round1 = monitor.field("VmRSS")

        # more images than the store keeps, then another concurrent round on a fresh upload
        for i in range(args.uploads):
            extra = _test_image(args.size, seed=i + 1)
            r = await c.post("/api/images", files={"file": (f"extra{i}.png", extra, "image/png")})
            r.raise_for_status()
        r = await c.post("/api/images", files={"file": ("bench.png", image, "image/png")})
        image_id = r.json()["id"]
        for b in bodies:
            b["image_id"] = image_id
        lat2, mism2, err2, wall2 = await concurrent_round()
        rss_round2 = monitor.field("VmRSS")
        health = (await c.get("/api/health")).json()

    return {
        "model": {k: model[k] for k in ("name", "summary", "num_params", "main_slider")},
        "single": {**_percentiles(singles), "compute": _percentiles(compute)},
        "concurrent": {**_percentiles(lat1), "wall_s": wall1, "throughput_rps": len(lat1) / wall1,
                       "mismatches": mism1, "errors": err1},
        "concurrent_after_uploads": {**_percentiles(lat2), "wall_s": wall2, "throughput_rps": len(lat2) / wall2,
                                     "mismatches": mism2, "errors": err2},
        "store_images_at_end": health.get("images"),
        "rss_bytes": {"after_warmup": rss_warm, "after_round1": rss_round1, "after_uploads_round2": rss_round2},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="shipped model name or model file (default: a tiny random model)")
    ap.add_argument("--requests", type=int, default=50, help="concurrent requests per round (default 50, max 200)")
    ap.add_argument("--size", type=int, default=512, help="test image side in pixels (default 512)")
    ap.add_argument("--jobs", type=int, default=2, help="the server's --jobs (default 2)")
    ap.add_argument("--max-images", type=int, default=8, help="the server's --max-images (default 8)")
    ap.add_argument("--uploads", type=int, default=24, help="extra uploads before the second round (default 24)")
    ap.add_argument("--request-timeout", type=float, default=120.0, help="client timeout per request, s")
    ap.add_argument("--time-limit", type=float, default=600.0, help="stop after this many seconds in all")
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args(argv)
    if not 1 <= args.requests <= 200:
        ap.error("--requests must be in 1..200")
    if not 16 <= args.size <= 4096:
        ap.error("--size must be in 16..4096")

    tmp = tempfile.TemporaryDirectory(prefix="tunableconv-app-load-")
    model = args.model or str(_tiny_model(Path(tmp.name)))
    port = _free_port()
    cmd = [sys.executable, "-m", "tunableconv", "serve", "--host", HOST, "--port", str(port), "--model", model,
           "--no-zoo", "--jobs", str(args.jobs), "--queue", str(args.requests + 8), "--max-images", str(args.max_images),
           "--timeout", str(args.request_timeout), "--log-level", "warning"]
    print("server:", " ".join(cmd), flush=True)
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    monitor = RssMonitor(server.pid).start()
    base = f"http://{HOST}:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 120
        while True:
            if server.poll() is not None:
                print(server.stdout.read(), file=sys.stderr)
                raise SystemExit(f"the server exited with status {server.returncode}")
            try:
                if httpx.get(base + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start within 120 s")
            time.sleep(0.2)
        rss_idle = monitor.field("VmRSS")
        image = _test_image(args.size)
        t0 = time.perf_counter()
        result = asyncio.run(asyncio.wait_for(_scenario(base, args, monitor, image), args.time_limit))
        elapsed = time.perf_counter() - t0
        hwm = monitor.field("VmHWM")
    finally:
        monitor.stop()
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        tmp.cleanup()

    result["rss_bytes"].update({"idle": rss_idle, "peak_sampled": monitor.peak, "peak_vmhwm": hwm})
    out = {
        "benchmark": "app_load",
        "config": {"requests": args.requests, "size": args.size, "jobs": args.jobs, "max_images": args.max_images,
                   "uploads": args.uploads, "model_arg": args.model or "tiny random (8 ch x 1 block, 2 knobs)"},
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "loadavg_1m": os.getloadavg()[0]},
        "elapsed_s": elapsed,
        **result,
    }
    mb = 1024 * 1024
    s, c1, c2 = out["single"], out["concurrent"], out["concurrent_after_uploads"]
    print(f"model {out['model']['name']}: {out['model']['summary']}; image {args.size}x{args.size}; "
          f"{args.requests} requests; server --jobs {args.jobs}")
    print(f"single requests    : p50 {s['p50_ms']:.0f} ms, p90 {s['p90_ms']:.0f} ms, max {s['max_ms']:.0f} ms "
          f"(model compute p50 {s['compute']['p50_ms']:.0f} ms)")
    for name, c in (("concurrent round 1", c1), ("concurrent round 2", c2)):
        print(f"{name} : p50 {c['p50_ms']:.0f} ms, p90 {c['p90_ms']:.0f} ms, p99 {c['p99_ms']:.0f} ms, "
              f"max {c['max_ms']:.0f} ms; wall {c['wall_s']:.1f} s = {c['throughput_rps']:.2f} req/s; "
              f"mismatches {c['mismatches']}, errors {c['errors']}")
    r = out["rss_bytes"]
    print(f"server RSS         : idle {r['idle'] / mb:.0f} MB, after warm-up {r['after_warmup'] / mb:.0f} MB, "
          f"after round 1 {r['after_round1'] / mb:.0f} MB, after {args.uploads} uploads + round 2 "
          f"{r['after_uploads_round2'] / mb:.0f} MB; peak {r['peak_sampled'] / mb:.0f} MB "
          f"(VmHWM {r['peak_vmhwm'] / mb:.0f} MB); "
          f"images kept {out['store_images_at_end']} (limit {args.max_images})")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"wrote {args.json}")
    ok = c1["mismatches"] == c1["errors"] == c2["mismatches"] == c2["errors"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
