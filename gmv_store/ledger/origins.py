"""Where the vectors given with the data (`--vectors`) were read from: recorded with the rows
they belong to, read back by `gmv repair` when a vector collection is lost (such vectors
cannot be computed from the images). Each carries a digest of the vector as stored, so a
file that now holds other vectors is found, not used."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .connection import insert_columns

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection

    from ..sources.items import Decoded

COLUMNS = ("collection", "point_id", "vector", "file", "col", "row_index", "digest")
# a point forgotten and given again: its new origin replaces the old one
_REPLACE = "ON CONFLICT DO UPDATE SET file = excluded.file, col = excluded.col, row_index = excluded.row_index, " \
           "digest = excluded.digest"


@dataclass(frozen=True)
class Origin:
    """Where one named vector of a point was read: the file, its Parquet column (None: a .npy),
    the row, and the digest of the vector stored."""
    file: str
    column: str | None
    row: int
    digest: int


def vector_digest(v: np.ndarray) -> int:
    """The first 8 bytes of the blake2b of a vector as float32, as an unsigned integer."""
    data = np.ascontiguousarray(v, dtype=np.float32).tobytes()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def record_origins(con: Connection, collection: str, point_ids: Sequence[int], batch: Sequence[Decoded]) -> None:
    """Record the origins of a batch's given vectors (rows without any: nothing). Run in the
    transaction that writes the batch's ledger rows."""
    if not any(d.origins for d in batch):
        return
    cols: dict[str, list[object]] = {c: [] for c in COLUMNS}
    for pid, d in zip(point_ids, batch):
        for name, o in (d.origins or {}).items():
            if d.vectors is None or name not in d.vectors:
                continue
            for c, v in zip(COLUMNS, (collection, pid, name, o.file, o.column, o.row, vector_digest(d.vectors[name]))):
                cols[c].append(v)
    insert_columns(con, "vector_origins", cols, _REPLACE)


def origins_of(con: Connection, collection: str, point_ids: Sequence[int]) -> dict[int, dict[str, Origin]]:
    """{point id: {vector name: Origin}} of these points (those without any: absent)."""
    out: dict[int, dict[str, Origin]] = {}
    for pid, name, file, col, row, digest in con.execute(
            "SELECT point_id, vector, file, col, row_index, digest FROM vector_origins "
            "WHERE collection = ? AND point_id IN (SELECT unnest(?))", [collection, list(point_ids)]).fetchall():
        out.setdefault(pid, {})[name] = Origin(file, col, int(row), int(digest))
    return out
