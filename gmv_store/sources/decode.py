"""Items -> canonical pixels with their content hash; bad images become problems."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from ..errors import BadInput
from ..images import content_sha256
from .items import Decoded, Item, Problem

T = TypeVar("T")


def decode_one(item: Item) -> Decoded | Problem:
    """One item decoded, or the problem that stops it (the same in any process)."""
    try:
        pixels = item.load()
    except BadInput as e:
        msg = str(e)
        return Problem(item.source, msg.split(": ", 1)[-1] if msg.startswith(item.source) else msg)
    return Decoded(item.source, item.label, pixels, content_sha256(pixels), item.meta)


def decode_items(items: Iterable[Item], problems: list[Problem]) -> Iterator[Decoded]:
    for item in items:
        d = decode_one(item)
        if isinstance(d, Problem):
            problems.append(d)
        else:
            yield d


def batched(it: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
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
