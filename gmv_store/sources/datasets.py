"""Named datasets that ship inside packages, addressed as `NAME:SPLIT` (`mnist:train`) and
one image as `mnist:train#5`."""
from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import numpy as np

from ..datasets import MNIST_SPLITS, load_mnist
from ..errors import BadInput
from .items import Item

KNOWN = tuple(f"mnist:{s}" for s in MNIST_SPLITS)


def is_dataset(arg: str) -> bool:
    return arg.startswith("mnist:")


def _split(name: str) -> str:
    split = name.split(":", 1)[1]
    if split not in MNIST_SPLITS:
        raise BadInput(f"{name}: unknown dataset; fix: use {' or '.join(KNOWN)}")
    return split


def dataset_items(name: str) -> Iterator[Item]:
    split = _split(name)
    images, labels = load_mnist(split)
    for i in range(len(images)):
        yield Item(f"mnist:{split}#{i}", partial(_with_channel, images[i]), str(int(labels[i])))


def dataset_item(name: str, key: str) -> Item:
    split = _split(name)
    images, labels = load_mnist(split)
    i = _index(name, key, len(images))
    return Item(f"mnist:{split}#{i}", partial(_with_channel, images[i]), str(int(labels[i])))


def _with_channel(image: np.ndarray) -> np.ndarray:
    return image[:, :, None]


def load_dataset_image(name: str, key: str) -> np.ndarray:
    images, _ = load_mnist(_split(name))
    return _with_channel(images[_index(name, key, len(images))])


def _index(name: str, key: str, n: int) -> int:
    if not key.isdigit():
        raise BadInput(f"{name}#{key}: '{key}' is not an image number; fix: give one of #0 to #{n - 1}")
    if int(key) >= n:
        raise BadInput(f"{name}#{key}: index out of range (the dataset holds {n} images)")
    return int(key)
