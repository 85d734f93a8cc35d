"""The whole input stage in one call, as both pipelines use it."""
from __future__ import annotations

from collections.abc import Iterator

from .decode import batched, decode_items
from .discover import discover
from .items import Decoded, Discovery, Embed, InputOptions, InputReport
from .parallel import decode_parallel


def read_batches(paths: list[str], options: InputOptions | None, batch_size: int, report: InputReport,
                 workers: int = 0, embed: Embed | None = None) -> Iterator[list[Decoded]]:
    """Decoded images of the inputs in batches; bad inputs go to `report.problems` (bad
    arguments first) and files no reader claims to `report.ignored_files`. `workers` >= 1
    decodes in that many processes, with the same results in the same order, and runs
    `embed` there too (see `decode_parallel`)."""
    found = Discovery()
    n_before = len(report.problems)
    items = discover(paths, options, found)
    try:
        decoded = (decode_parallel(items, report.problems, workers, ahead=2 * batch_size, embed=embed) if workers >= 1
                   else decode_items(items, report.problems))
        yield from batched(decoded, batch_size)
    finally:
        report.problems[n_before:n_before] = found.problems
        report.ignored_files += found.ignored
