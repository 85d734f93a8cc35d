"""What valuation and refresh read and write: generated images, their credits (top-k rows),
the running value sums and the recall lists (`recall_lists` base + `recall_changes`).

Batches move as Arrow tables registered in DuckDB, one statement per step; values move by
difference. The lists' byte form (BLOBs) is made and read in `query.recall_lists`; here
only their rows are stored and fetched."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..ids import id_bytes_of_points, point_id, points_of_id_bytes
from .connection import insert_columns
from .queues import any_pending_added, queue_refresh
from .records import SetRow

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


def _one(con: Connection, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...]:
    """The one row an aggregate query returns."""
    row = con.execute(sql, list(params)).fetchone()
    assert row is not None, sql  # an aggregate without GROUP BY always returns a row
    return tuple(row)

LIST_TABLES = ("recall_lists", "recall_changes")
# every table holding a row per generated image of a set (credits and sums per contributor)
SET_TABLES = ("credits", "value_sums", "recall_lists", "recall_changes", "refresh_queue", "generated_images")


@dataclass(frozen=True)
class GeneratedRow:
    """A generated image as the ledger records it, with its set's k and N."""

    set_name: str
    generated_id: str
    point_id: int
    sha256: str
    source: str
    label: str | None
    quality: float
    k: int
    recall: int
    exact: bool = False  # the set searches exactly (valued with --exact), not through the index


_GENERATED_SELECT = """
    SELECT g.set_name, g.generated_id, g.point_id, g.sha256, g.source, g.label, g.quality, s.k, s.recall, s.exact
    FROM generated_images g JOIN generated_sets s USING (set_name)"""
_ORDER = " ORDER BY g.set_name, g.generated_id"


def generated_rows(con: Connection, set_name: str | None = None,
                   generated_ids: Sequence[str] | None = None) -> list[GeneratedRow]:
    """Generated images in (set, id) order: all, one set's, or the given ones of one set."""
    where, params = "", list[Any]()
    if set_name is not None:
        where = " WHERE g.set_name = ?"
        params.append(set_name)
        if generated_ids is not None:
            where += " AND g.generated_id IN (SELECT unnest(?))"
            params.append(list(generated_ids))
    return [GeneratedRow(*r) for r in con.execute(_GENERATED_SELECT + where + _ORDER, params).fetchall()]


def queued_rows(con: Connection, limit: int) -> list[GeneratedRow]:
    """The first `limit` generated images queued for a full re-score, in (set, id) order."""
    sql = (_GENERATED_SELECT + " WHERE EXISTS (SELECT 1 FROM refresh_queue q WHERE q.set_name = g.set_name "
           "AND q.generated_id = g.generated_id)" + _ORDER + " LIMIT ?")
    return [GeneratedRow(*r) for r in con.execute(sql, [int(limit)]).fetchall()]


def generated_points(con: Connection, set_name: str, generated_ids: Sequence[str] | None = None) -> list[tuple[str, int]]:
    """(generated id, point id) of a set's images: all of them, or the given ones found."""
    if generated_ids is None:
        return [(r[0], int(r[1])) for r in con.execute(
            "SELECT generated_id, point_id FROM generated_images WHERE set_name = ?", [set_name]).fetchall()]
    return [(r[0], int(r[1])) for r in con.execute(
        "SELECT generated_id, point_id FROM generated_images WHERE set_name = ? AND generated_id IN (SELECT unnest(?))",
        [set_name, list(generated_ids)]).fetchall()]


def valued_sets(con: Connection) -> list[SetRow]:
    """Every generated set, by name."""
    return [SetRow(r[0], int(r[1]), int(r[2]), bool(r[3])) for r in con.execute(
        "SELECT set_name, k, recall, exact FROM generated_sets ORDER BY set_name").fetchall()]


def generated_counts(con: Connection) -> tuple[int, int]:
    """(generated images, sets holding any)."""
    n, sets = _one(con, "SELECT count(*), count(DISTINCT set_name) FROM generated_images")
    return int(n), int(sets)


def any_generated(con: Connection) -> bool:
    return bool(_one(con, "SELECT EXISTS (SELECT 1 FROM generated_images)")[0])


def valued_sha256(con: Connection, set_name: str, sha256s: Sequence[str]) -> set[str]:
    """Which of these contents the set holds already."""
    return {r[0] for r in con.execute("SELECT sha256 FROM generated_images WHERE set_name = ? AND sha256 IN "
                                      "(SELECT unnest(?))", [set_name, list(sha256s)]).fetchall()}


def listed_not_queued(con: Connection, set_name: str) -> list[str]:
    """Generated ids of a set with a stored recall list and not queued for a re-score, by id."""
    return [r[0] for r in con.execute(
        "SELECT generated_id FROM recall_lists r WHERE set_name = ? AND NOT EXISTS (SELECT 1 FROM refresh_queue q "
        "WHERE q.set_name = r.set_name AND q.generated_id = r.generated_id) ORDER BY generated_id",
        [set_name]).fetchall()]


# ----------------------------------------------------------------------------- training rows valuation reads


def training_count(con: Connection) -> int:
    return int(_one(con, "SELECT count(*) FROM training_images")[0])


def has_training(con: Connection) -> bool:
    # the ledger, not an exact count of the collection (a pass over its ids: 0.1 s at 1M)
    return bool(_one(con, "SELECT EXISTS (SELECT 1 FROM training_images)")[0])


def training_source(con: Connection, contributor_id: str) -> tuple[str, str] | None:
    """(source, sha256) of a training image, None where it has no row."""
    row = con.execute("SELECT source, sha256 FROM training_images WHERE contributor_id = ?",
                      [contributor_id]).fetchone()
    return None if row is None else (str(row[0]), str(row[1]))


def point_ids_of(con: Connection, table: str) -> set[int]:
    """The point ids a table of images (`training_images`, `generated_images`) holds."""
    if table not in ("training_images", "generated_images"):
        raise ValueError(f"no point ids in table {table!r}")
    return {int(r[0]) for r in con.execute(f"SELECT point_id FROM {table}").fetchall()}


# ----------------------------------------------------------------------------- credits and value sums


def credit_rows(con: Connection, set_name: str, generated_ids: Sequence[str]) -> list[tuple[str, str, float, float]]:
    """(generated id, contributor id, distance, credit) of these images, by id then rank."""
    return [(r[0], r[1], float(r[2]), float(r[3])) for r in con.execute(
        "SELECT generated_id, contributor_id, distance, credit FROM credits "
        "WHERE set_name = ? AND generated_id IN (SELECT unnest(?)) ORDER BY generated_id, rank",
        [set_name, list(generated_ids)]).fetchall()]


def topk_table(con: Connection, set_name: str, generated_ids: Sequence[str]) -> pa.Table:
    """Credit rows of these images: columns i (position in `generated_ids`), rank, pid
    (training point id), distance, credit; any order."""
    con.register("_gmv_want", pa.table({"i": np.arange(len(generated_ids)),
                                        "generated_id": pa.array(list(generated_ids), pa.string())}))
    try:
        t = con.sql("SELECT w.i, c.rank, c.contributor_id, c.distance, c.credit "
                    "FROM _gmv_want w JOIN credits c ON c.set_name = $1 AND c.generated_id = w.generated_id",
                    params=[set_name]).to_arrow_table()
    finally:
        con.unregister("_gmv_want")
    # the ids' point ids in numpy: SQL's ('0x' || id)::UBIGINT took ~15 ms for 100,000 rows
    return t.set_column(2, "pid", pa.array(point_ids_of_column(t.column("contributor_id")), pa.uint64()))


def id_column(points: np.ndarray) -> pa.StringArray:
    """Contributor ids (`gmv_store.ids.id_of_point`) of point ids, as one Arrow string column."""
    digits = id_bytes_of_points(points)
    offsets = np.arange(0, digits.size + 1, 16, dtype=np.int32)
    return pa.StringArray.from_buffers(len(digits), pa.py_buffer(offsets), pa.py_buffer(digits.tobytes()))


def point_ids_of_column(ids: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Point ids (`gmv_store.ids.point_id`) of a column of 16-hex-digit ids."""
    arr = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    arr = arr.cast(pa.large_string())
    if not len(arr):
        return np.zeros(0, dtype=np.uint64)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    if arr.null_count or not (np.diff(offsets) == 16).all():  # not the id rule's form: one at a time
        return np.array([point_id(x) for x in arr.to_pylist()], dtype=np.uint64)
    raw = np.frombuffer(arr.buffers()[2], dtype=np.uint8)[offsets[0]: offsets[-1]]
    return points_of_id_bytes(raw.reshape(-1, 16))


def replace_credits(con: Connection, set_name: str, changed: Sequence[str], rows: pa.Table, new: bool = False) -> None:
    """Give the generated images `changed` the credit rows `rows` (columns generated_id,
    contributor_id — or point_id —, rank, distance, credit), moving the running value sums
    by the difference (caller's transaction; one statement per step). `new`: the images
    have no credit rows yet (nothing to look up: credits has no index to look it up with)."""
    if not len(changed):
        return
    # the sums' delta reads the rows as given (ids from point ids in SQL, as always): with
    # credits past one row group DuckDB sums on two threads, and how it splits the rows
    # between them follows the plan — another projection moved ~2,000 of 50,000 sums by
    # an ulp against main at 5,000 images (main itself moves a few hundred from run to run)
    cid = "contributor_id" if "contributor_id" in rows.column_names else "printf('%016x', point_id)"
    stored = rows if cid == "contributor_id" else rows.set_column(  # the rows inserted: ids made in numpy,
        rows.column_names.index("point_id"), "contributor_id",  # ~3 ms against printf's ~20 ms per 60,000
        id_column(rows.column("point_id").to_numpy()))
    con.register("_gmv_changed", pa.table({"generated_id": pa.array(list(changed), pa.string())}))
    con.register("_gmv_credits", rows)
    con.register("_gmv_stored", stored)
    try:
        # the change of each contributor's running sum, then one upsert: on DuckDB 2.0, after
        # forgets and many refreshes, an UPDATE ... FROM of 15,000 existing keys took ~0.2 s,
        # the upsert ~0.02 s (a set's first rows, every key new: ~0.06 s either way)
        old = "" if new else """
                SELECT contributor_id, -credit AS c, -1 AS n FROM credits
                WHERE set_name = $1 AND generated_id IN (SELECT generated_id FROM _gmv_changed) UNION ALL"""
        delta = con.sql(f"""
            SELECT contributor_id, sum(c) AS v, sum(n)::INTEGER AS n FROM ({old}
                SELECT {cid} AS contributor_id, credit AS c, 1 AS n FROM _gmv_credits) d
            GROUP BY contributor_id HAVING sum(n) != 0 OR sum(c) != 0""", params=[] if new else [set_name]).to_arrow_table()
        con.register("_gmv_delta", delta)
        con.execute("INSERT INTO value_sums SELECT $1, contributor_id, v, n FROM _gmv_delta "
                    "ON CONFLICT (set_name, contributor_id) DO UPDATE SET "
                    "value_sum = value_sums.value_sum + excluded.value_sum, "
                    "n_credits = value_sums.n_credits + excluded.n_credits", [set_name])
        if not new:
            con.execute("DELETE FROM value_sums WHERE set_name = ? AND n_credits <= 0", [set_name])
            con.execute("DELETE FROM credits WHERE set_name = ? AND generated_id IN "
                        "(SELECT generated_id FROM _gmv_changed)", [set_name])
        con.execute("INSERT INTO credits (set_name, generated_id, contributor_id, rank, distance, credit) "
                    "SELECT $1, generated_id, contributor_id, rank, distance, credit FROM _gmv_stored", [set_name])
    finally:
        for name in ("_gmv_changed", "_gmv_credits", "_gmv_stored", "_gmv_delta"):
            con.unregister(name)


def values_of(con: Connection, contributor_ids: Sequence[str]) -> dict[str, float]:
    """Per set, the summed value of these contributors."""
    return {r[0]: float(r[1]) for r in con.execute(
        "SELECT set_name, sum(value) FROM contributor_values WHERE contributor_id IN (SELECT unnest(?)) GROUP BY 1",
        [list(contributor_ids)]).fetchall()}


def set_total(con: Connection, set_name: str) -> float:
    return float(_one(con, "SELECT coalesce(sum(value_sum), 0) FROM value_sums WHERE set_name = ?", [set_name])[0])


def sum_mismatches(con: Connection, limit: int) -> list[tuple[Any, ...]]:
    """Up to `limit` (set, contributor, running sum, sum of credits, running count, count of
    credits) where a running sum disagrees with the credits it sums."""
    return [tuple(r) for r in con.execute(
        """SELECT coalesce(v.set_name, c.set_name), coalesce(v.contributor_id, c.contributor_id),
                  v.value_sum, c.total, v.n_credits, c.n
           FROM value_sums v FULL OUTER JOIN
                (SELECT set_name, contributor_id, sum(credit) AS total, count(*) AS n FROM credits GROUP BY ALL) c
           USING (set_name, contributor_id)
           WHERE v.value_sum IS NULL OR c.total IS NULL OR abs(v.value_sum - c.total) > 1e-9 OR v.n_credits != c.n
           LIMIT ?""", [int(limit)]).fetchall()]


def orphan_credits(con: Connection) -> int:
    """Credits naming contributors no longer stored."""
    return int(_one(con, "SELECT count(*) FROM credits c LEFT JOIN training_images t USING (contributor_id) "
                         "WHERE t.contributor_id IS NULL")[0])


# ----------------------------------------------------------------------------- generated rows in and out


def insert_generated_rows(con: Connection, rows: Sequence[GeneratedRow], meta_json: str, now: datetime) -> None:
    """The `generated_images` rows of newly valued images of one set (caller's transaction)."""
    insert_columns(con, "generated_images", {
        "set_name": [g.set_name for g in rows], "generated_id": [g.generated_id for g in rows],
        "point_id": [g.point_id for g in rows], "sha256": [g.sha256 for g in rows],
        "source": [g.source for g in rows], "label": [g.label for g in rows], "meta": [meta_json] * len(rows),
        "quality": [g.quality for g in rows], "valued_at": [now] * len(rows),
    })


def queue_if_refresh_pending(con: Connection, set_name: str, generated_ids: Sequence[str]) -> None:
    """Images valued against training images a refresh has yet to merge: their lists hold
    them already, and a merge would count them twice; a re-score by that refresh is exact."""
    if any_pending_added(con):
        queue_refresh(con, set_name, generated_ids, "valued before a refresh")


def remove_generated_rows(con: Connection, set_name: str, generated_ids: Sequence[str]) -> None:
    """Delete these images' rows, recall lists and queue entries (their credits go through
    `replace_credits`, which moves the sums)."""
    for table in ("recall_lists", "recall_changes", "refresh_queue", "generated_images"):
        con.execute(f"DELETE FROM {table} WHERE set_name = ? AND generated_id IN (SELECT unnest(?))",
                    [set_name, list(generated_ids)])


def remove_set(con: Connection, set_name: str) -> None:
    """Every row of a set and the set itself (caller's transaction)."""
    for table in (*SET_TABLES, "generated_sets"):
        con.execute(f"DELETE FROM {table} WHERE set_name = ?", [set_name])


# ----------------------------------------------------------------------------- recall lists

_LIST_COLUMNS = ("r.generated_id, r.ids, r.scores, c.added_ids, c.added_scores, c.dropped_ids, c.length, c.complete, "
                 "c.runner_ids, c.runner_distances, c.runners_all")
_LIST_FROM = "recall_lists r JOIN recall_changes c ON c.set_name = r.set_name AND c.generated_id = r.generated_id"


def list_rows(con: Connection, set_name: str, generated_ids: Sequence[str] | None = None,
              ordered: bool = True) -> pa.Table:
    """The stored list rows (base and changes) of the given images of one set, in the order
    given (`ordered=False`: any order), or of the whole set by id; images without one are
    left out."""
    if generated_ids is None:
        return con.sql(f"SELECT {_LIST_COLUMNS} FROM {_LIST_FROM} WHERE r.set_name = $1 ORDER BY r.generated_id",
                       params=[set_name]).to_arrow_table()
    con.register("_gmv_want", pa.table({"i": np.arange(len(generated_ids)),
                                        "generated_id": pa.array(list(generated_ids), pa.string())}))
    try:
        order = " ORDER BY w.i" if ordered else ""
        return con.sql(f"SELECT {_LIST_COLUMNS} FROM _gmv_want w JOIN {_LIST_FROM} ON r.set_name = $1 "
                       f"AND r.generated_id = w.generated_id{order}", params=[set_name]).to_arrow_table()
    finally:
        con.unregister("_gmv_want")


def store_list_rows(con: Connection, set_name: str, tbl: pa.Table, whole: bool, insert_only: bool) -> None:
    """Replace the list rows of the images in `tbl` (columns generated_id, ids, scores,
    added_ids, added_scores, dropped_ids, length, complete, runner_ids, runner_distances,
    runners_all): their changes always, their base when `whole`; `insert_only`: they have
    none stored yet."""
    con.register("_gmv_lists", tbl)
    try:
        for table, cols, write in (("recall_lists", "ids, scores", whole),
                                   ("recall_changes", "added_ids, added_scores, dropped_ids, length, complete, "
                                    "runner_ids, runner_distances, runners_all", True)):
            if not write:
                continue
            if not insert_only:
                con.execute(f"DELETE FROM {table} WHERE set_name = $1 AND generated_id IN "
                            "(SELECT generated_id FROM _gmv_lists)", [set_name])
            con.execute(f"INSERT INTO {table} SELECT $1, generated_id, {cols} FROM _gmv_lists", [set_name])
    finally:
        con.unregister("_gmv_lists")
