"""One `Reader` per kind of input file, chosen by suffix (the interface is in base.py):
image files, .npz/.npy arrays, Parquet tables (parquet.py), WebDataset shards
(webdataset.py).
"""
from __future__ import annotations

import os
import zipfile
import zlib
from collections.abc import Iterator
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from ..errors import BadInput
from ..images import IMAGE_SUFFIXES, array_to_canonical, decode_file
from .base import HELP_WHOLE, Reader, file_label, file_stamp, label_text
from .items import InputOptions, Item
from .parquet import ParquetReader
from .webdataset import CompressedShardReader, WebDatasetReader, is_compressed_shard

__all__ = ["READERS", "ArrayReader", "ImageFileReader", "Reader", "reader_for"]


class ImageFileReader(Reader):
    name = "image"
    suffixes = frozenset(IMAGE_SUFFIXES)

    def items(self, path: Path, opts: InputOptions) -> Iterator[Item]:
        yield Item(str(path), partial(decode_file, path), file_label(path, opts))

    def load(self, path: Path, key: str | None) -> np.ndarray:
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
                    _fits_memory(path, data.zip)
                    images = data["images"]
                    labels = data["labels"] if "labels" in data.files else None
            else:
                images, labels = np.load(path, mmap_mode="r", allow_pickle=False), None
        except BadInput:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as e:  # a cut or damaged file
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise BadInput(f"{path}: unreadable array file ({first}); fix: re-save it with numpy") from None
        if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[3] not in (1, 3, 4)):
            raise BadInput(f"{path}: images have shape {images.shape}; expected N×H×W or N×H×W×C with C in 1,3,4")
        if images.dtype != np.uint8 and images.dtype.kind != "f":
            raise BadInput(f"{path}: images have dtype {images.dtype}; fix: use uint8 0..255 or float in [0, 1]")
        if labels is not None and (labels.ndim != 1 or len(labels) != len(images)):
            raise BadInput(f"{path}: labels have shape {labels.shape}, expected ({len(images)},)")
        if labels is not None and labels.dtype.kind == "f" and \
                len(bad := np.flatnonzero(~(np.isfinite(labels) & (labels == np.floor(labels))))):
            raise BadInput(f"{path}: {len(bad):,} of {len(labels):,} labels are not whole numbers (labels[{bad[0]}] is "
                           f"{float(labels[bad[0]])!r}); {HELP_WHOLE}")
        return images, labels

    def _item(self, path: Path, images: np.ndarray, labels: np.ndarray | None, i: int, opts: InputOptions) -> Item:
        src = f"{path}#{i}"
        lab = label_text(labels[i]) if labels is not None else file_label(path, opts)
        # np.asarray: a plain view (of the memory map for .npy), pickled as its own pixels
        return Item(src, partial(array_to_canonical, np.asarray(images[i]), src), lab)

    def items(self, path: Path, opts: InputOptions) -> Iterator[Item]:
        images, labels = self.read(path)
        for i in range(len(images)):
            yield self._item(path, images, labels, i, opts)

    def _index(self, path: Path, images: np.ndarray, key: str) -> int:
        if not key.isdigit():
            raise BadInput(f"{path}#{key}: '{key}' is not an image number; fix: give one of #0 to "
                           f"#{len(images) - 1} (the array holds {len(images):,} images)")
        if int(key) >= len(images):
            raise BadInput(f"{path}#{key}: index out of range (the array holds {len(images)} images)")
        return int(key)

    def item(self, path: Path, key: str, opts: InputOptions) -> Item:
        images, labels = self.read(path)
        return self._item(path, images, labels, self._index(path, images, key), opts)

    def load(self, path: Path, key: str | None) -> np.ndarray:
        images, _ = _cached_read(*file_stamp(path)) if path.exists() else self.read(path)
        return array_to_canonical(images[self._index(path, images, key or "")], f"{path}#{key}")


def _fits_memory(path: Path, archive: zipfile.ZipFile) -> None:
    """An .npz's images are read whole: refuse them, before reading, when they take more
    than half the machine's memory, rather than fail in the middle with MemoryError."""
    size = sum(i.file_size for i in archive.infolist() if i.filename in ("images", "images.npy"))
    limit = half_memory()
    if limit is not None and size > limit:
        raise BadInput(f"{path}: its images take {size / 1e9:.1f} GB in memory, over half of this machine's "
                       f"{2 * limit / 1e9:.1f} GB; fix: save them as .npy (np.save), which is memory-mapped")


def half_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2
    except (ValueError, OSError, AttributeError):  # not POSIX: no check
        return None


@lru_cache(maxsize=2)
def _cached_read(path: str, mtime_ns: int, size: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Thumbnails and image re-ranking read many rows of one array: read (or map) it once."""
    return ArrayReader().read(Path(path))


READERS: tuple[Reader, ...] = (ImageFileReader(), ArrayReader(), ParquetReader(), WebDatasetReader())
_COMPRESSED = CompressedShardReader()


def reader_for(path: Path) -> Reader | None:
    if is_compressed_shard(path):
        return _COMPRESSED
    suffix = path.suffix.lower()
    for r in READERS:
        if suffix in r.suffixes:
            return r
    return None
