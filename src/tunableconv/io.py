"""Safe image reading and writing for the command line, the web app and the datasets.

Reading (:func:`read_image`) always gives a float32 tensor ``(3, H, W)`` with values in [0, 1]:

* 8-bit images are divided by 255, 16-bit images (16-bit PNG and TIFF, grey or colour) by
  65535, so no precision is lost. Pillow itself decodes 16-bit colour images to 8 bits; the
  low bytes are recovered with a second decoding pass of the same file. (16-bit grey+alpha
  PNGs, rare, are read with 8-bit precision.)
* Grey images (modes ``1``, ``L``, ``I;16``, ``I``) are repeated to three channels. Mode ``I``
  (32-bit integers) must hold values in 0..65535 and is read as 16-bit; mode ``F`` (32-bit
  float TIFF) must hold values in [0, 1].
* Transparency (RGBA, LA, palette images with a transparent colour) is **composited onto a
  white background**: ``colour * alpha + (1 - alpha)``. Fully transparent pixels become white.
* CMYK, YCbCr, HSV and LAB are converted to RGB with Pillow's conversions. Embedded ICC
  profiles are ignored: pixel values are used as they are (read as sRGB).
* The EXIF orientation tag is applied, so the tensor is upright as a photo viewer shows it.
* Animated and multi-page files (GIF, WebP, APNG, TIFF) give their first frame, with an
  :class:`~tunableconv.errors.InputWarning` saying so (one ``warning:`` line in the CLI).

Safety: the whole file is decoded at once (a truncated or corrupt file is an error, never a
partly grey image), Pillow's ``LOAD_TRUNCATED_IMAGES`` is switched off while decoding, only
the formats in :data:`READ_FORMATS` are opened, and images with more than ``max_pixels``
pixels are refused before they are decoded (decompression-bomb protection; Pillow's own
limit is set to ``max_pixels`` for the call). Pillow's limits are process-wide settings, so
decoding holds a module lock: images are decoded one at a time across threads.

Every problem a user can cause raises :class:`tunableconv.errors.InputError` with a one-line
message naming the file.

Writing (:func:`write_image`) rounds to 8 bits and is atomic: the image is written to a
temporary file in the destination folder and moved into place with :func:`os.replace`, so a
failed write never leaves a partial output (and never damages an existing file).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import secrets
import stat
import sys
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch
from PIL import Image, ImageFile, UnidentifiedImageError, features

from .errors import InputError, InputWarning

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "READ_FORMATS",
    "WRITE_FORMATS",
    "ImageSource",
    "image_size",
    "list_images",
    "read_image",
    "write_image",
    "to_uint8_array",
    "from_uint8_array",
    "icon_data_uri",
    "icon_image",
]

#: Default refusal limit of :func:`read_image`: 64 megapixels.
DEFAULT_MAX_PIXELS = 64_000_000

#: File extensions that :func:`list_images` picks up (compared case-insensitively).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")

#: Pillow formats that :func:`read_image` opens; anything else is "not an image".
READ_FORMATS = ("PNG", "JPEG", "MPO", "TIFF", "BMP", "WEBP", "GIF", "PPM")

#: Output extension -> Pillow format for :func:`write_image`.
WRITE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".bmp": "BMP",
}

#: How to raise the pixel limit, at the end of a "too many pixels" message.
MAX_PIXELS_HINT = "(raise the limit with --max-pixels N, or max_pixels=N in Python; 0 / None: no limit, trusted files only)"

#: The message for a zero-byte image, the same in the command line and the web app.
EMPTY_FILE = "the file is empty (0 bytes), not an image"

#: What :func:`read_image` accepts: a path, the file's bytes, or an open binary file.
ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO]

_PILLOW_LOCK = threading.RLock()
_ORIENTATION_TAG = 0x0112
# byte-order swaps that turn Pillow's "keep the high byte" unpackers into "keep the low byte"
_LOW_BYTE_RAWMODE = {"16B": "16L", "16L": "16B", "16N": "16B" if sys.byteorder == "little" else "16L"}
_SIXTEEN_BIT_COLOUR = ("RGB", "RGBA")


# ----------------------------------------------------------------------------------------
# small helpers
# ----------------------------------------------------------------------------------------
def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__


def _dequantize(values: torch.Tensor, max_value: int) -> torch.Tensor:
    """Integers 0..max_value -> float32 in [0, 1]. The single place that does this division, so
    that re-quantised caches (see :mod:`tunableconv.data.datasets`) give identical floats."""
    return values.to(torch.float32) / max_value


def _too_many_pixels(label: str, pixels: int, max_pixels: int, size: tuple[int, int] | None = None) -> InputError:
    dims = f"{size[0]}x{size[1]} = " if size else ""
    return InputError(
        f"{label}: image has {dims}{pixels:,} pixels, more than the limit of {max_pixels:,} "
        f"{MAX_PIXELS_HINT}"
    )


@contextlib.contextmanager
def _pillow_guard(max_pixels: int | None):
    """Pillow's pixel limit set to ``max_pixels`` and truncated-image loading switched off,
    for the duration of one decode (process-wide Pillow settings, hence the lock)."""
    with _PILLOW_LOCK, warnings.catch_warnings():
        # between 1x and 2x the limit Pillow only warns; our own check right after opening
        # refuses those images with a clearer message
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        old_limit, old_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS = max_pixels
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = old_limit
            ImageFile.LOAD_TRUNCATED_IMAGES = old_truncated


def _source(source: ImageSource) -> tuple[str | io.BytesIO, str]:
    """(something Pillow can open, a label for messages). Checks that a path is a file."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        if not len(source):
            raise InputError(f"<image bytes>: {EMPTY_FILE}")
        return io.BytesIO(bytes(source)), "<image bytes>"
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        problem = path_problem(path)
        if problem == "not found":
            raise InputError(f"image file not found: {path}")
        if problem:
            raise InputError(f"{path} {problem}".replace("not a file", "not an image file"))
        if os.path.getsize(path) == 0:
            raise InputError(f"{path}: {EMPTY_FILE}")
        return str(path), str(path)
    if hasattr(source, "read"):
        label = str(getattr(source, "name", "<image stream>"))
        try:
            data = source.read()
        except OSError as err:
            raise InputError(f"{label}: cannot read ({_one_line(err)})") from None
        if not isinstance(data, (bytes, bytearray)):
            raise InputError(f"{label}: expected a binary file object, got text")
        if not data:
            raise InputError(f"{label}: {EMPTY_FILE}")
        return io.BytesIO(bytes(data)), label
    raise InputError(f"cannot read an image from a {type(source).__name__}; pass a path, bytes or a binary file")


def path_problem(path: str | os.PathLike) -> str | None:
    """Why ``path`` cannot be read as a file, in a few words (None: a regular file).

    Tells apart a missing file, a symbolic link loop, a broken symbolic link, a folder and
    other non-regular files (a FIFO would block the reader forever, a device never ends)."""
    path = Path(path)
    try:
        st = os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if path.is_symlink():
            return f"is a broken symbolic link (to {os.readlink(path)}, which does not exist)"
        if isinstance(err, FileNotFoundError):
            return "not found"
        return f"cannot be read ({err.strerror or _one_line(err)})"
    if stat.S_ISDIR(st.st_mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else (
            "a socket" if stat.S_ISSOCK(st.st_mode) else "a device")
        return f"is {kind}, not a regular file"
    return None


def check_output_path(path: str | os.PathLike) -> None:
    """Refuse an output path that is a symbolic link (replacing it would silently replace
    the link itself, not the file it points to) or a folder. A regular file is replaced
    (keeping its permissions; see :func:`atomic_write`)."""
    path = Path(path)
    if path.is_symlink():
        raise InputError(f"cannot write {path}: it is a symbolic link (to {os.readlink(path)}); give the target's "
                         "path or remove the link first")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder")


def _open_formats() -> tuple[str, ...]:
    """The formats of :data:`READ_FORMATS` this Pillow registers (recent Pillow opens MPO via JPEG)."""
    Image.init()
    return tuple(name for name in READ_FORMATS if name in Image.OPEN)


def _rewind(src: str | io.BytesIO) -> str | io.BytesIO:
    if isinstance(src, io.BytesIO):
        src.seek(0)
    return src


def _rawmodes(img: Image.Image) -> list[str]:
    out = []
    for tile in getattr(img, "tile", None) or []:
        args = tile[3]
        out.append(args if isinstance(args, str) else (args[0] if args else ""))
    return out


def _is_16bit_colour(img: Image.Image, rawmodes: list[str]) -> bool:
    """Pillow opens 16-bit RGB(A) PNG/TIFF as 8-bit RGB(A), keeping the high bytes."""
    if img.mode not in _SIXTEEN_BIT_COLOUR or not rawmodes:
        return False
    return all(r.split(";")[0] == img.mode and r.split(";")[-1] in _LOW_BYTE_RAWMODE for r in rawmodes)


def _decode_low_bytes(src: str | io.BytesIO, label: str) -> np.ndarray | None:
    """Decode a 16-bit colour image a second time keeping the low bytes (the same unpacker
    with the byte order swapped). None (with a warning) if this Pillow cannot do it."""
    try:
        with Image.open(_rewind(src), formats=_open_formats()) as img:
            tiles = []
            for tile in img.tile:
                args = tile[3]
                raw = args if isinstance(args, str) else args[0]
                base, depth = raw.rsplit(";", 1)
                swapped = f"{base};{_LOW_BYTE_RAWMODE[depth]}"
                tiles.append(tile._replace(args=swapped if isinstance(args, str) else (swapped, *args[1:])))
            img.tile = tiles
            img.load()
            return np.asarray(img)
    except (OSError, ValueError, KeyError, AttributeError, TypeError, IndexError) as err:
        warnings.warn(f"{label}: 16-bit colour image read with 8-bit precision ({_one_line(err)})", stacklevel=3)
        return None


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # a corrupt EXIF block must not make a good image unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1..8) to an (H, W, C) array, as Pillow's exif_transpose."""
    if orientation == 2:
        array = array[:, ::-1]
    elif orientation == 3:
        array = array[::-1, ::-1]
    elif orientation == 4:
        array = array[::-1]
    elif orientation == 5:
        array = array.transpose(1, 0, 2)
    elif orientation == 6:
        array = np.rot90(array, -1)
    elif orientation == 7:
        array = array[::-1, ::-1].transpose(1, 0, 2)
    elif orientation == 8:
        array = np.rot90(array, 1)
    return array


def _to_array(img: Image.Image, label: str, low_bytes: np.ndarray | None) -> tuple[np.ndarray, int, bool]:
    """(H, W, C) integer or float array, its maximum value (1 for float), whether the last
    channel is alpha."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(img).astype(np.uint16)[..., None], 65535, False
    if mode == "I":
        arr = np.asarray(img)
        if arr.size and (arr.min() < 0 or arr.max() > 65535):
            raise InputError(f"{label}: 32-bit integer image with values outside 0..65535 is not supported")
        return arr.astype(np.uint16)[..., None], 65535, False
    if mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        if not np.isfinite(arr).all() or (arr.size and (arr.min() < -1e-6 or arr.max() > 1 + 1e-6)):
            raise InputError(f"{label}: 32-bit float image must hold finite values in [0, 1]")
        return np.clip(arr, 0.0, 1.0)[..., None], 1, False
    if mode in ("RGB", "RGBA") and low_bytes is not None:
        high = np.asarray(img).astype(np.uint16)
        if low_bytes.shape == high.shape:
            return (high << 8) | low_bytes.astype(np.uint16), 65535, mode == "RGBA"
    if mode == "1":
        img, mode = img.convert("L"), "L"
    elif mode == "La":
        img, mode = img.convert("LA"), "LA"
    elif mode == "P":
        has_alpha = "transparency" in img.info or (img.palette is not None and "A" in img.palette.mode)
        mode = "RGBA" if has_alpha else "RGB"
        img = img.convert(mode)
    elif mode in ("PA", "RGBa"):
        img, mode = img.convert("RGBA"), "RGBA"
    elif mode in ("RGBX", "CMYK", "YCbCr", "HSV", "LAB"):
        try:
            img, mode = img.convert("RGB"), "RGB"
        except ValueError:
            raise InputError(f"{label}: unsupported image mode {img.mode!r}") from None
    if mode not in ("L", "LA", "RGB", "RGBA"):
        raise InputError(f"{label}: unsupported image mode {mode!r}")
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr, 255, mode in ("LA", "RGBA")


def _header_size(src: str | io.BytesIO) -> tuple[int, int] | None:
    """(width, height) from the header of an image Pillow refused as a decompression bomb
    (nothing is decoded), for the message; None if even that fails."""
    try:
        with _pillow_guard(None), Image.open(_rewind(src), formats=_open_formats()) as img:
            return img.size
    except Exception:  # only for a message
        return None


def _decode(source: ImageSource, max_pixels: int | None, *,
            refuse_alpha: str | None = None) -> tuple[torch.Tensor, str]:
    """Decode to a float32 (C, H, W) tensor in [0, 1], C = 1 (grey) or 3 (colour).

    An alpha channel is composited onto white, or, with ``refuse_alpha`` (a reason), refused
    when any pixel is not fully opaque
    with the one-line :class:`InputError` ``"{label}: {refuse_alpha}"`` (knob maps)."""
    if max_pixels is not None and max_pixels < 1:
        raise InputError(f"max_pixels must be positive, got {max_pixels}")
    src, label = _source(source)
    low_bytes = None
    try:
        with _pillow_guard(max_pixels), Image.open(src, formats=_open_formats()) as img:
            w, h = img.size
            if max_pixels is not None and w * h > max_pixels:
                raise _too_many_pixels(label, w * h, max_pixels, (w, h))
            rawmodes = _rawmodes(img)
            img.load()
            if img.size != (w, h) and max_pixels is not None and img.size[0] * img.size[1] > max_pixels:
                raise _too_many_pixels(label, img.size[0] * img.size[1], max_pixels, img.size)
            if _is_16bit_colour(img, rawmodes):
                low_bytes = _decode_low_bytes(src, label)
            array, max_value, has_alpha = _to_array(img, label, low_bytes)
            orientation = _orientation(img)
            frames = int(getattr(img, "n_frames", 1) or 1)
            kind = img.format or "image"
    except InputError:
        raise
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        if found and max_pixels is not None:
            raise _too_many_pixels(label, int(found.group(1)), max_pixels, _header_size(src)) from None
        raise InputError(f"{label}: refused as a possible decompression bomb ({_one_line(err)}; raise the limit "
                         "with --max-pixels N, or max_pixels=N in Python)") from None
    except UnidentifiedImageError:
        names = ", ".join(READ_FORMATS)
        raise InputError(f"{label}: not an image file, or not a format that can be read ({names})") from None
    except FileNotFoundError:
        raise InputError(f"image file not found: {label}") from None
    except PermissionError as err:
        raise InputError(f"{label}: cannot read ({err.strerror or _one_line(err)})") from None
    except (OSError, SyntaxError, EOFError, ValueError, IndexError, KeyError, TypeError) as err:
        # Pillow reports truncated/corrupt data with a variety of exception types
        raise InputError(f"{label}: truncated or corrupt image file ({_one_line(err)})") from None

    if has_alpha and refuse_alpha and float(array[..., -1].min()) < max_value:  # an opaque alpha is harmless
        raise InputError(f"{label}: {refuse_alpha}")
    if frames > 1:
        what = "pages" if kind == "TIFF" else "frames"
        warnings.warn(InputWarning(f"{label}: {kind} with {frames} {what}: using the first one only"), stacklevel=3)
    array = np.ascontiguousarray(_apply_orientation(array, orientation))
    if not array.flags.writeable:  # torch.from_numpy wants a writable array
        array = array.copy()
    if max_value == 1:
        tensor = torch.from_numpy(array.astype(np.float32, copy=False))
    else:
        tensor = _dequantize(torch.from_numpy(array), max_value)
    tensor = tensor.permute(2, 0, 1)
    if has_alpha:
        colour, alpha = tensor[:-1], tensor[-1:]
        tensor = colour * alpha + (1.0 - alpha)
    return tensor.contiguous(), label


# ----------------------------------------------------------------------------------------
# public API
# ----------------------------------------------------------------------------------------
def read_image(
    source: ImageSource,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    mode: str = "rgb",
) -> torch.Tensor:
    """Read an image file as a float32 tensor with values in [0, 1].

    Args:
        source: a path, the file's bytes, or an open binary file object (read to its end).
        max_pixels: refuse images with more pixels than this (width x height) before decoding
            them; ``None`` removes the limit (only for trusted files).
        mode: ``"rgb"`` for a ``(3, H, W)`` tensor (grey images repeated to three channels),
            ``"grey"`` (or ``"gray"``) for ``(1, H, W)`` luma (ITU-R BT.601 weights for colour).

    Returns:
        ``(3, H, W)`` or ``(1, H, W)`` float32 tensor; see the module docstring for how bit
        depths, transparency, colour spaces and EXIF orientation are handled.

    Raises:
        InputError: missing file, not an image, truncated or corrupt data, too many pixels,
            unsupported mode.
    """
    mode = mode.lower()
    if mode not in ("rgb", "grey", "gray"):
        raise InputError(f"unknown read mode {mode!r} (rgb, grey)")
    tensor, _ = _decode(source, max_pixels)
    if mode == "rgb":
        return tensor.expand(3, -1, -1).contiguous() if tensor.shape[0] == 1 else tensor
    if tensor.shape[0] == 1:
        return tensor
    weights = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float32).view(3, 1, 1)
    return (tensor * weights).sum(0, keepdim=True).clamp_(0.0, 1.0)


def image_size(source: ImageSource) -> tuple[int, int]:
    """``(height, width)`` of an image as :func:`read_image` would return it (EXIF orientation
    applied where the orientation is known from the header), read from the header only."""
    src, label = _source(source)
    try:
        with _pillow_guard(None), Image.open(src, formats=_open_formats()) as img:
            w, h = img.size
            orientation = _orientation(img)
    except UnidentifiedImageError:
        raise InputError(f"{label}: not an image file, or not a format that can be read") from None
    except (OSError, SyntaxError, EOFError, ValueError, IndexError, KeyError, TypeError) as err:
        raise InputError(f"{label}: truncated or corrupt image file ({_one_line(err)})") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def to_uint8_array(image: torch.Tensor) -> np.ndarray:
    """A float image tensor ``(C, H, W)`` or ``(1, C, H, W)`` with C = 1 or 3 and values in
    [0, 1] -> numpy ``(H, W, C)`` uint8. Values outside [0, 1] are clipped, then rounded.

    Raises:
        InputError: wrong shape or dtype, NaN or infinite values.
    """
    if not isinstance(image, torch.Tensor):
        raise InputError(f"expected an image tensor, got {type(image).__name__}")
    if image.dim() == 4 and image.shape[0] == 1:
        image = image[0]
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise InputError(f"expected an image tensor of shape (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
    if not image.is_floating_point():
        raise InputError(f"expected a float image tensor with values in [0, 1], got {image.dtype}")
    image = image.detach()
    if not torch.isfinite(image).all():
        raise InputError("image contains NaN or infinite values")
    quantised = image.float().clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
    return quantised.permute(1, 2, 0).contiguous().cpu().numpy()


def from_uint8_array(array: np.ndarray) -> torch.Tensor:
    """numpy uint8 ``(H, W, C)`` (C = 1 or 3) or ``(H, W)`` -> float32 tensor ``(C, H, W)`` in [0, 1]."""
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        raise InputError(f"expected a uint8 numpy array, got {getattr(array, 'dtype', type(array).__name__)}")
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise InputError(f"expected an (H, W, 3), (H, W, 1) or (H, W) array, got shape {array.shape}")
    array = np.ascontiguousarray(array)
    if not array.flags.writeable:  # torch.from_numpy wants a writable array
        array = array.copy()
    return _dequantize(torch.from_numpy(array), 255).permute(2, 0, 1).contiguous()


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None] | bytes) -> Path:
    """Write a file atomically: ``write(file)`` (or the given bytes) fills a temporary file in
    the destination folder, which is flushed to disk, checked to hold every byte written
    (a full disk or a file-size limit can make writes come up short without an error) and
    renamed over ``path``. On any failure (including KeyboardInterrupt) the temporary file is
    removed and ``path`` is untouched, so a crash never leaves a partial or broken output. OS
    errors become one-line :class:`InputError`.

    An existing file at ``path`` is replaced and its permission bits are kept (a file made
    private with ``chmod 600`` stays private). A symbolic link at ``path`` is refused
    (:func:`check_output_path`): replacing it would silently swap the link for a file.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise InputError(f"cannot write {path}: folder {folder} does not exist")
    check_output_path(path)
    try:
        old_mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        old_mode = None  # a new file: 0o666 & ~umask
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temp = folder / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(temp, flags, 0o666)  # 0o666 & ~umask: the usual permissions
            break
        except FileExistsError:
            continue
        except OSError as err:
            raise InputError(f"cannot write {path}: {err.strerror or _one_line(err)}") from None
    try:
        with os.fdopen(fd, "wb") as file:
            if isinstance(write, (bytes, bytearray)):
                file.write(write)
            else:
                write(file)
            expected = file.tell()
            file.flush()
            os.fsync(file.fileno())
            actual = os.fstat(file.fileno()).st_size
        if old_mode is not None:
            os.chmod(temp, old_mode)
        if actual != expected:
            raise InputError(f"cannot write {path}: only {actual} of {expected} bytes reached the disk "
                             "(disk full or a file-size limit?)")
        os.replace(temp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        if isinstance(err, OSError):
            raise InputError(f"cannot write {path}: {err.strerror or _one_line(err)}") from None
        raise
    return path


def write_image(image: torch.Tensor, path: str | os.PathLike, *, quality: int = 95) -> Path:
    """Write a float image tensor (``(3, H, W)``, ``(1, 3, H, W)`` or grey ``(1, H, W)``,
    values in [0, 1]) as an 8-bit image, atomically.

    The format follows the extension: ``.png``, ``.jpg``/``.jpeg`` (4:4:4 chroma, ``quality``),
    ``.tif``/``.tiff`` (deflate-compressed when Pillow has libtiff), ``.webp`` (``quality``;
    lossless at 100) and ``.bmp``. Values are clipped to [0, 1] and rounded to 8 bits.

    The data goes to a temporary file in the destination folder that is then moved onto
    ``path`` with :func:`os.replace`: if anything fails no partial file is left behind and an
    existing file at ``path`` is untouched.

    Returns:
        The written path.

    Raises:
        InputError: unknown extension, NaN/Inf values, bad shape, missing output folder or an
            OS error while writing.
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(WRITE_FORMATS)
        raise InputError(f"cannot write {path}: unknown image extension {path.suffix!r} (use one of {known})")
    if not 1 <= quality <= 100:
        raise InputError(f"quality must be in 1..100, got {quality}")
    array = to_uint8_array(image)
    pil = Image.fromarray(array[..., 0] if array.shape[2] == 1 else array)
    options: dict = {}
    if fmt == "JPEG":
        options = {"quality": quality, "subsampling": 0}
    elif fmt == "WEBP":
        options = {"quality": quality, "lossless": quality >= 100}
    elif fmt == "TIFF" and features.check("libtiff"):
        options = {"compression": "tiff_deflate"}

    # encode into memory first: Pillow's JPEG/BMP encoders write straight to a file descriptor
    # and do not notice short writes, so a full disk would go unreported
    buffer = io.BytesIO()
    try:
        pil.save(buffer, format=fmt, **options)
    except OSError as err:
        raise InputError(f"cannot write {path}: {err.strerror or _one_line(err)}") from None
    atomic_write(path, buffer.getvalue())
    return path


def list_images(folder: str | os.PathLike, *, recursive: bool = False) -> list[Path]:
    """Image files (extensions in :data:`IMAGE_EXTENSIONS`, any case) in ``folder``, sorted by
    path. Hidden files (names starting with ``.``, such as macOS ``._x.jpg``) are skipped.
    Entries with an image extension that are not regular files (a broken symbolic link, a
    symbolic link loop, a FIFO) are listed, not skipped silently: reading them then says
    what is wrong (:func:`path_problem`).

    Raises:
        InputError: the folder does not exist or holds no images.
    """
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"image folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    files = sorted(
        p for p in candidates
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and not p.is_dir()
    )
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) found in {folder}")
    return files


def icon_data_uri(image: torch.Tensor, size: int = 64, quality: int = 85) -> str:
    """A small JPEG thumbnail of ``image`` ``(3, H, W)`` in [0, 1], its longer side ``size``
    pixels, as a ``data:image/jpeg;base64,...`` URI (a knob's icon, see
    :class:`tunableconv.knobs.Knob`)."""
    import base64

    if size < 8:
        raise InputError(f"an icon needs at least 8 pixels a side, got {size}")
    pil = Image.fromarray(to_uint8_array(image))
    scale = size / max(pil.size)
    pil = pil.resize((max(1, round(pil.width * scale)), max(1, round(pil.height * scale))), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    pil.convert("RGB").save(buffer, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def icon_image(icon: str) -> torch.Tensor:
    """The picture of a knob icon (a PNG/JPEG data URI) as ``(3, H, W)`` in [0, 1].

    Raises:
        InputError: not a valid icon.
    """
    import base64

    from .knobs import valid_icon

    if not valid_icon(icon):
        raise InputError("not a knob icon (a base64 PNG/JPEG data URI)")
    return read_image(base64.b64decode(icon.split(",", 1)[1]))
