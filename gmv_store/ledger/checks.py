"""The ledger's side of the integrity checks (`gmv_store.integrity` words them): the tables
and views it has against those its migrations make, row counts, and the running value sums
against the credits they add up."""
from __future__ import annotations

import re
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # connection imports this module: no import back at run time
    from duckdb import DuckDBPyConnection as Connection

# A table name is put into a statement only from this set (never from input).
COUNTED = frozenset({"training_images", "generated_images"})

_DDL = re.compile(r"\b(?:CREATE\s+(?:OR\s+REPLACE\s+)?(TABLE|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)"
                  r"|DROP\s+(TABLE|VIEW)\s+(?:IF\s+EXISTS\s+)?(\w+)"
                  r"|ALTER\s+(TABLE|VIEW)\s+(\w+)\s+RENAME\s+TO\s+(\w+))", re.IGNORECASE)


@lru_cache(maxsize=8)
def expected_schema(version: int | None = None) -> frozenset[tuple[str, str]]:
    """(kind, name) of every table and view the migrations up to `version` (None: all) make,
    read from their statements (CREATE, DROP, RENAME; a pass over the text, not running them:
    every command opening a ledger checks this). tests/test_repair_trust.py checks it against
    a ledger the migrations made."""
    from ..migrate import load_migrations

    objects = {("table", "schema_migrations")}
    for mig in load_migrations():
        if version is not None and mig.version > version:
            break
        text = re.sub(r"--[^\n]*", "", mig.sql)
        for m in _DDL.finditer(text):
            if m.group(1):
                objects.add((m.group(1).lower(), m.group(2).lower()))
            elif m.group(3):
                objects.discard((m.group(3).lower(), m.group(4).lower()))
            else:
                kind = m.group(5).lower()
                objects.discard((kind, m.group(6).lower()))
                objects.add((kind, m.group(7).lower()))
    return frozenset(objects)


def ledger_objects(con: Connection) -> set[tuple[str, str]]:
    """(kind, name) of the ledger's own tables and views."""
    tables = con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()
    views = con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal AND NOT temporary").fetchall()
    return {("table", r[0]) for r in tables} | {("view", r[0]) for r in views}


def schema_problems(con: Connection) -> list[tuple[str, str]]:
    """The tables and views the ledger's applied migrations make that it lacks, as (kind, name)."""
    have = ledger_objects(con)
    if ("table", "schema_migrations") not in have:
        return [("table", "schema_migrations")]
    version = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return sorted(expected_schema((version[0] if version else None) or 0) - have)


def recreate_views(con: Connection, names: list[str]) -> None:
    """Make missing views again with the definitions the migrations give them."""
    import duckdb

    from ..migrate import migrate

    mem = duckdb.connect(":memory:")
    try:
        migrate(mem)
        for name in names:
            found = mem.execute("SELECT sql FROM duckdb_views() WHERE view_name = ?", [name]).fetchone()
            if found is not None:
                con.execute(found[0])
    finally:
        mem.close()


def row_count(con: Connection, table: str) -> int:
    """Rows of one of the image tables (`COUNTED`)."""
    if table not in COUNTED:
        raise ValueError(f"not an image table: {table!r}")
    found = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(found[0]) if found else 0


def value_totals(con: Connection) -> tuple[int, int, float, float]:
    """(credits the running sums count, credits held, the sums' total, the credits' total):
    two aggregates, cheap enough for every writer to run on opening."""
    found = con.execute(
        "SELECT (SELECT coalesce(sum(n_credits), 0) FROM value_sums), (SELECT count(*) FROM credits), "
        "(SELECT coalesce(sum(value_sum), 0) FROM value_sums), (SELECT coalesce(sum(credit), 0) FROM credits)"
    ).fetchone() or (0, 0, 0.0, 0.0)
    return int(found[0]), int(found[1]), float(found[2]), float(found[3])
