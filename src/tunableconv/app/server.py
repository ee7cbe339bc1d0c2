"""The web app's server: a FastAPI application around loaded :class:`~tunableconv.restore.Restorer`\\ s.

:func:`create_app` builds the ASGI app from an :class:`AppConfig`; ``tunableconv serve`` runs it
with uvicorn. The page (``static/index.html``) uses only the JSON/multipart API below, which
is documented at ``/docs`` (a page served from the package, no CDN) and ``/openapi.json``.

HTTP API (all under ``/api``; errors are JSON ``{"detail": "one line"}`` with a 4xx status):

=======  ==============================  ==================================================
GET      /api/health                     ``{"status": "ok", "version": ...}``
GET      /api/config                     the server's limits (upload size, pixels, ...)
GET      /api/models                     the served models, their knob spaces and degradation cases
                                         (a bad file: its error)
GET      /api/samples                    the bundled sample photos (by name)
POST     /api/images                     multipart upload (field ``file``) -> image info
POST     /api/images/from-sample         ``{"name": "astronaut"}`` -> image info
POST     /api/images/{id}/degrade        ``{"model", "levels", "seed"}`` -> new image (the model's task)
GET      /api/images/{id}                image info
GET      /api/images/{id}/image.png      the stored image (``?region=preview|full``)
DELETE   /api/images/{id}                forget an image
POST     /api/restore                    ``{"image_id", "model", "p" | "knobs" | ["slider"+]"value",
                                         "calibrated", ...}`` -> PNG/JPEG (no slider: the main one)
POST     /api/download                   the same at full resolution (tiled), as an attachment
POST     /api/sweep                      a labelled strip along a slider or knob, or a 2-knob grid (PNG)
=======  ==============================  ==================================================

Design:

- **Images stay on the server.** An upload is decoded once (:func:`tunableconv.io.read_image`)
  and kept in a bounded in-memory LRU store under a random id; slider moves send only the id
  and the knob values. 8-bit images are stored as uint8, others (degraded, 16-bit) as float16.
- **Previews and full resolution.** Live results (``region="preview"``) are computed on the
  whole image when it fits in ``preview_size x preview_size`` and on its centred crop of that
  size otherwise; ``/api/download`` processes the full image in tiles.
- **Models** are loaded once, at start-up, and referred to by name only: zoo names and the
  files given to the server (``--model PATH``); no path sent by a client is ever opened, and
  sample photos are looked up by name in a fixed list. What a model's knobs mean is read
  from its file's knob space only (any domain, any sliders); a file that cannot be loaded
  is listed by ``/api/models`` with its error line, and the other models are served.
- **Degradations** (for demonstrations on a clean photo) are the selected model's own: its
  file names its task, and the image is degraded as that task does in evaluation, at one of
  its cases (``tunableconv sweep --degrade``). The app itself knows no task: the cases and
  their labels come from the task, and the degraded image may have another size than the
  original (a super-resolution model's input is the downscaled image).
- **Jobs** (decoding, degrading, inference, encoding) run off the event loop in a pool of
  ``max_jobs`` threads; a semaphore bounds running + queued jobs (503 when full) and each job
  has a deadline (``request_timeout``; a tiled job stops at its next tile after it). Knob
  values travel with each job (p is passed to the model explicitly, per call), so
  concurrent requests never see each other's knobs; there is no per-request global state.
- **Limits** (all in :class:`AppConfig`): upload bytes (413, checked while the body streams
  in), pixels (413), stored images (count and bytes), concurrent jobs, queue length, request
  timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import io
import logging
import math
import re
import secrets
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Optional

import torch
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from .. import __version__
from ..errors import InputError, InvalidParamsError, TunableconvError

log = logging.getLogger("tunableconv.app")

STATIC_DIR = Path(__file__).resolve().parent / "static"

MB = 1024 * 1024

#: Image ids are random URL-safe tokens; anything else is refused before a lookup.
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")

#: Content-Security-Policy of every response: nothing is loaded from anywhere but this server.
CSP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
       "form-action 'self'")


# ----------------------------------------------------------------------------------------
# configuration
# ----------------------------------------------------------------------------------------
@dataclass
class AppConfig:
    """Everything the server can be told. ``tunableconv serve`` has a flag for each field."""

    #: Models to serve besides the zoo: shipped names or model files (server-side paths).
    models: list[str] = field(default_factory=list)
    #: Also serve every shipped model of :func:`tunableconv.zoo.available`.
    include_zoo: bool = True
    #: The model selected when the page opens (default: the first usable of ``models``, else
    #: the first usable model; models with knobs before fixed ones).
    default_model: str | None = None
    device: str = "cpu"
    #: Largest accepted upload, bytes (413 above).
    max_upload_bytes: int = 20 * MB
    #: Largest accepted image, width x height (413 above; refused before decoding).
    max_pixels: int = 16_000_000
    #: How many images (uploads, samples, degraded versions) are kept; least recently used go first.
    max_images: int = 16
    #: ... and at most this many bytes of pixels in all (the newest image is always kept).
    max_store_bytes: int = 1024 * MB
    #: Inference jobs running at once (threads of the job pool).
    max_jobs: int = 2
    #: Jobs that may wait for a free slot; more get 503 "busy".
    max_queued: int = 64
    #: Seconds a request may take, waiting in the queue included (503 after).
    request_timeout: float = 120.0
    #: Side of the live-preview region (centred crop of larger images).
    preview_size: int = 768
    #: Tile size for full-resolution jobs (images larger than one tile).
    tile: int = 512
    tile_overlap: int = 32
    #: Most values in one sweep strip.
    max_sweep_steps: int = 9
    #: Run the models on channels-last (NHWC) tensors: about 1.4x faster convolutions on CPU;
    #: results may differ from the NCHW path by float rounding (rarely one 8-bit level).
    channels_last: bool = True

    def __post_init__(self) -> None:
        positive = ("max_upload_bytes", "max_pixels", "max_images", "max_store_bytes", "max_jobs", "preview_size", "tile")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.max_queued, int) or self.max_queued < 0:
            raise InputError(f"max_queued must be an integer >= 0, got {self.max_queued!r}")
        if not (isinstance(self.request_timeout, (int, float)) and math.isfinite(self.request_timeout)
                and self.request_timeout > 0):
            raise InputError(f"request_timeout must be a positive number of seconds, got {self.request_timeout!r}")
        if not 0 <= self.tile_overlap < self.tile:
            raise InputError(f"tile_overlap must be in [0, tile), got {self.tile_overlap}")
        if self.preview_size < 16:
            raise InputError(f"preview_size must be at least 16 pixels, got {self.preview_size}")
        if not isinstance(self.max_sweep_steps, int) or self.max_sweep_steps < 2:
            raise InputError(f"max_sweep_steps must be at least 2, got {self.max_sweep_steps!r}")
        self.models = [str(m) for m in self.models]

    def public(self) -> dict[str, Any]:
        """The limits a client may want to know (no paths)."""
        return {
            "max_upload_bytes": self.max_upload_bytes,
            "max_pixels": self.max_pixels,
            "max_images": self.max_images,
            "max_store_bytes": self.max_store_bytes,
            "max_jobs": self.max_jobs,
            "request_timeout": self.request_timeout,
            "preview_size": self.preview_size,
            "tile": self.tile,
            "max_sweep_steps": self.max_sweep_steps,
        }


# ----------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------
def _err(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=" ".join(str(detail).split()))


def _image_error(exc: InputError, filename: str | None) -> HTTPException:
    """An :class:`InputError` of :func:`read_image` as 413 (too many pixels), 415 (not an
    image) or 400 (truncated, corrupt, unsupported)."""
    msg = str(exc)
    label = repr(filename[:100]) if filename else "the upload"
    msg = msg.replace("<image bytes>", label)
    if "more than the limit" in msg:
        from ..io import MAX_PIXELS_HINT

        return _err(413, msg.replace(MAX_PIXELS_HINT, "(the server's limit, tunableconv serve --max-pixels)"))
    if "not an image file" in msg:
        return _err(415, msg)
    return _err(400, msg)


# ----------------------------------------------------------------------------------------
# stored images
# ----------------------------------------------------------------------------------------
@dataclass
class StoredImage:
    id: str
    data: torch.Tensor  # (3, H, W): uint8 (8-bit images) or float16 (anything else)
    name: str
    source: str  # "upload", "sample", "degraded"
    parent: str | None = None
    degradation: dict | None = None

    @property
    def height(self) -> int:
        return int(self.data.shape[-2])

    @property
    def width(self) -> int:
        return int(self.data.shape[-1])

    def tensor(self) -> torch.Tensor:
        """float32 (3, H, W); values may leave [0, 1] for degraded images (a task need not clip)."""
        if self.data.dtype == torch.uint8:
            return self.data.to(torch.float32) / 255
        return self.data.to(torch.float32)

    def preview_box(self, size: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the live-preview region: all of it, or a centred crop."""
        h, w = min(size, self.height), min(size, self.width)
        return (self.height - h) // 2, (self.width - w) // 2, h, w

    def region(self, region: str, size: int) -> torch.Tensor:
        x = self.tensor()
        if region == "full":
            return x
        top, left, h, w = self.preview_box(size)
        return x[:, top:top + h, left:left + w].contiguous()

    def describe(self, preview_size: int) -> dict[str, Any]:
        top, left, h, w = self.preview_box(preview_size)
        return {
            "id": self.id, "name": self.name, "source": self.source, "parent": self.parent,
            "width": self.width, "height": self.height, "degradation": self.degradation,
            "preview": {"top": top, "left": left, "width": w, "height": h,
                        "cropped": (h, w) != (self.height, self.width)},
        }


def _compact(image: torch.Tensor) -> torch.Tensor:
    """uint8 when the image is exactly 8-bit (as :func:`read_image` makes them), else float16."""
    image = image.detach().to(torch.float32)
    if image.numel() and float(image.min()) >= 0 and float(image.max()) <= 1:
        levels = torch.round(image * 255)
        if torch.equal(levels / 255, image):
            return levels.to(torch.uint8)
    return image.to(torch.float16)


class ImageStore:
    """A bounded in-memory LRU store of images under random ids (thread-safe): at most
    ``max_images`` images and ``max_bytes`` bytes of pixels (the newest image is always kept)."""

    def __init__(self, max_images: int, max_bytes: int | None = None) -> None:
        self.max_images, self.max_bytes = max_images, max_bytes
        self._items: OrderedDict[str, StoredImage] = OrderedDict()
        self._lock = threading.Lock()
        self._bytes = 0

    def put(self, image: torch.Tensor, *, name: str, source: str, parent: str | None = None,
            degradation: dict | None = None) -> StoredImage:
        item = StoredImage(secrets.token_urlsafe(16), _compact(image), name, source, parent, degradation)
        size = _nbytes(item)
        with self._lock:
            self._items[item.id] = item
            self._bytes += size
            while len(self._items) > 1 and (len(self._items) > self.max_images or
                                            (self.max_bytes is not None and self._bytes > self.max_bytes)):
                _, old = self._items.popitem(last=False)
                self._bytes -= _nbytes(old)
        return item

    def get(self, image_id: str) -> StoredImage:
        with self._lock:
            item = self._items.get(image_id) if _ID_RE.match(image_id or "") else None
            if item is not None:
                self._items.move_to_end(image_id)
        if item is None:
            raise _err(404, f"unknown image id {image_id[:80]!r}: upload the image again "
                            f"(the server keeps the {self.max_images} most recently used images)")
        return item

    def delete(self, image_id: str) -> bool:
        with self._lock:
            item = self._items.pop(image_id, None)
            if item is not None:
                self._bytes -= _nbytes(item)
            return item is not None

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def nbytes(self) -> int:
        with self._lock:
            return self._bytes


def _nbytes(item: StoredImage) -> int:
    return item.data.numel() * item.data.element_size()


# ----------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------
@dataclass
class ModelEntry:
    """One served model: its :class:`~tunableconv.restore.Restorer`, or the one-line error
    that kept its file from loading (listed by ``/api/models``, refused by the other routes)."""

    name: str
    restorer: Any  # tunableconv.restore.Restorer, None when the file could not be loaded
    source: str  # "zoo" or "file"
    card: list[str] = field(default_factory=list)
    error: str | None = None
    file: str | None = None  # the file name (no folder: server paths are not disclosed)
    _task: tuple | None = field(default=None, repr=False, compare=False)  # the cache of task()
    _probe: dict | None = field(default=None, repr=False, compare=False)  # the cache of probe()

    @property
    def simplex(self) -> bool:
        """Whether the knobs are weights that sum to one (the knob space's domain)."""
        return self.restorer.space.domain == "simplex" and self.restorer.num_params >= 2

    def default_p(self) -> list[float]:
        return [float(v) for v in self.restorer.space.default or []]

    def task(self) -> tuple[Any, list | None, str | None]:
        """``(task, cases, None)``: the task the model file names and its default evaluation
        cases (:func:`tunableconv.evaluation.task_of`), or ``(None, None, error line)`` for a
        file that names no task (or one that does not load). Built once, then cached."""
        if self._task is None:
            from ..evaluation import task_of

            info = self.restorer.info
            if not (info.info or {}).get("task"):
                self._task = (None, None, f"model {self.name!r} names no task in its file, so it has no "
                                          "degradation to apply: pick a model that does")
            else:
                try:
                    task = task_of(info)
                    cases = list(task.evaluation_cases())
                    if not cases:
                        raise InputError("its task has no evaluation cases")
                    self._task = (task, cases, None)
                except Exception as exc:  # a bad stored recipe must not break the model listing
                    msg = str(exc) if isinstance(exc, InputError) else f"its task does not load ({type(exc).__name__}: {exc})"
                    if not isinstance(exc, InputError):
                        log.warning("model %s: its task does not load", self.name, exc_info=True)
                    if info.path:  # no server paths in what clients see
                        msg = msg.replace(str(info.path), "its file")
                    self._task = (None, None, " ".join(f"model {self.name!r} cannot degrade images: {msg}".split()))
        return self._task

    def preview_side(self, preview_size: int) -> int:
        """Side of the live-preview region in input pixels: ``preview_size`` for a restoration
        model, ``preview_size / scale`` for a super-resolution one (its output is then shown at
        its real size, about ``preview_size`` pixels across)."""
        return max(16, preview_size // max(1, self.restorer.space.scale))

    def probe(self) -> dict:
        """Facts measured once on a tiny input: whether the model takes a knob map (and why
        not), and the largest activation per input pixel (for the memory a whole-image pass
        needs when the model cannot be tiled)."""
        if self._probe is None:
            r = self.restorer
            side = max(16, int(getattr(r.model, "size_multiple", 1) or 1))
            while side < 32:
                side *= 2
            x = torch.zeros(1, 3, side, side, device=r.device)
            largest = [x.numel()]

            def measure(module, args, out):
                if isinstance(out, torch.Tensor):
                    largest[0] = max(largest[0], out.numel())

            handles = [m.register_forward_hook(measure) for m in r.model.modules() if not list(m.children())]
            knob_maps, why = False, "the model has no knobs"
            _JOB.cancel = None
            try:
                with torch.no_grad():
                    if r.num_params:
                        p = torch.tensor(r.space.default or [0.0] * r.num_params, dtype=torch.float32)
                        r.model(x, p.to(r.device))
                        try:
                            r.model(x, p[:, None, None].expand(-1, side, side).to(r.device))
                            knob_maps, why = True, None
                        except Exception as exc:  # the architecture refuses per-pixel p
                            why = " ".join(str(exc).split()) or type(exc).__name__
                    else:
                        r.model(x)
            except Exception as exc:  # a model that fails on a tiny input: say so, serve it anyway
                log.warning("model %s: the probe on a %dx%d input failed", self.name, side, side, exc_info=True)
                self._probe = {"knob_maps": False, "bytes_per_pixel": None,
                               "knob_maps_error": f"the model failed on a tiny test input ({type(exc).__name__})"}
                return self._probe
            finally:
                for h in handles:
                    h.remove()
            # input, output and the largest activation live at once, and a few more of its size
            # (residuals, the tunable layers' weight sets): a rough estimate, 4 bytes a value
            self._probe = {"knob_maps": knob_maps, "knob_maps_error": why,
                           "bytes_per_pixel": round(4 * 4 * largest[0] / (side * side), 1)}
        return self._probe

    def usable(self) -> "ModelEntry":
        """Itself, or 400 for a model whose file could not be loaded."""
        if self.error is not None:
            raise _err(400, f"model {self.name!r} is unavailable: {self.error}")
        return self

    def describe(self) -> dict[str, Any]:
        """The model for ``/api/models``: its knob space (``knob_space``, any domain) plus the
        fields the bundled page reads (``main_slider``, ``simplex``, ``default_p``, ...)."""
        if self.error is not None:
            return {"name": self.name, "source": self.source, "file": self.file, "error": self.error,
                    "available": False}
        r = self.restorer
        info, space = r.info, r.space
        try:
            from ..commands.models import architecture_summary

            summary = architecture_summary(info.architecture, info.arguments)
        except Exception:  # the listing helper is optional here
            summary = info.architecture
        _, cases, task_error = self.task()
        probe = self.probe()
        return {
            "name": self.name,
            "source": self.source,
            "file": Path(info.path).name if info.path else None,
            "available": True,
            "error": None,
            "architecture": info.architecture,
            "summary": summary,
            "task": info.info.get("task"),
            "num_params": r.num_params,
            # each knob's icon (if any) is in knob_space only: a style model's thumbnails are ~4 kB each
            "knobs": [{"name": k.name, "description": k.description, "calibrated": k.calibration is not None}
                      for k in space.knobs],
            "knob_space": space.to_dict(),
            "domain": space.domain,
            "sliders": [{"name": sl.name, "description": sl.description, "formula": sl.formula(),
                         "calibrated": sl.calibration is not None} for sl in space.sliders],
            "calibrated": space.calibrated,
            "simplex": self.simplex,
            "default_p": self.default_p(),
            "upscale": space.scale,
            "scale": space.scale,
            "tiling_exact": space.tiling_exact,
            # a full-resolution pass of a model that cannot be tiled processes the whole image at
            # once: about bytes_per_pixel x width x height bytes of memory (a rough estimate)
            "bytes_per_pixel": probe["bytes_per_pixel"],
            "knob_maps": probe["knob_maps"],
            "knob_maps_error": probe["knob_maps_error"],
            "main_slider": space.main_slider.name if space.main_slider is not None else None,
            "card": self.card,
            # the cases POST /api/images/{id}/degrade accepts by label (the task's evaluation
            # cases), the middle one as the default; null when the file names no task
            "degrade_cases": [c.label for c in cases] if cases else None,
            "default_case": cases[len(cases) // 2].label if cases else None,
            "degrade_error": task_error,
        }


class ModelRegistry:
    """The served models, loaded once, by name. A file that cannot be loaded is kept as an
    entry with its error (listed, marked, refused), so the good models are still served."""

    def __init__(self, config: AppConfig) -> None:
        from .. import zoo
        from ..restore import Restorer

        def load(name: str, path: Path, source: str) -> ModelEntry:
            try:
                restorer = Restorer.load(str(path), config.device)
            except InputError as exc:
                if "device" in str(exc):  # the operator's --device, not the file: stop
                    raise
                log.warning("model %s is unavailable: %s", name, exc)
                return ModelEntry(name, None, source, [], " ".join(str(exc).split()), path.name)
            watch_cancellation(restorer.model)
            entry = ModelEntry(name, restorer, source, _card(path), None, path.name)
            entry.probe()  # once, at start-up
            return entry

        self.entries: dict[str, ModelEntry] = {}
        shipped = zoo.available() if config.include_zoo else {}
        for name, path in shipped.items():
            self.entries[name] = load(name, path, "zoo")
        given: list[str] = []  # served names of config.models, in order
        for spec in config.models:
            if spec in self.entries:  # a zoo name already loaded
                given.append(spec)
                continue
            path = zoo.resolve(spec)  # a zoo name or a server-side file given by the operator
            if spec in zoo.available():
                name, source = spec, "zoo"
            else:
                name, source, k = path.stem, "file", 2
                while name in self.entries:
                    name, k = f"{path.stem}-{k}", k + 1
            self.entries[name] = load(name, path, source)
            given.append(name)
        usable = [n for n, e in self.entries.items() if e.error is None]
        if not self.entries:
            raise InputError("no models to serve: no shipped models found; pass a model file with --model PATH")
        if not usable:
            first = next(iter(self.entries.values()))
            raise InputError(f"no usable model to serve: {first.error}")
        if config.default_model is not None:
            if config.default_model not in self.entries:
                raise InputError(f"default model {config.default_model!r} is not served ({', '.join(self.entries)})")
            if self.entries[config.default_model].error is not None:
                raise InputError(f"default model {config.default_model!r} is unavailable: "
                                 f"{self.entries[config.default_model].error}")
            self.default = config.default_model
        else:  # the operator's first usable model, else the first usable one; tunable ones first
            candidates = [n for n in given if n in usable] or usable
            tunable = [n for n in candidates if self.entries[n].restorer.num_params > 0]
            self.default = (tunable or candidates)[0]

    @property
    def broken(self) -> dict[str, str]:
        """name -> error line of the models that could not be loaded."""
        return {n: e.error for n, e in self.entries.items() if e.error is not None}

    def get(self, name: str) -> ModelEntry:
        entry = self.entries.get(name)
        if entry is None:
            raise _err(404, f"unknown model {name[:80]!r}; served models: {', '.join(self.entries)}")
        return entry.usable()


def _card(path: Path) -> list[str]:
    try:
        from ..commands.models import model_card

        return model_card(Path(path))[1]
    except Exception:
        return []


# ----------------------------------------------------------------------------------------
# jobs
# ----------------------------------------------------------------------------------------
class JobCancelled(Exception):
    """A job stopped because its request timed out or went away."""


#: The cancel event of the job running on this thread (set by :meth:`JobRunner.run`).
_JOB = threading.local()


def _stop_if_cancelled(module, args) -> None:
    """Forward pre-hook on every layer of a served model: a cancelled job (superseded by a
    newer request of its channel, timed out, or its client gone) stops at its next layer
    instead of finishing a pass nobody will look at."""
    cancel = getattr(_JOB, "cancel", None)
    if cancel is not None and cancel.is_set():
        raise JobCancelled()


def watch_cancellation(model: torch.nn.Module) -> None:
    """Install :func:`_stop_if_cancelled` on every module of ``model`` (once)."""
    if getattr(model, "_tunableconv_watched", False):
        return
    for module in model.modules():
        module.register_forward_pre_hook(_stop_if_cancelled)
    model._tunableconv_watched = True


class _CancellableModel:
    """Wraps a model so that a tiled job stops at its next tile once ``cancel`` is set."""

    def __init__(self, model: Callable, cancel: threading.Event) -> None:
        self.model, self.cancel = model, cancel

    def __call__(self, *args, **kwargs):
        if self.cancel.is_set():
            raise JobCancelled()
        return self.model(*args, **kwargs)

    def state_dict(self):
        return self.model.state_dict()


def _cancellable(restorer, cancel: threading.Event):
    return dataclasses.replace(restorer, model=_CancellableModel(restorer.model, cancel))


class JobRunner:
    """Runs CPU-heavy work off the event loop: ``max_jobs`` threads, a semaphore over running
    + queued jobs, and a deadline per job."""

    def __init__(self, max_jobs: int, max_queued: int, timeout: float) -> None:
        self.max_jobs, self.max_queued, self.timeout = max_jobs, max_queued, float(timeout)
        self._executor: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(max_jobs + max_queued)
        self._lock = threading.Lock()
        self.active = 0

    async def run(self, fn: Callable[[threading.Event], Any], cancel: threading.Event | None = None) -> Any:
        """``fn(cancel_event)`` in the pool; 503 when the queue is full or the deadline passes.

        ``cancel`` (default: a new event) is set on timeout or when the client goes away; the
        caller may set it too (a superseded request). While ``fn`` runs, the served models
        check it before each layer (:func:`watch_cancellation`)."""
        if not self._slots.acquire(blocking=False):
            raise _err(503, f"the server is busy ({self.max_jobs + self.max_queued} jobs running or queued): "
                            "try again in a moment")
        cancel = cancel if cancel is not None else threading.Event()

        def work():
            try:
                if cancel.is_set():
                    raise JobCancelled()
                with self._lock:
                    self.active += 1
                _JOB.cancel = cancel
                try:
                    return fn(cancel)
                finally:
                    _JOB.cancel = None
                    with self._lock:
                        self.active -= 1
            finally:
                self._slots.release()

        loop = asyncio.get_running_loop()
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=self.max_jobs, thread_name_prefix="tunableconv-job")
            executor = self._executor
        try:
            future = loop.run_in_executor(executor, work)
        except RuntimeError:  # the pool is shut down
            self._slots.release()
            raise _err(503, "the server is shutting down") from None
        future.add_done_callback(lambda f: f.cancelled() or f.exception())  # never "exception never retrieved"
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.timeout)
        except asyncio.TimeoutError:
            cancel.set()
            raise _err(503, f"the job did not finish within the server's request timeout of {self.timeout:g} s "
                            "(try a smaller image, or restart the server with a larger --timeout)") from None
        except asyncio.CancelledError:  # the client went away
            cancel.set()
            raise

    def shutdown(self) -> None:
        """Stop the pool once its jobs are done; a later job starts a new one."""
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)


# ----------------------------------------------------------------------------------------
# image encoding and knob handling
# ----------------------------------------------------------------------------------------
def encode_image(image: torch.Tensor, fmt: str = "png", compress_level: int = 1) -> bytes:
    """(3, H, W) float in [0, 1] (clipped) -> PNG or JPEG bytes."""
    from ..io import to_uint8_array

    array = to_uint8_array(image.clamp(0, 1))
    pil = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    buf = io.BytesIO()
    if fmt == "jpeg":
        pil.save(buf, format="JPEG", quality=92, subsampling=0)
    else:
        pil.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def _check_unit(value: float, what: str) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value)) or not 0 <= value <= 1:
        raise _err(422, f"{what} must be a number in [0, 1], got {value}")
    return float(value)


def resolve_knobs(entry: ModelEntry, p: list[float] | None = None, calibrated: bool = True, *,
                  knobs: dict[str, float] | None = None, slider: str | None = None, value: float | None = None,
                  strength: float | None = None):
    """The p tensor of one request (None for a model without knobs), through the model's knob
    space: raw ``p``, named ``knobs``, ``value`` on the slider named ``slider`` (no name: the
    main slider); nothing gives the default p. ``strength`` is the old name of ``value``
    without a ``slider``. 422 for bad values."""
    r = entry.restorer
    if strength is not None:
        if value is not None or slider is not None:
            raise _err(422, "give value (and slider) or strength, its old name, not both")
        value = strength
    if slider is not None and value is None:
        raise _err(422, "give the slider's position in value")
    given = [n for n, v in (("p", p), ("knobs", knobs), ("strength" if strength is not None else "value", value))
             if v is not None]
    if len(given) > 1:
        raise _err(422, f"give the knobs one way: {' or '.join(given)}, not both")
    if r.num_params == 0 and given:
        raise _err(422, f"model {entry.name!r} has no knobs: leave {given[0]} out")
    try:
        return r.params(p=p, calibrated=calibrated, knobs=knobs, slider=(slider, value) if value is not None else None)
    except InvalidParamsError as exc:
        text = str(exc)
        named = text.replace("this model", f"model {entry.name!r}", 1)
        raise _err(422, named if named != text else f"model {entry.name!r}: {text}") from None


def _p_header(p) -> str:
    return "" if p is None else ",".join(f"{float(v):.6f}" for v in p)


# ----------------------------------------------------------------------------------------
# request and response bodies
# ----------------------------------------------------------------------------------------
class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SampleRequest(_Body):
    name: str = Field(..., max_length=100, description="a name from GET /api/samples, e.g. 'astronaut'")


class DegradeRequest(_Body):
    model: str = Field(..., max_length=200, description="a model name from GET /api/models: its file's task degrades")
    levels: Optional[str] = Field(
        None, max_length=200,
        description="one case of the task's levels: a label from the model's degrade_cases, or levels text as "
                    "`tunableconv sweep --degrade` takes it; null: the model's default_case")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="seed of the degradation's random draws")


_Number = Annotated[float, Field(strict=True)]  # a JSON number (true/false and strings are refused)


class KnobBody(_Body):
    image_id: str = Field(..., max_length=100, description="id returned by an image upload")
    model: str = Field(..., max_length=200, description="a model name from GET /api/models")
    p: Optional[list[_Number]] = Field(None, max_length=64, description="raw knob values in [0, 1], one per knob")
    knobs: Optional[dict[str, _Number]] = Field(
        None, max_length=64, description="knob values by name (simplex: every knob, all but one (1 minus the others), or weights "
                    "summing to 1 (the others 0); cube: the others at their defaults)")
    slider: Optional[str] = Field(None, max_length=100, description="a slider name from the model's knob space")
    value: Optional[_Number] = Field(None, description="a slider's position in [0, 1]: the slider named in slider, "
                                                       "else the model's main_slider")
    strength: Optional[_Number] = Field(None, description="deprecated: the old name of value (the main slider)",
                                        deprecated=True)
    calibrated: bool = Field(True, description="pass slider and knob values through the model's calibrations")


class MapBody(KnobBody):
    knob_map: Optional[str] = Field(
        None, max_length=900_000,
        description="a knob map: a PNG (base64, a data: URL prefix allowed) whose grey levels set the target per "
                    "pixel, stretched over the region processed (same aspect ratio); the other knob fields give "
                    "the knobs the map does not set")
    knob_map_target: Optional[str] = Field(
        None, max_length=100,
        description="what a grey map sets: a slider or knob name (default: the model's main slider); "
                    "a colour map gives one knob per channel")


class RestoreRequest(MapBody):
    region: Literal["preview", "full"] = Field("preview", description="the live-preview region or the full image")
    format: Literal["png", "jpeg"] = Field("png", description="image format of the response")
    channel: Optional[str] = Field(
        None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$",
        description="a name the client gives to a stream of requests (e.g. one slider of one page): a request "
                    "with a higher seq on the same channel cancels the older ones, which then answer 204 "
                    "(superseded) without a body")
    seq: Optional[int] = Field(None, ge=0, le=2**53, description="the request's number in its channel (increasing)")


class DownloadRequest(MapBody):
    pass


class AnchorsRequest(_Body):
    image_id: str = Field(..., max_length=100)
    model: str = Field(..., max_length=200)
    control: Optional[str] = Field(None, max_length=100,
                                   description="a slider name, or 'knobs' (default: the main slider, else the knobs)")
    calibrated: bool = Field(True, description="anchors in calibrated slider/knob positions")
    steps: Optional[int] = Field(None, ge=2, le=9, description="anchors per axis (default: 5 on a line, 3 otherwise)")


class SweepRequest(_Body):
    image_id: str = Field(..., max_length=100)
    model: str = Field(..., max_length=200)
    steps: int = Field(5, ge=2, description="number of values from 0 to 1 (at most the server's max_sweep_steps)")
    slider: Optional[str] = Field(None, max_length=100, description="the slider to sweep (default: the model's first)")
    knob: Optional[str] = Field(None, max_length=100, description="the knob to sweep, by name")
    knob_index: Optional[int] = Field(None, ge=0, description="the knob to sweep, by position")
    base: Optional[list[_Number]] = Field(None, max_length=64,
                                          description="values of the other knobs in a knob sweep (a full p)")
    grid: Optional[list[str]] = Field(None, min_length=2, max_length=2,
                                      description="two knob names of a cube model: an image grid instead of a strip")
    calibrated: bool = True
    with_input: bool = Field(True, description="the input as the first panel")


class PreviewBox(BaseModel):
    top: int
    left: int
    width: int
    height: int
    cropped: bool


class ImageInfo(BaseModel):
    id: str
    name: str
    source: str
    parent: Optional[str] = None
    width: int
    height: int
    degradation: Optional[dict] = None
    preview: PreviewBox


class ErrorBody(BaseModel):
    detail: str


_ERRORS = {code: {"model": ErrorBody} for code in (400, 404, 413, 415, 422, 503)}
_PNG = {"content": {"image/png": {}}, "description": "a PNG image"}


# ----------------------------------------------------------------------------------------
# middleware
# ----------------------------------------------------------------------------------------
class _Limits:
    """Pure ASGI middleware: body size limits (413 from the Content-Length header or while
    the body streams in) and the security headers of every response."""

    UPLOAD_SLACK = 64 * 1024  # multipart framing around the file
    OTHER_LIMIT = 1 * MB

    def __init__(self, app, max_upload_bytes: int) -> None:
        self.app, self.max_upload_bytes = app, max_upload_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        is_upload = scope.get("path") == "/api/images"
        limit = self.max_upload_bytes + self.UPLOAD_SLACK if is_upload else self.OTHER_LIMIT
        what = (f"upload too large: the limit is {self.max_upload_bytes / MB:g} MB" if is_upload
                else f"request body too large (limit {self.OTHER_LIMIT // 1024} kB)")

        async def send_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer"), (b"cross-origin-resource-policy", b"same-origin")]
                message = {**message, "headers": headers}
            await send(message)

        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > limit
            except ValueError:
                too_large = False
            if too_large:
                response = JSONResponse({"detail": what}, status_code=413, headers={"connection": "close"})
                return await response(scope, receive, send_headers)

        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # raised inside the route's body parsing: FastAPI passes HTTPException on
                    raise _err(413, what)
            return message

        await self.app(scope, limited_receive, send_headers)


# ----------------------------------------------------------------------------------------
# the application
# ----------------------------------------------------------------------------------------
def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors():
        if e.get("type") == "json_invalid":
            return "invalid request: the body is not valid JSON"
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path", "form"))
        msg = str(e.get("msg", "invalid value"))
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "invalid request: " + "; ".join(parts)


def create_app(config: AppConfig | None = None) -> FastAPI:
    """The web app: loads the models (once) and returns the FastAPI application.

    Raises:
        InputError: a model cannot be loaded, or no model to serve.
    """
    config = config or AppConfig()
    registry = ModelRegistry(config)
    store = ImageStore(config.max_images, config.max_store_bytes)
    anchor_cache = AnchorCache(max_sets=4 * config.max_images, max_bytes=config.max_store_bytes // 2)
    jobs = JobRunner(config.max_jobs, config.max_queued, config.request_timeout)

    app = FastAPI(
        title="tunableconv web app",
        version=__version__,
        description=("Live tunable image restoration: upload an image, move the knobs, download the result. "
                     "Errors are JSON {\"detail\": \"...\"} with a 4xx status."),
        docs_url=None, redoc_url=None, openapi_url="/openapi.json", lifespan=_lifespan(jobs),
    )
    app.state.config, app.state.registry, app.state.store, app.state.jobs = config, registry, store, jobs
    app.add_middleware(_Limits, max_upload_bytes=config.max_upload_bytes)

    # --- errors: always JSON {"detail": "..."} -------------------------------------------
    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _validation_detail(exc)}, status_code=422)

    @app.exception_handler(InvalidParamsError)
    async def _params(request: Request, exc: InvalidParamsError):
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=422)

    @app.exception_handler(TunableconvError)
    async def _user(request: Request, exc: TunableconvError):
        return JSONResponse({"detail": " ".join(str(exc).split())}, status_code=400)

    @app.exception_handler(JobCancelled)
    async def _cancelled(request: Request, exc: JobCancelled):
        return JSONResponse({"detail": "the job was cancelled"}, status_code=503)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception):
        log.exception("internal error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error ({type(exc).__name__}); see the server log"}, status_code=500)

    # --- page, static files, offline docs ------------------------------------------------
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index():
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return FileResponse(STATIC_DIR / "docs.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon():
        return FileResponse(STATIC_DIR / "favicon.svg", media_type="image/svg+xml")

    # --- information ---------------------------------------------------------------------
    @app.get("/api/health", tags=["info"], summary="Liveness and version")
    async def health():
        return {"status": "ok", "version": __version__, "images": len(store), "image_bytes": store.nbytes(),
                "jobs_running": jobs.active}

    @app.get("/api/config", tags=["info"], summary="The server's limits")
    async def get_config():
        return config.public()

    @app.get("/api/models", tags=["info"], summary="The served models and their knobs")
    async def list_models():
        return {"default": registry.default, "models": [e.describe() for e in registry.entries.values()]}

    @app.get("/api/samples", tags=["info"], summary="The bundled sample photos")
    async def list_samples():
        from ..data import BUNDLED_PHOTOS, bundled_photo_paths

        present = {p.name for p in bundled_photo_paths()}
        return {"samples": [{"name": f.rsplit(".", 1)[0], "file": f, "available": f in present} for f in BUNDLED_PHOTOS]}

    # --- images --------------------------------------------------------------------------
    @app.post("/api/images", tags=["images"], status_code=201, response_model=ImageInfo,
              summary="Upload an image (multipart field 'file')", responses=_ERRORS)
    async def upload_image(
        file: Annotated[UploadFile, File(description="PNG, JPEG, TIFF, BMP, WebP, GIF or PPM")],
        max_side: Annotated[Optional[int], Form(ge=16, le=100_000,
                                                description="shrink so the longer side is at most this")] = None,
    ):
        filename = Path(file.filename or "upload").name[:100] or "upload"

        def decode(cancel):
            from ..io import read_image

            # read in the job: queued uploads stay in their spooled temporary files
            file.file.seek(0)
            data = file.file.read(config.max_upload_bytes + 1)
            if len(data) > config.max_upload_bytes:
                raise _err(413, f"upload too large: the limit is {config.max_upload_bytes / MB:g} MB")
            try:
                image = read_image(data, max_pixels=config.max_pixels)
            except InputError as exc:
                raise _image_error(exc, filename) from None
            image = _shrink(image, max_side)
            return store.put(image, name=filename, source="upload")

        try:
            item = await jobs.run(decode)
        finally:
            await file.close()
        return item.describe(config.preview_size)

    @app.post("/api/images/from-sample", tags=["images"], status_code=201, response_model=ImageInfo,
              summary="Use a bundled sample photo", responses=_ERRORS)
    async def image_from_sample(body: SampleRequest):
        from ..data import BUNDLED_PHOTOS

        names = {f.rsplit(".", 1)[0]: f for f in BUNDLED_PHOTOS}
        names.update({f: f for f in BUNDLED_PHOTOS})
        file = names.get(body.name)
        if file is None:
            known = ", ".join(n.rsplit(".", 1)[0] for n in BUNDLED_PHOTOS)
            raise _err(404, f"unknown sample {body.name[:80]!r}; samples: {known}")

        def load(cancel):
            from ..data import bundled_sample_image

            try:
                image = bundled_sample_image(file)
            except InputError as exc:
                raise _err(404, str(exc)) from None
            return store.put(image, name=file.rsplit(".", 1)[0], source="sample")

        item = await jobs.run(load)
        return item.describe(config.preview_size)

    @app.post("/api/images/{image_id}/degrade", tags=["images"], status_code=201, response_model=ImageInfo,
              summary="A copy degraded as the model's task does in evaluation, for demonstrations",
              responses=_ERRORS)
    async def degrade_image(image_id: str, body: DegradeRequest):
        """The image degraded by the task the model file names, at one of its evaluation cases
        (``levels``: a label of the model's ``degrade_cases`` or levels text; null: its
        ``default_case``), random draws seeded by ``seed``; as ``tunableconv sweep --degrade``.
        The result may have another size than the original (a super-resolution task's input is
        the downscaled image)."""
        entry = registry.get(body.model)
        item = store.get(image_id)
        case = degradation_case(entry, body.levels)
        task = entry.task()[0]

        def degrade(cancel):
            try:
                sample = task.degrade_case(item.tensor(), case, torch.Generator().manual_seed(int(body.seed)))
            except InputError as exc:
                raise _err(422, f"model {entry.name!r} cannot degrade this {item.width}x{item.height} image "
                                f"at {case.label}: {exc}") from None
            x = sample.input
            if x.dim() == 4:
                x = x[0]
            h, w = x.shape[-2:]
            if h == 0 or w == 0:
                raise _err(422, f"degrading this {item.width}x{item.height} image at {case.label} leaves no pixels: "
                                "use a larger image")
            if h * w > config.max_pixels:
                raise _err(413, f"the degraded image ({w}x{h}) exceeds the server's {config.max_pixels} pixels")
            return store.put(x, name=f"{item.name} + {case.label}", source="degraded", parent=item.id,
                             degradation={"model": entry.name, "case": case.label, "levels": dict(case.levels),
                                          "seed": body.seed})

        new = await jobs.run(degrade)
        return new.describe(config.preview_size)

    @app.get("/api/images/{image_id}", tags=["images"], response_model=ImageInfo, summary="Image info",
             responses=_ERRORS)
    async def image_info(image_id: str):
        return store.get(image_id).describe(config.preview_size)

    @app.get("/api/images/{image_id}/image.png", tags=["images"], summary="The stored image (clipped to [0, 1])",
             response_class=Response, responses={200: _PNG, **_ERRORS})
    async def image_png(image_id: str, region: Literal["preview", "full"] = Query("preview"),
                        upscale: int = Query(1, ge=1, le=8, description="bicubic upscaling factor (MATLAB's "
                                             "imresize): the floor to show beside a super-resolution model's output")):
        item = store.get(image_id)

        def work(cancel):
            # a super-resolution model's preview region is preview_size / scale (see ModelEntry.preview_side)
            image = item.region(region, max(16, config.preview_size // upscale))
            if upscale > 1:
                from ..data.degradations import imresize

                if image.shape[-2] * image.shape[-1] * upscale * upscale > config.max_pixels:
                    raise _err(413, f"a x{upscale} upscale of this region exceeds the server's {config.max_pixels} pixels")
                image = imresize(image, scale=float(upscale)).clamp(0, 1)
            return encode_image(image, "png", 1 if region == "preview" else 4)

        data = await jobs.run(work)
        return Response(data, media_type="image/png", headers={"cache-control": "private, max-age=3600"})

    @app.delete("/api/images/{image_id}", tags=["images"], status_code=204, summary="Forget an image",
                responses=_ERRORS)
    async def delete_image(image_id: str):
        store.get(image_id)
        store.delete(image_id)
        return Response(status_code=204)

    # --- anchors: instant previews and the contact sheet ------------------------------------
    @app.post("/api/anchors", tags=["restore"], summary="Outputs at a control's anchor settings (instant previews)",
              responses=_ERRORS)
    async def anchors(body: AnchorsRequest):
        """The model's outputs on the preview region at the anchor settings of one control
        (:mod:`tunableconv.preview`): a line of slider positions, a grid over a cube model's
        knobs or a triangle over a 3-knob simplex. The page blends them while a control moves
        and shows them as the contact sheet; each tile is ``GET tiles[i]`` (PNG). Computed once
        per image, model and control (cached; a model with a p-independent trunk runs it once)."""
        from ..preview import anchor_set
        from ..sweep import settings_outputs

        entry = registry.get(body.model)
        item = store.get(body.image_id)
        try:
            aset = anchor_set(entry.restorer.space, body.control, calibrated=body.calibrated, steps=body.steps)
        except InvalidParamsError as exc:
            raise _err(422, f"model {entry.name!r}: {' '.join(str(exc).split())}") from None
        side = entry.preview_side(config.preview_size)
        key = (item.id, entry.name, aset.control, aset.calibrated, len(aset.values))
        cached = anchor_cache.find(key)
        if cached is None:
            def work(cancel):
                image = _layout(item.region("preview", side), config.channels_last)
                start = time.perf_counter()
                outputs = settings_outputs(entry.restorer, image, aset.ps)
                compute = time.perf_counter() - start
                tiles = [encode_image(o, "png", 1) for o in outputs]
                return tiles, compute, tuple(outputs[0].shape[-2:])

            tiles, compute, (oh, ow) = await jobs.run(work)
            cached = anchor_cache.put(key, tiles, {"compute_ms": round(compute * 1000, 1), "width": ow, "height": oh})
        anchor_id, tiles, meta = cached
        top, left, h, w = item.preview_box(side)
        return {**aset.to_dict(), **meta, "id": anchor_id, "model": entry.name, "image_id": item.id,
                "region": {"top": top, "left": left, "height": h, "width": w},
                "tiles": [f"/api/anchors/{anchor_id}/{i}.png" for i in range(len(tiles))]}

    @app.get("/api/anchors/{anchor_id}/{index}.png", tags=["restore"], summary="One anchor output (PNG)",
             response_class=Response, responses={200: _PNG, **_ERRORS})
    async def anchor_tile(anchor_id: str, index: int):
        tiles = anchor_cache.tiles(anchor_id)
        if not 0 <= index < len(tiles):
            raise _err(404, f"anchor index {index} out of range: this set has {len(tiles)}")
        return Response(tiles[index], media_type="image/png", headers={"cache-control": "private, max-age=3600"})

    # --- restoration ---------------------------------------------------------------------
    channels: OrderedDict[str, tuple[int, threading.Event]] = OrderedDict()  # channel -> (latest seq, its cancel)
    channels_lock = threading.Lock()

    def claim(channel: str | None, seq: int | None) -> threading.Event | None:
        """The cancel event of a request on ``channel``: cancels the channel's older requests;
        None for a request that is already superseded (or without a channel: a fresh event)."""
        if channel is None:
            return threading.Event()
        if seq is None:
            raise _err(422, "a request on a channel needs its seq (an increasing number)")
        with channels_lock:
            latest = channels.get(channel)
            if latest is not None and seq <= latest[0]:
                return None
            if latest is not None:
                latest[1].set()  # the older request stops at its next layer (or never starts)
            event = threading.Event()
            channels[channel] = (seq, event)
            channels.move_to_end(channel)
            while len(channels) > 1024:
                channels.popitem(last=False)
        return event

    def superseded(channel: str | None, seq: int | None) -> bool:
        with channels_lock:
            latest = channels.get(channel) if channel is not None else None
            return latest is not None and seq is not None and latest[0] > seq

    def knob_map_of(entry: ModelEntry, body: MapBody, p, size: tuple[int, int]):
        """The request's knob map as ``(P, H, W)`` for a region of ``size`` (None without one)."""
        if body.knob_map is None:
            if body.knob_map_target is not None:
                raise _err(422, "knob_map_target without a knob_map")
            return None
        import base64
        import binascii

        from ..knob_maps import knob_map_params, read_knob_map

        probe = entry.probe()
        if not probe["knob_maps"]:
            raise _err(422, f"model {entry.name!r} does not take knob maps: {probe['knob_maps_error']}")
        text = body.knob_map
        if text.startswith("data:"):
            text = text.partition(",")[2]
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise _err(422, "knob_map must be a base64-encoded PNG") from None
        try:
            values = read_knob_map(data, max_pixels=config.max_pixels)
            return knob_map_params(entry.restorer.space, values, size, target=body.knob_map_target,
                                   base=p, calibrated=body.calibrated)
        except TunableconvError as exc:
            raise _err(422, f"knob_map: {' '.join(str(exc).split())}") from None

    async def _restore(body: MapBody, region: str, fmt: str, compress_level: int,
                       channel: str | None = None, seq: int | None = None):
        entry = registry.get(body.model)
        item = store.get(body.image_id)
        p = resolve_knobs(entry, body.p, body.calibrated, knobs=body.knobs, slider=body.slider,
                          value=body.value, strength=body.__dict__["strength"])  # no DeprecationWarning on read
        side = entry.preview_side(config.preview_size)
        top, left, h, w = item.preview_box(side) if region == "preview" else (0, 0, item.height, item.width)
        if body.knob_map is None and body.knob_map_target is not None:
            raise _err(422, "knob_map_target without a knob_map")
        # full resolution in tiles (bounded memory) when tiling is exact for the model; a model
        # with global operations runs on the whole image (bounded by max_pixels)
        exact = entry.restorer.space.tiling_exact
        cancel = claim(channel, seq)
        if cancel is None:
            return None, {"x-tunableconv-superseded": "1"}, item

        def work(cancel):
            # the map is decoded and the pixels expanded here, in the job: the event loop stays
            # free and queued requests hold no image memory
            p_map = knob_map_of(entry, body, p, (h, w))
            image = _layout(item.region(region, side), config.channels_last)
            # previews are small: one call
            tile = config.tile if exact and region == "full" and max(image.shape[-2:]) > config.tile else None
            start = time.perf_counter()
            restorer = _cancellable(entry.restorer, cancel)
            out = restorer(image, p if p_map is None else p_map, tile=tile, overlap=config.tile_overlap)
            compute = time.perf_counter() - start
            return encode_image(out, fmt, compress_level), compute, tuple(out.shape[-2:]), p_map is not None

        start = time.perf_counter()
        try:
            data, compute, (oh, ow), mapped = await jobs.run(work, cancel)
        except JobCancelled:
            if superseded(channel, seq):
                return None, {"x-tunableconv-superseded": "1"}, item
            raise
        headers = {
            "x-tunableconv-p": _p_header(p),
            "x-tunableconv-compute-ms": f"{compute * 1000:.1f}",
            "x-tunableconv-total-ms": f"{(time.perf_counter() - start) * 1000:.1f}",
            "x-tunableconv-size": f"{ow}x{oh}",
            "x-tunableconv-region": f"{top},{left},{h},{w}",
            "cache-control": "no-store",
        }
        if mapped:
            headers["x-tunableconv-knob-map"] = "1"
        return data, headers, item

    @app.post("/api/restore", tags=["restore"], summary="Run a model with the given knobs",
              response_class=Response, responses={200: {"content": {"image/png": {}, "image/jpeg": {}},
                                                        "description": "the result"}, **_ERRORS})
    async def restore(body: RestoreRequest):
        """The result as PNG (or JPEG). Headers: ``X-Tunableconv-P`` (the raw p used, after the
        calibration; with a knob map, the p of the knobs the map does not set),
        ``X-Tunableconv-Compute-Ms``, ``X-Tunableconv-Size``, ``X-Tunableconv-Region`` (top,
        left, height, width of the input region processed). With ``channel`` and ``seq``, a
        request superseded by a newer one of its channel answers 204 with no body."""
        data, headers, _ = await _restore(body, body.region, body.format, 1, body.channel, body.seq)
        if data is None:
            return Response(status_code=204, headers=headers)
        return Response(data, media_type=f"image/{body.format}", headers=headers)

    @app.post("/api/download", tags=["restore"], summary="The result at full resolution (tiled), as a PNG file",
              response_class=Response, responses={200: _PNG, **_ERRORS})
    async def download(body: DownloadRequest):
        data, headers, item = await _restore(body, "full", "png", 4)
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", item.name.rsplit(".", 1)[0])[:60] or "image"
        knobs = headers["x-tunableconv-p"].replace(",", "_")
        model = re.sub(r"[^A-Za-z0-9._-]+", "_", body.model)[:40]
        headers["content-disposition"] = f'attachment; filename="{stem}-{model}{("-" + knobs) if knobs else ""}.png"'
        return Response(data, media_type="image/png", headers=headers)

    @app.post("/api/sweep", tags=["restore"], summary="A labelled strip of outputs over a knob's range",
              response_class=Response, responses={200: _PNG, **_ERRORS})
    async def sweep(body: SweepRequest):
        """Sweeps a slider (``slider``; default the model's first) or a knob (``knob`` /
        ``knob_index``, the others at ``base`` or their defaults) from 0 to 1 on the preview
        region, or with ``grid`` two knobs of a cube model as an image grid; see
        :mod:`tunableconv.sweep`."""
        from ..sweep import grid_params, make_grid, make_strip, sweep_labels, sweep_params, sweep_values

        entry = registry.get(body.model)
        item = store.get(body.image_id)
        if body.steps > config.max_sweep_steps:
            raise _err(422, f"steps must be in [2, {config.max_sweep_steps}], got {body.steps}")
        if body.base is not None:
            for i, v in enumerate(body.base):
                _check_unit(v, f"base[{i}]")
        r = entry.restorer
        values = sweep_values(body.steps, max_steps=config.max_sweep_steps)
        choice = {"slider": body.slider, "knob": body.knob, "knob_index": body.knob_index}
        # validates the choice and base before any work (InvalidParamsError -> 422)
        if body.grid is not None:
            if any(v is not None for v in (*choice.values(), body.base)):
                raise _err(422, "grid chooses the two knobs itself: leave slider, knob, knob_index and base out")
            grid_params(r, body.grid, values, calibrated=body.calibrated)
            labels: list[str] = []
        else:
            sweep_params(r, values, base=body.base, calibrated=body.calibrated, **choice)
            labels = sweep_labels(r, values, calibrated=body.calibrated, **choice)

        def work(cancel):
            from ..sweep import grid_outputs, sweep_outputs

            # the live view's region: preview_size / scale for a super-resolution model
            image = item.region("preview", entry.preview_side(config.preview_size))
            restorer = _cancellable(r, cancel)
            if body.grid is not None:
                rows = grid_outputs(restorer, _layout(image, config.channels_last), body.grid, values,
                                    calibrated=body.calibrated)
                picture = make_grid(rows, [f"{body.grid[0]}={v:.2f}" for v in values],
                                    [f"{body.grid[1]}={v:.2f}" for v in values])
            else:
                outputs = sweep_outputs(restorer, _layout(image, config.channels_last), values, base=body.base,
                                        calibrated=body.calibrated, **choice)
                panels, names = list(outputs), list(labels)
                if body.with_input:
                    shown = image.clamp(0, 1)
                    if shown.shape[-2:] != outputs[0].shape[-2:]:
                        shown = torch.nn.functional.interpolate(shown[None], size=tuple(outputs[0].shape[-2:]),
                                                                mode="nearest")[0]
                    panels.insert(0, shown)
                    names.insert(0, "input")
                picture = make_strip(panels, names)
            buf = io.BytesIO()
            picture.save(buf, format="PNG", compress_level=1)
            return buf.getvalue()

        data = await jobs.run(work)
        return Response(data, media_type="image/png", headers={"cache-control": "no-store"})

    return app


# ----------------------------------------------------------------------------------------
# anchors (instant previews)
# ----------------------------------------------------------------------------------------
class AnchorCache:
    """The encoded anchor outputs of (image, model, control) sets, LRU, bounded in sets and
    bytes (thread-safe). Sets are found by their key or by a random id (the tiles' URLs)."""

    def __init__(self, max_sets: int, max_bytes: int) -> None:
        self.max_sets, self.max_bytes = max_sets, max_bytes
        self._items: OrderedDict[str, tuple[tuple, list[bytes], dict]] = OrderedDict()
        self._by_key: dict[tuple, str] = {}
        self._lock = threading.Lock()

    def find(self, key: tuple) -> tuple[str, list[bytes], dict] | None:
        with self._lock:
            anchor_id = self._by_key.get(key)
            if anchor_id is None:
                return None
            self._items.move_to_end(anchor_id)
            _, tiles, meta = self._items[anchor_id]
            return anchor_id, tiles, meta

    def put(self, key: tuple, tiles: list[bytes], meta: dict) -> tuple[str, list[bytes], dict]:
        anchor_id = secrets.token_urlsafe(12)
        with self._lock:
            old = self._by_key.pop(key, None)
            if old is not None:
                self._items.pop(old, None)
            self._items[anchor_id] = (key, tiles, meta)
            self._by_key[key] = anchor_id
            while len(self._items) > 1 and (len(self._items) > self.max_sets or self._bytes() > self.max_bytes):
                _, (k, _, _) = self._items.popitem(last=False)
                self._by_key.pop(k, None)
        return anchor_id, tiles, meta

    def tiles(self, anchor_id: str) -> list[bytes]:
        with self._lock:
            item = self._items.get(anchor_id) if _ID_RE.match(anchor_id or "") else None
        if item is None:
            raise _err(404, f"unknown anchor set {anchor_id[:80]!r}: ask POST /api/anchors again")
        return item[1]

    def _bytes(self) -> int:
        return sum(len(t) for _, tiles, _ in self._items.values() for t in tiles)


def degradation_case(entry: ModelEntry, text: str | None):
    """The one evaluation case of the model's task that ``text`` names: a label of its
    default cases, else levels as ``tunableconv sweep --degrade`` parses them; ``None``: the
    middle default case. 422 (one line) for a file without a task, bad levels, or not one case."""
    from ..evaluation import parse_levels

    task, cases, error = entry.task()
    if task is None:
        raise _err(422, error)
    if text is None:
        return cases[len(cases) // 2]
    text = text.strip()
    by_label = {c.label: c for c in cases}
    if text in by_label:
        return by_label[text]
    labels = ", ".join(by_label)
    try:
        levels = parse_levels(text, "levels")
        found = task.evaluation_cases(levels)
    except (InputError, ValueError, TypeError) as exc:
        msg = str(exc)
        raise _err(422, (msg if msg.startswith("levels") else f"levels: {msg}") +
                   f" (the cases of model {entry.name!r}: {labels})") from None
    if len(found) != 1:
        raise _err(422, f"levels: give one case of the task's levels, got {len(found)} in {text!r} "
                        f"(the cases of model {entry.name!r}: {labels})")
    return found[0]


def _layout(image: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """The model input for a ``(3, H, W)`` image: itself, or with ``channels_last`` the
    ``(1, 3, H, W)`` batch in channels-last memory format (which :class:`Restorer` accepts)."""
    if not channels_last:
        return image
    return image.unsqueeze(0).contiguous(memory_format=torch.channels_last)


def _lifespan(jobs: JobRunner):
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        jobs.shutdown()

    return lifespan


def _shrink(image: torch.Tensor, max_side: int | None) -> torch.Tensor:
    """Downscale (antialiased) so that the longer side is at most ``max_side``."""
    if not max_side:
        return image
    h, w = image.shape[-2:]
    scale = max_side / max(h, w)
    if scale >= 1:
        return image
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    out = torch.nn.functional.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp(0, 1)
