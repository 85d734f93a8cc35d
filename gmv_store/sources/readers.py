"""One `Reader` per kind of input file, chosen by suffix (the interface is in base.py):
image files, .npz/.npy arrays, Parquet tables (parquet.py), WebDataset shards
(webdataset.py).
"""
from __future__ import annotations

from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from ..errors import BadInput
from ..images import IMAGE_SUFFIXES, array_to_canonical, decode_file
from .base import Reader, file_label, file_stamp, label_text
from .items import Item
from .parquet import ParquetReader
from .webdataset import WebDatasetReader

__all__ = ["READERS", "ArrayReader", "ImageFileReader", "Reader", "reader_for"]


class ImageFileReader(Reader):
    name = "image"
    suffixes = frozenset(IMAGE_SUFFIXES)

    def items(self, path, opts):
        yield Item(str(path), partial(decode_file, path), file_label(path, opts))

    def load(self, path, key):
        return decode_file(path)


class ArrayReader(Reader):
    """`.npz` (key `images`, optional `labels`) or `.npy`: N×H×W or N×H×W×C, uint8 or
    float in [0, 1]. A `.npy` is memory-mapped, so a multi-GB array streams."""

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
                images, labels = np.load(path, mmap_mode="r", allow_pickle=False), None
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
        # np.asarray: a plain view (of the memory map for .npy), pickled as its own pixels
        return Item(src, partial(array_to_canonical, np.asarray(images[i]), src), lab)

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
        images, _ = _cached_read(*file_stamp(path)) if path.exists() else self.read(path)
        return array_to_canonical(images[self._index(path, images, key or "")], f"{path}#{key}")


@lru_cache(maxsize=2)
def _cached_read(path: str, mtime_ns: int, size: int):
    """Thumbnails and image re-ranking read many rows of one array: read (or map) it once."""
    return ArrayReader().read(Path(path))


READERS: tuple[Reader, ...] = (ImageFileReader(), ArrayReader(), ParquetReader(), WebDatasetReader())


def reader_for(path: Path) -> Reader | None:
    suffix = path.suffix.lower()
    for r in READERS:
        if suffix in r.suffixes:
            return r
    return None
