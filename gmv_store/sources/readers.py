"""One `Reader` per kind of input file, chosen by suffix.

A reader lists the images of a file lazily (`items`) and reads one back from the key in
its source string (`load`): plain image files have no key, `batch.npz#17` the row index.
"""
from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Iterator

import numpy as np

from ..errors import BadInput
from ..images import IMAGE_SUFFIXES, array_to_canonical, decode_file
from .items import InputOptions, Item


def label_text(value) -> str | None:
    """A label from any array or column value, as the text stored in the ledger."""
    if value is None:
        return None
    if isinstance(value, (np.integer, int)):
        return str(int(value))
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def file_label(path: Path, opts: InputOptions) -> str | None:
    return path.parent.name if opts.label_from == "parent" else opts.label


class Reader:
    """A kind of input file. `keyed` readers hold many images, addressed as `path#key`."""

    name: ClassVar[str]
    suffixes: ClassVar[frozenset[str]]
    keyed: ClassVar[bool] = False

    def items(self, path: Path, opts: InputOptions) -> Iterator[Item]:
        """Every image of the file, in a stable order; raises BadInput for an unusable file."""
        raise NotImplementedError

    def item(self, path: Path, key: str, opts: InputOptions) -> Item:
        """The one image `path#key` (a recorded source given as an argument)."""
        raise NotImplementedError

    def load(self, path: Path, key: str | None) -> np.ndarray:
        """Canonical pixels of one recorded source."""
        raise NotImplementedError


class ImageFileReader(Reader):
    name = "image"
    suffixes = frozenset(IMAGE_SUFFIXES)

    def items(self, path, opts):
        yield Item(str(path), lambda p=path: decode_file(p), file_label(path, opts))

    def load(self, path, key):
        return decode_file(path)


class ArrayReader(Reader):
    """`.npz` (key `images`, optional `labels`) or `.npy`: N×H×W or N×H×W×C, uint8 or
    float in [0, 1]."""

    name = "array"
    suffixes = frozenset({".npz", ".npy"})
    keyed = True

    def read(self, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
        try:
            if path.suffix.lower() == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    if "images" not in data.files:
                        raise BadInput(f"{path}: no 'images' key (found: {', '.join(data.files) or 'none'}); "
                                       "fix: save with np.savez(f, images=..., labels=...)")
                    images = data["images"]
                    labels = data["labels"] if "labels" in data.files else None
            else:
                images, labels = np.load(path, allow_pickle=False), None
        except BadInput:
            raise
        except (OSError, ValueError, EOFError) as e:
            raise BadInput(f"{path}: unreadable array file ({str(e).splitlines()[0]}); fix: re-save it with numpy") from None
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3, 4)):
            raise BadInput(f"{path}: images have shape {images.shape}; expected N×H×W or N×H×W×C with C in 1,3,4")
        if images.dtype != np.uint8 and images.dtype.kind != "f":
            raise BadInput(f"{path}: images have dtype {images.dtype}; fix: use uint8 0..255 or float in [0, 1]")
        if labels is not None and (labels.ndim != 1 or len(labels) != len(images)):
            raise BadInput(f"{path}: labels have shape {labels.shape}, expected ({len(images)},)")
        return images, labels

    def _item(self, path, images, labels, i, opts) -> Item:
        src = f"{path}#{i}"
        lab = label_text(labels[i]) if labels is not None else file_label(path, opts)
        return Item(src, lambda a=images[i], s=src: array_to_canonical(a, s), lab)

    def items(self, path, opts):
        images, labels = self.read(path)
        for i in range(len(images)):
            yield self._item(path, images, labels, i, opts)

    def _index(self, path, images, key) -> int:
        if not key.isdigit() or int(key) >= len(images):
            raise BadInput(f"{path}#{key}: index out of range (the array holds {len(images)} images)")
        return int(key)

    def item(self, path, key, opts):
        images, labels = self.read(path)
        return self._item(path, images, labels, self._index(path, images, key), opts)

    def load(self, path, key):
        images, _ = self.read(path)
        return array_to_canonical(images[self._index(path, images, key or "")], f"{path}#{key}")


READERS: tuple[Reader, ...] = (ImageFileReader(), ArrayReader())


def reader_for(path: Path) -> Reader | None:
    suffix = path.suffix.lower()
    for r in READERS:
        if suffix in r.suffixes:
            return r
    return None
