"""Generated sets: one row per set, made in the same transaction as its first images."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .records import SetRow

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


def get_set(con: Connection, set_name: str) -> SetRow | None:
    row = con.execute("SELECT k, recall, exact FROM generated_sets WHERE set_name = ?", [set_name]).fetchone()
    return None if row is None else SetRow(set_name, int(row[0]), int(row[1]), bool(row[2]))


def set_names(con: Connection) -> set[str]:
    return {r[0] for r in con.execute("SELECT set_name FROM generated_sets").fetchall()}


def insert_set(con: Connection, s: SetRow) -> None:
    con.execute("INSERT INTO generated_sets (set_name, k, recall, exact, created_at) "
                "VALUES (?, ?, ?, ?, current_timestamp)", [s.set_name, s.k, s.recall, s.exact])
