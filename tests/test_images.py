import io

import numpy as np
import pytest
from PIL import Image

from gmv_store.errors import BadInput
from gmv_store.images import MAX_PIXELS, array_to_canonical, content_sha256, decode_bytes


def _png(img: Image.Image, fmt="PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _i16(gray8):
    return Image.frombytes("I;16", gray8.shape[::-1], (gray8.astype("<u2") * 257).tobytes())


RGB = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)


@pytest.mark.parametrize(
    "make, channels",
    [
        (lambda: Image.fromarray(RGB[:, :, 0]), 1),                                   # L
        (lambda: Image.fromarray(RGB), 3),                                            # RGB
        (lambda: Image.fromarray(RGB).convert("CMYK"), 3),                             # CMYK (JPEG/TIFF)
        (lambda: _i16(RGB[:, :, 0]), 1),                                               # 16-bit
        (lambda: Image.fromarray(RGB).convert("P"), 3),                               # palette
        (lambda: Image.fromarray(np.dstack([RGB, np.full((32, 32), 128, np.uint8)])), 3),  # RGBA
        (lambda: Image.fromarray(RGB[:, :, 0]).convert("LA"), 1),                     # gray + alpha
        (lambda: Image.fromarray(RGB[:, :, 0] > 100), 1),                             # 1-bit
    ],
)
def test_modes_convert(make, channels):
    img = make()
    fmt = "TIFF" if img.mode == "CMYK" else "PNG"
    px = decode_bytes(_png(img, fmt), "x")
    assert px.dtype == np.uint8 and px.shape == (32, 32, channels)


def test_16bit_keeps_range():
    img = _i16(RGB[:, :, 0])
    px = decode_bytes(_png(img), "x")
    assert abs(int(px.max()) - int(RGB[:, :, 0].max())) <= 1


def test_alpha_composited_on_white():
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent black
    px = decode_bytes(_png(Image.fromarray(rgba)), "x")
    assert (px == 255).all()


def test_same_content_same_hash_across_forms():
    gray = RGB[:, :, 0]
    a = decode_bytes(_png(Image.fromarray(gray)), "a")
    b = array_to_canonical(gray, "b")
    c = array_to_canonical(gray.astype(np.float32) / 255.0, "c")
    assert content_sha256(a) == content_sha256(b) == content_sha256(c)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"hello, I am text", "not an image"),
        (_png(Image.fromarray(RGB))[:200], "corrupt or truncated"),
        (_png(Image.fromarray(RGB[:1, :1])), "smaller than"),
    ],
)
def test_bad_images_named(data, reason):
    with pytest.raises(BadInput, match=reason) as e:
        decode_bytes(data, "dir/bad.png")
    assert str(e.value).startswith("dir/bad.png: ")
    assert "\n" not in str(e.value)


def test_decompression_bomb_refused_before_decoding():
    side = int(MAX_PIXELS ** 0.5) + 100
    data = _png(Image.new("1", (side, side)))  # compresses to a few kB
    assert len(data) < 2_000_000
    with pytest.raises(BadInput, match="decompression-bomb|decompression bomb"):
        decode_bytes(data, "bomb.png")


@pytest.mark.parametrize(
    "arr, reason",
    [
        (np.zeros((4, 32, 32, 2), np.uint8)[0], "shape"),
        (np.zeros((32, 32), np.int32), "dtype"),
        (np.full((32, 32), 2.0, np.float32), r"\[0, 1\]"),
        (np.full((32, 32), np.nan, np.float32), "NaN"),
        (np.zeros((2, 2), np.uint8), "smaller than"),
    ],
)
def test_bad_arrays(arr, reason):
    with pytest.raises(BadInput, match=reason):
        array_to_canonical(arr, "a.npz#0")
