"""Where the vectors given with the data (`--vectors`) were read from: recorded with the rows
they belong to, read back by `gmv repair` when a vector collection is lost (such vectors
cannot be computed from the images). Each carries a digest of the vector as stored, so a
file that now holds other vectors is found, not used."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection

    from ..sources.items import Decoded

# by (vector name, file, Parquet column or None): the points' ids, rows and digests
OriginGroups = dict[tuple[str, str, "str | None"], tuple[list[int], list[int], list[int]]]


@dataclass(frozen=True)
class Origin:
    """Where one named vector of a point was read: the file, its Parquet column (None: a .npy),
    the row, and the digest of the vector stored."""
    file: str
    column: str | None
    row: int
    digest: int


def origin_groups(point_ids: Sequence[int], batch: Sequence[Decoded]) -> OriginGroups:
    """The given vectors' origins of a batch (`Decoded.origins`), grouped for `record_origins`."""
    groups: OriginGroups = {}
    for pid, d in zip(point_ids, batch):
        for name, o in (d.origins or {}).items():
            g = groups.setdefault((name, o.file, o.column), ([], [], []))
            g[0].append(pid)
            g[1].append(o.row)
            g[2].append(o.digest)
    return groups


def record_origins(con: Connection, collection: str,
                   groups: Mapping[tuple[str, str, str | None], tuple[Sequence[int], Sequence[int], Sequence[int]]]) -> None:
    """Record where a batch's given vectors were read: by (vector name, file, Parquet column
    or None), the points' ids, rows and digests (computed by the reader,
    `sources.vector_arrays.vector_digests`). Run in the transaction that writes the batch's
    ledger rows. One statement per file and vector name; rows without given vectors: none."""
    import pyarrow as pa

    for (name, file, column), (pids, rows, digests) in groups.items():
        # An Arrow table read by name from this frame (DuckDB's replacement scan of Python
        # variables): ~3x faster than list parameters of 64-bit integers, and unlike
        # `con.register` it may follow a statement whose result was not fetched.
        origins_batch = pa.table({"point_id": pa.array(pids, pa.uint64()), "row_index": pa.array(rows, pa.int64()),
                                  "digest": pa.array(digests, pa.uint64())})
        con.execute("INSERT INTO vector_origins SELECT $1, point_id, $2, $3, $4, row_index, digest FROM origins_batch",
                    [collection, name, file, column])
        del origins_batch


def forget_origins(con: Connection, collection: str, point_ids: Sequence[int]) -> None:
    """Removed points' origins go with them (an image given again later is recorded anew)."""
    con.execute("DELETE FROM vector_origins WHERE collection = ? AND point_id IN (SELECT unnest(?))",
                [collection, list(point_ids)])


def origins_of(con: Connection, collection: str, point_ids: Sequence[int]) -> dict[int, dict[str, Origin]]:
    """{point id: {vector name: Origin}} of these points (those without any: absent). Rows go
    with their points (`forget_origins`); should a point have two, the latest counts."""
    out: dict[int, dict[str, Origin]] = {}
    for pid, name, file, col, row, digest in con.execute(
            "SELECT point_id, vector, file, col, row_index, digest FROM vector_origins "
            "WHERE collection = ? AND point_id IN (SELECT unnest(?)) ORDER BY rowid",
            [collection, list(point_ids)]).fetchall():
        out.setdefault(pid, {})[name] = Origin(file, col, int(row), int(digest))
    return out
