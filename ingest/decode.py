"""Step 2: load each item's pixels and content hash; bad images become problems."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from gmv_store.errors import BadInput
from gmv_store.images import content_sha256

from .discover import Item, Problem


@dataclass
class Decoded:
    source: str
    label: str | None
    pixels: np.ndarray  # canonical (H, W, C) uint8
    sha256: str

    @property
    def short_id(self) -> str:
        return self.sha256[:16]


def decode_items(items: Iterable[Item], problems: list[Problem]) -> Iterator[Decoded]:
    for item in items:
        try:
            pixels = item.load()
        except BadInput as e:
            problems.append(Problem(item.source, str(e).split(": ", 1)[-1] if str(e).startswith(item.source) else str(e)))
            continue
        yield Decoded(item.source, item.label, pixels, content_sha256(pixels))


def batched(it: Iterable, size: int) -> Iterator[list]:
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def unique_new(batch: list[Decoded], known: set[str]) -> list[Decoded]:
    """Drop images whose content is already stored or earlier in this batch."""
    out, seen = [], set()
    for d in batch:
        if d.sha256 in known or d.sha256 in seen:
            continue
        seen.add(d.sha256)
        out.append(d)
    return out
