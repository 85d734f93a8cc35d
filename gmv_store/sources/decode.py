"""Items -> canonical pixels with their content hash; bad images become problems."""
from __future__ import annotations

from typing import Iterable, Iterator


from ..errors import BadInput
from ..images import content_sha256
from .discover import discover
from .items import Decoded, Discovery, InputOptions, InputReport, Item, Problem


def decode_items(items: Iterable[Item], problems: list[Problem]) -> Iterator[Decoded]:
    for item in items:
        try:
            pixels = item.load()
        except BadInput as e:
            msg = str(e)
            problems.append(Problem(item.source, msg.split(": ", 1)[-1] if msg.startswith(item.source) else msg))
            continue
        yield Decoded(item.source, item.label, pixels, content_sha256(pixels))


def read_batches(paths, options: InputOptions | None, batch_size: int, report: InputReport) -> Iterator[list[Decoded]]:
    """Decoded images of the inputs in batches; bad inputs go to `report.problems` (bad
    arguments first) and files no reader claims to `report.ignored_files`."""
    found = Discovery()
    n_before = len(report.problems)
    try:
        yield from batched(decode_items(discover(paths, options, found), report.problems), batch_size)
    finally:
        report.problems[n_before:n_before] = found.problems
        report.ignored_files += found.ignored


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
