"""The journal: one row per Qdrant write in progress (`Store.adding`/`removing`/`relocating`).
A row outlives its write only when a command was killed; `Store.recover` finishes or undoes
what each names, then removes it."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .connection import arrow_scans_paid

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


@dataclass(frozen=True)
class JournalEntry:
    op_id: int
    collection: str
    point_ids: list[int]
    kind: str


def open_entry(con: Connection, kind: str, collection: str, point_ids: Sequence[int],
               detail: dict[str, Any] | None) -> int:
    """Journal a write about to touch these points; its op id. One statement (each waits
    for the GIL when it ends, which ingest's other thread may hold), the ids as an Arrow
    column once those are cheap (`arrow_scans_paid`), else a list parameter."""
    sql = ("INSERT INTO journal SELECT (SELECT coalesce(max(op_id), 0) + 1 FROM journal), $1, $2, {ids}, $3, "
           "current_timestamp RETURNING op_id")
    params: list[Any] = [kind, collection, json.dumps(detail or {})]
    if arrow_scans_paid():
        import pyarrow as pa

        journal_ids = pa.table({"p": pa.array(point_ids, pa.uint64())})  # noqa: F841 - read by name below
        cur = con.execute(sql.format(ids="(SELECT coalesce(list(p), []::UBIGINT[]) FROM journal_ids)"), params)
    else:
        cur = con.execute(sql.format(ids="$4::UBIGINT[]"), params + [list(point_ids)])
    row = cur.fetchone()
    if row is None:  # pragma: no cover - INSERT ... RETURNING always returns the row
        raise RuntimeError("journal: no op id returned")
    return int(row[0])


def close_entry(con: Connection, op_id: int) -> None:
    con.execute("DELETE FROM journal WHERE op_id = ?", [op_id])


def entries(con: Connection) -> list[JournalEntry]:
    """The unfinished writes, oldest first."""
    return [JournalEntry(int(r[0]), r[1], list(r[2]), r[3]) for r in
            con.execute("SELECT op_id, collection, point_ids, kind FROM journal ORDER BY op_id").fetchall()]


def unfinished_count(con: Connection) -> int:
    row = con.execute("SELECT count(*) FROM journal").fetchone()
    return int(row[0]) if row else 0


def ledger_file(con: Connection) -> Path:
    """The file a ledger connection has open (the ledger or its readers' snapshot)."""
    row = con.execute("SELECT path FROM duckdb_databases() WHERE database_name = current_database()").fetchone()
    if row is None:  # pragma: no cover - DuckDB always lists the current database
        raise RuntimeError("DuckDB lists no current database")
    return Path(row[0])
