"""The refresh queues: training points added (`pending_refresh`) or removed (`pending_removal`)
and not yet merged into the stored matches, and generated images waiting for a full
re-score (`refresh_queue`)."""
from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .connection import insert_columns

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


def _one(con: Connection, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...]:
    """The one row an aggregate query returns."""
    row = con.execute(sql, list(params)).fetchone()
    assert row is not None, sql  # an aggregate without GROUP BY always returns a row
    return tuple(row)


def pending_added(con: Connection) -> list[int]:
    """Point ids of training images added since the last refresh, ascending."""
    return [int(r[0]) for r in con.execute("SELECT point_id FROM pending_refresh ORDER BY point_id").fetchall()]


def pending_removed(con: Connection) -> list[int]:
    """Point ids of training images removed since the last refresh, ascending."""
    return [int(r[0]) for r in con.execute("SELECT point_id FROM pending_removal ORDER BY point_id").fetchall()]


def pending_seq_range(con: Connection) -> tuple[int | None, int, int]:
    """(first write sequence, entries carrying one, entries) of the added training images."""
    lo, with_seq, n = _one(con, "SELECT min(seq), count(seq), count(*) FROM pending_refresh")
    return (None if lo is None else int(lo)), int(with_seq), int(n)


def any_pending_added(con: Connection) -> bool:
    return bool(_one(con, "SELECT EXISTS (SELECT 1 FROM pending_refresh)")[0])


def refresh_due(con: Connection) -> tuple[int, int]:
    """(training images added or removed and not yet matched, generated images queued for
    re-scoring)."""
    pending = _one(con, "SELECT (SELECT count(*) FROM pending_refresh) + (SELECT count(*) FROM pending_removal)")
    return int(pending[0]), queued_count(con)


def queued_count(con: Connection) -> int:
    return int(_one(con, "SELECT count(*) FROM refresh_queue")[0])


def clear_pending(con: Connection) -> None:
    """Forget the added and removed training points (a refresh has merged them, or queued
    every image they could touch)."""
    con.execute("DELETE FROM pending_refresh")
    con.execute("DELETE FROM pending_removal")


def queue_removal(con: Connection, point_ids: Sequence[int]) -> None:
    """Training points removed: stored recall lists may hold them until the next refresh."""
    insert_columns(con, "pending_removal", {"point_id": list(point_ids), "queued_at": [datetime.now()] * len(point_ids)},
                   conflict="ON CONFLICT DO NOTHING")


def unqueue_added(con: Connection, contributor_ids: Sequence[str]) -> None:
    """Training images removed before a refresh merged them: nothing left to merge."""
    con.execute("DELETE FROM pending_refresh WHERE contributor_id IN (SELECT unnest(?))", [list(contributor_ids)])


def queue_refresh(con: Connection, set_name: str, generated_ids: Sequence[str], reason: str) -> None:
    """Queue generated images of one set for a full re-score (already queued ones stay)."""
    if generated_ids:
        insert_columns(con, "refresh_queue", {
            "set_name": [set_name] * len(generated_ids), "generated_id": list(generated_ids),
            "reason": [reason] * len(generated_ids), "queued_at": [datetime.now()] * len(generated_ids),
        }, conflict="ON CONFLICT DO NOTHING")


def dequeue(con: Connection, set_name: str, generated_ids: Sequence[str]) -> None:
    con.execute("DELETE FROM refresh_queue WHERE set_name = ? AND generated_id IN (SELECT unnest(?))",
                [set_name, list(generated_ids)])


def clear_refresh_queue(con: Connection) -> None:
    con.execute("DELETE FROM refresh_queue")
