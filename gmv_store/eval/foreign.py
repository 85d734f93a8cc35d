"""Foreign (out-of-distribution) 28x28 grayscale images for the C3 test, from sources that
ship with installed packages, so the test runs offline:

- `photos`: random crops of the real photographs bundled in scikit-image (`skimage.data`:
  camera, astronaut, coffee, coins, moon, page, text, grass, gravel, brick, ...), each crop
  side 28..112 px, resized to 28x28, grayscale.
- `digits`: scikit-learn's 1,797 8x8 handwritten digits (`load_digits`), upsampled to 28x28
  (bilinear) and scaled to 0..255: digits, but another hand, resolution and stroke (near-OOD).
- `noise`: synthetic uniform white noise, 0..255 per pixel.

`mix_foreign` draws the foreign images and gives each a class label (uniformly random for
photos and noise, the true digit for `digits`) so that a class-conditional generator can be
trained on the mixture.
"""
from __future__ import annotations

import numpy as np

from gmv_store.errors import BadInput

SOURCES = ("photos", "digits", "noise")
_PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "coins", "moon", "page", "text", "rocket", "grass", "gravel",
           "brick", "horse", "clock", "hubble_deep_field", "immunohistochemistry")


def _gray(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[:, :, :3].astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    a = a.astype(np.float64)
    if a.max() <= 1.0:
        a = a * 255.0
    return np.clip(a, 0, 255)


def _resize(a: np.ndarray, size: int = 28) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR))


def photo_patches(n: int, seed: int = 0) -> np.ndarray:
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = []
    for name in _PHOTOS:
        try:
            photos.append(_gray(getattr(data, name)()))
        except (OSError, ValueError, ImportError, AttributeError):  # a build without that file: use the others
            continue
    if not photos:
        raise BadInput("foreign source 'photos': no skimage.data photo could be loaded; fix: pip install scikit-image")
    out = np.empty((n, 28, 28), dtype=np.uint8)
    for i in range(n):
        p = photos[rng.integers(len(photos))]
        side = int(rng.integers(28, min(113, min(p.shape) + 1)))
        y = int(rng.integers(0, p.shape[0] - side + 1))
        x = int(rng.integers(0, p.shape[1] - side + 1))
        out[i] = _resize(p[y:y + side, x:x + side])
    return out


def sklearn_digits(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(d.images), size=n, replace=n > len(d.images))
    imgs = np.stack([_resize(d.images[i] / 16.0 * 255.0) for i in idx])
    return imgs.astype(np.uint8), d.target[idx].astype(np.int64)


def noise_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


def foreign_images(source: str, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 28, 28), class labels int64 (n,)) from `source`."""
    if source not in SOURCES:
        raise BadInput(f"foreign source '{source}': unknown; fix: use one of {', '.join(SOURCES)}")
    if n < 1:
        raise BadInput(f"foreign images: n={n} must be at least 1")
    rng = np.random.default_rng([seed, 1])
    if source == "digits":
        return sklearn_digits(n, seed)
    imgs = photo_patches(n, seed) if source == "photos" else noise_images(n, seed)
    return imgs, rng.integers(0, 10, size=n).astype(np.int64)


def n_foreign_for(n_clean: int, fraction: float) -> int:
    """How many foreign images make `fraction` of the mixed training set."""
    if not 0 < fraction < 1:
        raise BadInput(f"foreign fraction {fraction}: must lie strictly between 0 and 1 (e.g. 0.05)")
    return max(1, round(n_clean * fraction / (1.0 - fraction)))
