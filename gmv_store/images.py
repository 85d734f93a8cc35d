"""Decoding and validating images into the one form every stage uses.

Canonical form: uint8 array (H, W, C) with C = 1 for grayscale sources and C = 3 for
everything else (RGB, CMYK, palette, 16-bit, with or without alpha). Content identity is
the sha256 of that canonical form (shape header + bytes), so the same picture arriving as a
PNG, inside an .npz or from a dataset gets the same id.
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import stat
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import BadInput

MIN_SIDE = 8  # smaller images carry no usable content (1x1, 2x2 are degenerate)
MAX_PIXELS = 64_000_000  # decompression-bomb guard: refuse before decoding (64 megapixels)
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
# the size cap of one image file or tar member, checked before reading: 64 MP of 16-bit RGBA
# stored uncompressed is 512 MB, so no image within the pixel limit needs more
MAX_FILE_BYTES = 1 << 30
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}


def content_sha256(pixels: np.ndarray) -> str:
    h = hashlib.sha256()
    h.update(("%dx%dx%d:" % pixels.shape).encode())  # noqa: UP031 - the hashed bytes, kept as written
    h.update(np.ascontiguousarray(pixels).tobytes())
    return h.hexdigest()


def _to_canonical(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
            # Deep grayscale: scale the actual range of the type to 8 bits.
            arr = np.asarray(img, dtype=np.float64)
            top = 1.0 if mode == "F" else (65535.0 if arr.max(initial=0) > 255 or "16" in mode else 255.0)
            arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
            return arr[:, :, None]
        if mode == "LA":
            rgba = img.convert("RGBA")
            return _flatten_alpha(np.asarray(rgba))[:, :, :1]
        return np.asarray(img.convert("L"))[:, :, None]
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "PA", "RGBa", "La"):
        return _flatten_alpha(np.asarray(img.convert("RGBA")))
    return np.asarray(img.convert("RGB"))


def _flatten_alpha(rgba: np.ndarray) -> np.ndarray:
    """Composite onto white, as viewers show transparent images."""
    rgb = rgba[:, :, :3].astype(np.float32)
    a = rgba[:, :, 3:4].astype(np.float32) / 255.0
    out: np.ndarray = np.clip(rgb * a + 255.0 * (1.0 - a) + 0.5, 0, 255).astype(np.uint8)
    return out


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def regular_file(path: str | os.PathLike[str]) -> os.stat_result:
    """The file's status, or BadInput unless it is a regular file (through any symlink): a
    FIFO would block the read forever, a device never ends (`/dev/zero`)."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror}); fix: check the path and permissions") from None
    if not stat.S_ISREG(st.st_mode):
        raise BadInput(_not_regular(path, st.st_mode))
    return st


def _not_regular(path: str | os.PathLike[str], mode: int) -> str:
    target = os.path.realpath(path)
    link = "" if not os.path.islink(path) else \
        f", through a symlink to {target}" if os.path.exists(target) else ", through a symlink"  # /dev/stdin: pipe:[N]
    return (f"{path}: not a regular file ({_kind(mode)}{link}); fix: copy the data into a file and give its "
            "path")


def too_large(size: int, limit: int = MAX_FILE_BYTES) -> str:
    return f"{size:,} bytes, over the {limit:,}-byte limit of one image file; fix: downscale or re-encode it"


def read_regular(path: str | os.PathLike[str], limit: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes, refused before reading when it is anything else or larger
    than `limit`. Opened without blocking, so a FIFO is refused, not waited on."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror}); fix: check the path and permissions") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise BadInput(_not_regular(path, st.st_mode))
        if st.st_size > limit:
            raise BadInput(f"{path}: {too_large(st.st_size, limit)}")
        try:
            return f.read(limit + 1)
        except OSError as e:
            raise BadInput(f"{path}: cannot read ({e.strerror}); fix: check the path and permissions") from None


def check_pixels(pixels: np.ndarray, where: str) -> np.ndarray:
    h, w = pixels.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise BadInput(f"{where}: image is {w}x{h}, smaller than {MIN_SIDE}x{MIN_SIDE}; fix: use a real image")
    return np.ascontiguousarray(pixels)


def decode_bytes(data: bytes, where: str) -> np.ndarray:
    """Bytes of an image file -> canonical pixels, or BadInput naming `where` and the reason."""
    if not data:
        raise BadInput(f"{where}: empty file (0 bytes); fix: re-export or remove it")
    try:
        with warnings.catch_warnings():
            # PIL checks the size as it opens: over MAX_IMAGE_PIXELS it warns (an error here),
            # over twice that it raises; both end in the one message below
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                pixels = _to_canonical(upright(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadInput(bomb_message(where, str(e))) from None
    except UnidentifiedImageError:
        raise BadInput(f"{where}: not an image file PIL can read; fix: remove it or convert it to PNG") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise BadInput(f"{where}: corrupt or truncated image ({e}); fix: re-export or remove it") from None
    return check_pixels(pixels, where)


def bomb_message(where: str, pil_message: str) -> str:
    found = re.search(r"\((\d+) pixels\)", pil_message)  # PIL names the image's pixel count
    size = f"{int(found.group(1)):,} pixels, " if found else ""
    return (f"{where}: {size}over the limit of {MAX_PIXELS:,} pixels ({MAX_PIXELS // 10**6} megapixels) that "
            "guards against decompression bombs; fix: downscale it first")


def upright(img: Image.Image) -> Image.Image:
    """The image as viewers show it: a camera's EXIF orientation tag (2-8) applied, as
    browsers and photo tools do. Images without the tag are left as they are."""
    # where PIL's getexif looks for the tag, checked first: parsing EXIF costs ~50 µs an image
    if not (hasattr(img, "tag_v2") or any(k in img.info for k in _EXIF_KEYS)):
        return img
    if img.getexif().get(0x0112, 1) in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(img)
    return img


_EXIF_KEYS = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def decode_file(path: str | os.PathLike[str]) -> np.ndarray:
    """An image file -> canonical pixels; only a regular file of at most MAX_FILE_BYTES is read."""
    return decode_bytes(read_regular(path), str(path))


def array_to_canonical(arr: np.ndarray, where: str) -> np.ndarray:
    """One image from an array: (H, W), (H, W, 1|3|4); uint8 0..255, or float in [0, 1]."""
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise BadInput(f"{where}: shape {arr.shape} is not HxW or HxWxC with C in 1,3,4")
    if arr.dtype == np.uint8:
        out = arr
    elif arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise BadInput(f"{where}: contains NaN or inf")
        lo, hi = float(arr.min(initial=0.0)), float(arr.max(initial=0.0))
        if lo < 0.0 or hi > 1.0:
            raise BadInput(f"{where}: float values span [{lo:g}, {hi:g}], expected [0, 1]; fix: divide by 255")
        out = np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
    else:
        raise BadInput(f"{where}: dtype {arr.dtype} not supported; fix: use uint8 0..255 or float in [0, 1]")
    if out.shape[2] == 4:
        out = _flatten_alpha(out)
    return check_pixels(out, where)


def to_pil(pixels: np.ndarray) -> Image.Image:
    return Image.fromarray(pixels[:, :, 0] if pixels.shape[2] == 1 else pixels)


def resize_batch(images: Sequence[np.ndarray], size: int, color: str) -> np.ndarray:
    """(n, size, size, C) float32 in [0, 1], C = 1 for color='gray', 3 for 'rgb'."""
    c = 1 if color == "gray" else 3
    out = np.empty((len(images), size, size, c), dtype=np.float32)
    for i, px in enumerate(images):
        if px.shape[2] != c:
            px = to_gray(px) if c == 1 else to_rgb(px)
        if px.shape[0] != size or px.shape[1] != size:
            img = to_pil(px).resize((size, size), Image.Resampling.BILINEAR)
            px = np.asarray(img).reshape(size, size, c)
        out[i] = px / np.float32(255.0)
    return out


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    return np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels


def to_gray(pixels: np.ndarray) -> np.ndarray:
    if pixels.shape[2] == 1:
        return pixels
    return np.asarray(to_pil(pixels).convert("L"))[:, :, None]


def save_png(pixels: np.ndarray, path: str | os.PathLike[str]) -> None:
    to_pil(pixels).save(path, format="PNG")
