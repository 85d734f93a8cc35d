"""Where a recorded source lives, so that a store can move.

A source inside the store's folder (the demo's generated images, files copied next to the
ledger) is recorded relative to the store: `demo-generated/0/0000.png`, `shards/a.npz#17`.
Sources outside it stay absolute, and datasets (`mnist:train#5`) are names, not paths.
Ingest always makes paths absolute before they are recorded, so a relative path in the
ledger can only mean "inside the store" and is read back against the store's folder,
wherever that is now. `gmv relocate` rewrites the prefix of the absolute ones.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from ..ledger.journal import ledger_file
from .datasets import is_dataset
from .discover import split_source

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


def _join(base: str, key: str | None) -> str:
    return base if key is None else f"{base}#{key}"


def _inside(path: Path, root: Path) -> PurePosixPath | None:
    for r in {root.absolute(), root.resolve()}:
        try:
            rel = path.relative_to(r)
        except ValueError:
            continue
        if ".." not in rel.parts:
            return PurePosixPath(*rel.parts)
    return None


def to_record(source: str, root: Path) -> str:
    """The form a source is recorded in: relative to `root` when its file lies inside it."""
    base, key = split_source(source)
    if is_dataset(base) or not os.path.isabs(base):
        return source
    rel = _recorded_base(base, str(root))
    return source if rel is None else _join(rel, key)


@lru_cache(maxsize=4096)
def _recorded_base(base: str, root: str) -> str | None:
    """`base` relative to the store folder `root` when inside it. Cached: ingest asks once per
    row, and most rows of a batch share their file (a shard, a Parquet file), whose check
    resolves the store's folder on disk (a syscall per part: ~100 µs a row)."""
    rel = _inside(Path(os.path.normpath(base)), Path(root))
    return None if rel is None or not rel.parts else str(rel)


def resolve(source: str, root: Path | None) -> str:
    """The source as it can be read now: a store-relative one joined to `root`."""
    if root is None:
        return source
    base, key = split_source(source)
    if is_dataset(base) or os.path.isabs(base):
        return source
    return _join(str(Path(root).absolute() / base), key)


def source_file(source: str, root: Path | None) -> Path | None:
    """The file a source is read from (None for a dataset), for cheap existence checks."""
    base, _ = split_source(resolve(source, root))
    return None if is_dataset(base) else Path(base)


def root_of(con: Connection) -> Path:
    """The store folder of a ledger connection (the ledger and its snapshot both lie in it)."""
    return ledger_file(con).parent
