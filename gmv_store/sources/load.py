"""Read back the canonical pixels of a recorded source (thumbnails, grids, image re-ranking)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..images import regular_file
from .datasets import is_dataset, load_dataset_image
from .discover import split_source
from .readers import ImageFileReader, reader_for


def load_source(source: str, root: Path | None = None) -> np.ndarray:
    """`path`, `path.npz#17`, `mnist:train#5` -> (H, W, C) uint8; raises BadInput. `root`:
    the store's folder, which a store-relative source (location.py) is read against."""
    if root is not None:
        from .location import resolve

        source = resolve(source, root)
    base, key = split_source(source)
    if is_dataset(base):
        return load_dataset_image(base, key or "")
    path = Path(base)
    if path.exists():  # a missing file is each reader's own message
        regular_file(path)  # a FIFO would block, a device never end
    return (reader_for(path) or ImageFileReader()).load(path, key)
