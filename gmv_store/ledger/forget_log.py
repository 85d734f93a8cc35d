"""Forgetting: which training images a selector names, their removal, and the audit log
(`forget_log`: one row per removal, with the values the removed images held before)."""
from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


def _one(con: Connection, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...]:
    """The one row an aggregate query returns."""
    row = con.execute(sql, list(params)).fetchone()
    assert row is not None, sql  # an aggregate without GROUP BY always returns a row
    return tuple(row)


def training_selected(con: Connection, ids: Sequence[str], owner: str | None, source: str | None,
                      source_inside: str | None) -> list[tuple[str, int]]:
    """(contributor id, point id) of the training images named by id, by owner or by a
    source glob (`source_inside`: the same pattern as a store-relative record), by id."""
    return [(r[0], int(r[1])) for r in con.execute(
        "SELECT contributor_id, point_id FROM training_images WHERE contributor_id IN (SELECT unnest(?)) "
        "OR (? IS NOT NULL AND owner = ?) OR (? IS NOT NULL AND (source GLOB ? OR source GLOB ?)) ORDER BY contributor_id",
        [list(ids), owner, owner, source, source, source_inside]).fetchall()]


def forgotten_training(con: Connection) -> set[str]:
    """Contributor ids forgotten before (running the same forget twice is a no-op)."""
    return {r[0] for r in con.execute("SELECT DISTINCT unnest(ids) FROM forget_log WHERE kind = 'training'").fetchall()}


def remove_training_rows(con: Connection, contributor_ids: Sequence[str]) -> None:
    con.execute("DELETE FROM training_images WHERE contributor_id IN (SELECT unnest(?))", [list(contributor_ids)])


def log_forget(con: Connection, kind: str, selector: str, ids: Sequence[str], values_before: dict[str, Any]) -> int:
    """Append an audit row; returns its forget id."""
    fid = int(_one(con, "SELECT coalesce(max(forget_id), 0) + 1 FROM forget_log")[0])
    con.execute("INSERT INTO forget_log VALUES (?, current_timestamp, ?, ?, ?, ?, ?)",
                [fid, kind, selector, len(ids), list(ids), json.dumps(values_before)])
    return fid
