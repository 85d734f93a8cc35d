"""Training rows as ingest writes them: the known contents (dedupe), the rows of a batch,
the refresh queue entries they make, and the point counts and sources the store checks."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from .connection import arrow_scans_paid, insert_columns

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection

POINT_TABLES = ("training_images", "generated_images")  # the tables whose rows are Qdrant points


def _table(table: str) -> str:
    if table not in POINT_TABLES:  # a name goes into the statement: only these two
        raise ValueError(f"not a table of points: {table!r}")
    return table


def training_point_ids(con: Connection) -> np.ndarray:
    """Every training row's point id, sorted (one scan of one column)."""
    got = con.execute("SELECT point_id FROM training_images ORDER BY point_id").fetchnumpy()["point_id"]
    return np.asarray(got, dtype=np.uint64)


# Arrow types of the training columns ingest writes (records.TRAINING_COLUMNS but ingested_at)
TRAINING_ARROW = {"contributor_id": "string", "point_id": "uint64", "sha256": "string", "source": "string",
                  "owner": "string", "label": "string", "meta": "string", "height": "int32", "width": "int32",
                  "channels": "int32"}


def insert_training(con: Connection, columns: Mapping[str, Sequence[Any]], ingested_at: datetime) -> None:
    """A batch of training rows, one list per column (records.TRAINING_COLUMNS but
    ingested_at, the same for all: one parameter rather than a list of times). As an Arrow
    table once those are cheap (`arrow_scans_paid`): the other thread of ingest needs the
    GIL that DuckDB holds while it converts list parameters value by value."""
    if not columns or not len(next(iter(columns.values()))):
        return
    names = list(columns)
    if not arrow_scans_paid():
        select = ", ".join(f"unnest(${i + 1}) AS {n}" for i, n in enumerate(names))
        con.execute(f"INSERT INTO training_images ({', '.join(names)}, ingested_at) "
                    f"SELECT {', '.join(names)}, ${len(names) + 1} FROM (SELECT {select})",
                    [list(columns[n]) for n in names] + [ingested_at])
        return
    import pyarrow as pa

    training_batch = pa.table({n: pa.array(columns[n], TRAINING_ARROW.get(n)) for n in names})  # noqa: F841 - read by name below
    con.execute(f"INSERT INTO training_images ({', '.join(names)}, ingested_at) "
                f"SELECT {', '.join(names)}, $1 FROM training_batch", [ingested_at])


def queue_new_training(con: Connection, contributor_ids: Sequence[str], point_ids: Sequence[int], queued_at: datetime,
                       seq: int, generated_exist: bool | None = None) -> None:
    """New training rows wait for a refresh (pending_refresh), when generated images exist
    whose matches they may change; `seq` is their points' write time (payload `ingest_seq`).
    `generated_exist`: `has_generated` as the caller knows it (ingest asks once per run: only
    the store's one writer can value images), else asked here."""
    if generated_exist if generated_exist is not None else has_generated(con):
        n = len(point_ids)
        insert_columns(con, "pending_refresh", {"contributor_id": list(contributor_ids), "point_id": list(point_ids),
                                                "queued_at": [queued_at] * n, "seq": [seq] * n})


def has_generated(con: Connection) -> bool:
    """Whether any generated image was valued in this store."""
    row = con.execute("SELECT EXISTS (SELECT 1 FROM generated_images)").fetchone()
    return bool(row and row[0])


def count_points(con: Connection, table: str) -> int:
    """Rows (= points) of training_images or generated_images."""
    row = con.execute(f"SELECT count(*) FROM {_table(table)}").fetchone()
    return int(row[0]) if row else 0


def point_sources(con: Connection, table: str, point_ids: Sequence[int]) -> list[tuple[int, str]]:
    """(point id, recorded source) of these points' rows."""
    return [(int(r[0]), r[1]) for r in con.execute(
        f"SELECT point_id, source FROM {_table(table)} WHERE point_id IN (SELECT unnest(?))",
        [list(point_ids)]).fetchall()]


def points_with_rows(con: Connection, table: str, point_ids: Sequence[int]) -> set[int]:
    """Those of `point_ids` that have a row in `table`."""
    return {int(r[0]) for r in con.execute(
        f"SELECT point_id FROM {_table(table)} WHERE point_id IN (SELECT unnest(?))", [list(point_ids)]).fetchall()}
