"""Image reading/writing: bit depths, modes, orientation, errors, atomic writes."""

from __future__ import annotations

import io
import os
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps

from tunableconv.errors import InputError
from tunableconv.io import (
    DEFAULT_MAX_PIXELS,
    from_uint8_array,
    image_size,
    list_images,
    read_image,
    to_uint8_array,
    write_image,
)


def opened(path) -> Image.Image:
    """A fully loaded Pillow image with its file closed."""
    with Image.open(path) as img:
        img.load()
        return img


def save(img: Image.Image, path, fmt=None, **options):
    img.save(path, format=fmt, **options)
    return path


def png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA) written by hand, rows alternating the
    None / Sub / Up filters (Pillow cannot write 16-bit colour PNGs)."""
    h, w, c = array.shape
    bpp = 2 * c
    rows, previous = [], np.zeros(w * bpp, np.int32)
    for y in range(h):
        raw = np.frombuffer(array[y].astype(">u2").tobytes(), np.uint8).astype(np.int32)
        kind = y % 3
        if kind == 1:
            filtered = raw - np.concatenate([np.zeros(bpp, np.int32), raw[:-bpp]])
        elif kind == 2:
            filtered = raw - previous
        else:
            filtered = raw
        rows.append(bytes([kind]) + (filtered % 256).astype(np.uint8).tobytes())
        previous = raw

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    data = zlib.compress(b"".join(rows))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


# ----------------------------------------------------------------------------------------
# bit depths and modes
# ----------------------------------------------------------------------------------------
def test_grey_8bit_becomes_rgb(tmp_path):
    a = np.array([[0, 1, 128], [200, 254, 255]], dtype=np.uint8)
    path = save(Image.fromarray(a), tmp_path / "g.png")
    x = read_image(path)
    assert x.shape == (3, 2, 3) and x.dtype == torch.float32
    expected = torch.from_numpy(a).float() / 255
    for c in range(3):
        assert torch.equal(x[c], expected)
    assert read_image(path, mode="grey").shape == (1, 2, 3)


def test_bilevel_image(tmp_path):
    img = Image.new("1", (4, 2))
    img.putpixel((1, 0), 1)
    x = read_image(save(img, tmp_path / "b.png"))
    assert x[:, 0, 1].tolist() == [1.0, 1.0, 1.0] and float(x.sum()) == 3.0


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_grey_16bit_exact(tmp_path, fmt):
    a = np.array([[65535, 32768, 0, 1]], dtype=np.uint16)
    path = save(Image.fromarray(a), tmp_path / f"g16.{fmt.lower()}", fmt)
    x = read_image(path)
    assert x.shape == (3, 1, 4)
    assert x[0, 0, 0].item() == 1.0
    assert x[0, 0, 1].item() == (torch.tensor(32768.0) / 65535).item()
    assert x[0, 0, 2].item() == 0.0
    assert x[0, 0, 3].item() == pytest.approx(1 / 65535)
    assert torch.equal(x[0], x[2])


@pytest.mark.parametrize("channels", [3, 4])
def test_colour_16bit_png_keeps_precision(tmp_path, channels):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 65536, (7, 9, channels), dtype=np.uint16)
    a[..., 3:] = 65535  # opaque, so the colour comes out unchanged
    a[0, 0, :3] = (65535, 32768, 257)
    x = read_image(png16(a))
    expected = torch.from_numpy(a[..., :3].astype(np.int32)).float().permute(2, 0, 1) / 65535
    assert torch.equal(x, expected)
    assert x[1, 0, 0].item() == (torch.tensor(32768.0) / 65535).item()


def test_colour_16bit_tiff_keeps_precision(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    a = np.random.default_rng(1).integers(0, 65536, (5, 6, 3), dtype=np.uint16)
    path = tmp_path / "c16.tif"
    tifffile.imwrite(path, a, photometric="rgb")
    expected = torch.from_numpy(a.astype(np.int32)).float().permute(2, 0, 1) / 65535
    assert torch.equal(read_image(path), expected)


def test_int32_and_float_modes(tmp_path):
    a = np.array([[0, 65535, 300]], dtype=np.int32)
    x = read_image(save(Image.fromarray(a, mode="I"), tmp_path / "i.tif"))
    assert x[0, 0].tolist() == pytest.approx([0.0, 1.0, 300 / 65535])
    with pytest.raises(InputError, match="0..65535"):
        read_image(save(Image.fromarray(np.array([[70000]], dtype=np.int32), mode="I"), tmp_path / "big.tif"))
    f = np.array([[0.0, 0.25, 1.0]], dtype=np.float32)
    assert read_image(save(Image.fromarray(f, mode="F"), tmp_path / "f.tif"))[1, 0].tolist() == [0.0, 0.25, 1.0]
    with pytest.raises(InputError, match="float"):
        read_image(save(Image.fromarray(np.array([[2.0]], dtype=np.float32), mode="F"), tmp_path / "f2.tif"))


def test_rgba_composited_onto_white(tmp_path):
    img = Image.new("RGBA", (3, 1))
    img.putpixel((0, 0), (255, 0, 0, 0))  # fully transparent -> white
    img.putpixel((1, 0), (255, 0, 0, 255))  # opaque red
    img.putpixel((2, 0), (0, 0, 0, 128))  # half-transparent black -> grey
    x = read_image(save(img, tmp_path / "a.png"))
    assert x[:, 0, 0].tolist() == [1.0, 1.0, 1.0]
    assert x[:, 0, 1].tolist() == [1.0, 0.0, 0.0]
    assert x[:, 0, 2].tolist() == pytest.approx([1 - 128 / 255] * 3)


def test_grey_alpha_and_palette_transparency(tmp_path):
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (0, 0))
    la.putpixel((1, 0), (0, 255))
    assert read_image(save(la, tmp_path / "la.png"))[:, 0].tolist() == [[1.0, 0.0]] * 3

    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 255, 0, 255, 0] + [0] * 762)
    p.putpixel((0, 0), 0)
    p.putpixel((1, 0), 1)
    path = save(p, tmp_path / "p.png", transparency=0)
    x = read_image(path)
    assert x[:, 0, 0].tolist() == [1.0, 1.0, 1.0]  # the transparent index
    assert x[:, 0, 1].tolist() == [0.0, 1.0, 0.0]
    gif = save(p, tmp_path / "p.gif", transparency=0)
    assert torch.equal(read_image(gif), x)


def test_cmyk_jpeg(tmp_path):
    img = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    path = save(img, tmp_path / "cmyk.jpg", quality=95)
    assert opened(path).mode == "CMYK"
    x = read_image(path)
    assert x.shape == (3, 16, 16)
    assert x.mean((1, 2)).tolist() == pytest.approx([1.0, 0.0, 0.0], abs=0.03)


def test_ycbcr_tiff_and_lossless_webp(tmp_path):
    ycbcr = Image.new("RGB", (4, 4), (200, 30, 60)).convert("YCbCr")
    x = read_image(save(ycbcr, tmp_path / "y.tif"))
    assert (x[:, 0, 0] * 255).tolist() == pytest.approx([200, 30, 60], abs=2)
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8))
    x = read_image(save(rgb, tmp_path / "x.webp", lossless=True))
    assert torch.equal(x, from_uint8_array(np.asarray(rgb)))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow(tmp_path, orientation):
    a = np.random.default_rng(orientation).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = save(Image.fromarray(a), tmp_path / "o.png", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(opened(path)))
    got = to_uint8_array(read_image(path))
    assert got.shape == expected.shape
    assert np.array_equal(got, expected)
    assert image_size(path) == expected.shape[:2]


def test_exif_orientation_jpeg(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = save(Image.new("RGB", (40, 20), (10, 200, 30)), tmp_path / "o.jpg", exif=exif.tobytes())
    assert read_image(path).shape == (3, 40, 20)
    assert image_size(path) == (40, 20)


def test_sources_bytes_and_file_objects(tmp_path):
    path = save(Image.new("RGB", (5, 4), (255, 0, 0)), tmp_path / "r.png")
    data = path.read_bytes()
    reference = read_image(path)
    assert torch.equal(read_image(data), reference)
    assert torch.equal(read_image(bytearray(data)), reference)
    with open(path, "rb") as f:
        assert torch.equal(read_image(f), reference)
    assert torch.equal(read_image(str(path)), reference)
    with pytest.raises(InputError, match="mode"):
        read_image(path, mode="cmyk")


# ----------------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------------
def one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="not found") as err:
        read_image(tmp_path / "nope.png")
    assert "nope.png" in one_line(err)
    with pytest.raises(InputError, match="folder"):
        read_image(tmp_path)


def test_not_an_image(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("this is not a picture\n")
    with pytest.raises(InputError, match="not an image") as err:
        read_image(path)
    assert "fake.png" in one_line(err)
    with pytest.raises(InputError, match="not an image"):
        read_image(b"")
    # a format that Pillow knows but tunableconv does not open
    ico = save(Image.new("RGB", (16, 16)), tmp_path / "x.ico")
    with pytest.raises(InputError, match="not an image"):
        read_image(ico)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "BMP"])
def test_truncated_file(tmp_path, fmt):
    a = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(a).save(buffer, format=fmt)
    data = buffer.getvalue()
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated") as err:
        read_image(path)
    one_line(err)


def test_truncated_refused_even_if_pillow_allows_it(tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buffer, "JPEG")
    with pytest.raises(InputError, match="truncated"):
        read_image(buffer.getvalue()[:2000])
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_decompression_bomb_refused(tmp_path):
    path = save(Image.new("L", (100, 80)), tmp_path / "big.png")
    limit_before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(InputError) as err:  # between 1x and 2x the limit: our check
        read_image(path, max_pixels=5000)
    assert "100x80 = 8,000 pixels" in one_line(err) and "5,000" in str(err.value)
    with pytest.raises(InputError) as err:  # over 2x: Pillow's DecompressionBombError
        read_image(path, max_pixels=100)
    assert "8,000 pixels" in one_line(err) and "limit of 100" in str(err.value)
    assert Image.MAX_IMAGE_PIXELS == limit_before
    assert read_image(path, max_pixels=8000).shape == (3, 80, 100)
    assert read_image(path, max_pixels=None).shape == (3, 80, 100)
    assert DEFAULT_MAX_PIXELS == 64_000_000


def test_huge_declared_size_is_refused_before_decoding():
    # a 20000 x 20000 PNG compresses to a few hundred KB; it must be refused from its header
    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 0, 0, 0, 0)
    data = zlib.compress(b"\0" * 1000)
    big = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    with pytest.raises(InputError, match="400,000,000 pixels"):
        read_image(big)


# ----------------------------------------------------------------------------------------
# writing
# ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff", ".bmp", ".webp", ".PNG"])
def test_write_lossless_roundtrip(tmp_path, suffix):
    a = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    x = from_uint8_array(a)
    path = write_image(x, tmp_path / f"out{suffix}", quality=100)
    assert path.exists()
    assert torch.equal(read_image(path), x)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]  # no temp file left


def test_write_jpeg_batch_and_grey(tmp_path):
    x = torch.full((1, 3, 16, 16), 0.5)
    path = write_image(x, tmp_path / "out.jpg")
    assert read_image(path).mean().item() == pytest.approx(0.5, abs=0.01)
    grey = write_image(torch.full((1, 8, 8), 0.25), tmp_path / "grey.png")
    assert opened(grey).mode == "L"


def test_write_rounds_and_clips(tmp_path):
    x = torch.tensor([[[-0.2, 0.0, 0.4 / 255, 0.6 / 255, 1.0, 1.3]]]).expand(3, 1, 6)
    assert to_uint8_array(x)[0, :, 0].tolist() == [0, 0, 0, 1, 255, 255]
    write_image(x, tmp_path / "c.png")
    assert np.asarray(opened(tmp_path / "c.png"))[0, :, 0].tolist() == [0, 0, 0, 1, 255, 255]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_write_refuses_nan_inf(tmp_path, bad):
    x = torch.zeros(3, 4, 4)
    x[1, 2, 3] = bad
    with pytest.raises(InputError, match="NaN"):
        write_image(x, tmp_path / "bad.png")
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_bad_requests(tmp_path):
    x = torch.zeros(3, 4, 4)
    with pytest.raises(InputError, match="extension"):
        write_image(x, tmp_path / "out.gif")
    with pytest.raises(InputError, match="extension"):
        write_image(x, tmp_path / "noext")
    with pytest.raises(InputError, match="does not exist"):
        write_image(x, tmp_path / "missing" / "out.png")
    with pytest.raises(InputError, match="shape"):
        write_image(torch.zeros(4, 4), tmp_path / "out.png")
    with pytest.raises(InputError, match="float"):
        write_image(torch.zeros(3, 4, 4, dtype=torch.uint8), tmp_path / "out.png")
    assert list(tmp_path.iterdir()) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous result")

    def failing_save(self, fp, format=None, **params):
        fp.write(b"\x89PNG partial data")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", failing_save)
    with pytest.raises(InputError, match="No space left"):
        write_image(torch.rand(3, 8, 8), target)
    assert target.read_bytes() == b"previous result"  # untouched
    with pytest.raises(InputError):
        write_image(torch.rand(3, 8, 8), tmp_path / "new.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]  # no partial or temp file


def test_written_file_has_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    path = write_image(torch.rand(3, 4, 4), tmp_path / "p.png")
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_uint8_array_helpers():
    a = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    x = from_uint8_array(a)
    assert x.shape == (3, 5, 6) and x.dtype == torch.float32
    assert np.array_equal(to_uint8_array(x), a)
    assert np.array_equal(to_uint8_array(x[None]), a)
    assert from_uint8_array(a[..., 0]).shape == (1, 5, 6)
    with pytest.raises(InputError):
        from_uint8_array(a.astype(np.float32))
    with pytest.raises(InputError):
        to_uint8_array(torch.zeros(2, 3, 4, 4))


# ----------------------------------------------------------------------------------------
# folders
# ----------------------------------------------------------------------------------------
def test_list_images(tmp_path):
    for name in ["b.JPG", "a.png", "c.tiff", "d.webp", "e.bmp", "f.jpeg", "g.tif"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "._a.png").write_bytes(b"x")  # macOS resource fork
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "h.png").write_bytes(b"x")
    names = [p.name for p in list_images(tmp_path)]
    assert names == ["a.png", "b.JPG", "c.tiff", "d.webp", "e.bmp", "f.jpeg", "g.tif"]
    assert [p.name for p in list_images(tmp_path, recursive=True)][-1] == "h.png"
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        list_images(tmp_path / "empty")
    with pytest.raises(InputError, match="not found"):
        list_images(tmp_path / "missing")
