"""Checks that a store's parts agree, by counting, not by what a writer last recorded.

- `count_problems`: the ledger's rows of each collection against the collection's real
  point count (both ways), and the running value sums against the credits they sum. Each
  is one aggregate (a count of the engine's id tracker, two sums over the ledger), so every
  writer runs it when it opens the store.
- `schema_problems`: the tables and views the migrations make, by name.
- The repair marker (`repair.json`): written before `gmv repair` changes anything, removed
  when it is done. While it is there the store is incomplete; writers finish the repair
  first and readers refuse with the fix.
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path

from .config import LEDGER_FILE
from .errors import DiskFull, StoreDamaged, StoreMismatch

REPAIR_FILE = "repair.json"
SUM_TOLERANCE = 1e-6  # running sums are float64 additions of the same credits in another order


def count_problems(ledger, vectors, root: Path, tables: dict[str, str]) -> list[str]:
    """One line per disagreement, each with the fix. Call with the journal empty (after
    `Store.recover`): then rows and points must be equal in number. A collection the disk has
    no room to open is not counted."""
    out = []
    for collection, table in tables.items():
        rows = ledger.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        if not vectors.has_collection(collection):
            continue  # Store.check_collections names a missing collection
        try:
            points = vectors.count(collection)
        except DiskFull:
            continue  # no room to open it (tmpfs maps it in full): a command that needs it says so
        if points != rows:
            what = ("points are missing" if points < rows else "points have no ledger rows")
            out.append(f"vector collection '{collection}' holds {points:,} points but the ledger {rows:,} "
                       f"{table.replace('_', ' ')} ({what}); fix: run `gmv repair --store {root}`")
    return out + sum_problems(ledger, root)


def sum_problems(ledger, root: Path) -> list[str]:
    """The running value sums against the credits they add up (two aggregates)."""
    n_sums, n_credits, v_sums, v_credits = ledger.execute(
        "SELECT (SELECT coalesce(sum(n_credits), 0) FROM value_sums), (SELECT count(*) FROM credits), "
        "(SELECT coalesce(sum(value_sum), 0) FROM value_sums), (SELECT coalesce(sum(credit), 0) FROM credits)"
    ).fetchone()
    if n_sums != n_credits or abs(v_sums - v_credits) > SUM_TOLERANCE * max(1.0, abs(v_sums)):
        return [f"the ledger's running value sums count {n_sums:,} credits ({v_sums:.6g} in all) but the credits "
                f"table holds {n_credits:,} ({v_credits:.6g}); fix: run `gmv repair --store {root}` "
                "(it matches every generated image again)"]
    return []


def check_whole(store, tables: dict[str, str]) -> None:
    """What a writer checks on opening, after the collections are there: the schema, then the
    journal's unfinished work finished (`Store.recover`), then the counts. StoreDamaged with
    the first problem and the fix."""
    lacking = schema_problems(store.ledger)
    if lacking:
        names = ", ".join(f"{kind} {name}" for kind, name in lacking)
        raise StoreDamaged(f"ledger {store.root / LEDGER_FILE} lacks {names}; fix: run `gmv repair --store {store.root}`")
    store.recover()
    problems = count_problems(store.ledger, store.vectors, store.root, tables)
    if problems:
        more = f" ({len(problems) - 1} more problem(s): `gmv status` lists them)" if len(problems) > 1 else ""
        raise StoreDamaged(problems[0] + more)


def check_vector_spec(store, tables) -> None:
    """StoreMismatch naming both when store.json's backends make other vectors than the
    collections hold (e.g. an edited size): no repair can change stored vectors."""
    from .config import describe_backend

    want = store.vector_spec()
    for name in tables:
        if not store.vectors.has_collection(name):
            continue
        try:
            store.vectors.ensure_collection(name, want, store.collection_index(name))
        except StoreMismatch as e:
            raise StoreMismatch(
                f"{str(e).split('; fix:')[0]}: store.json records embedder {describe_backend(store.config.embedder)}, "
                f"rerank {describe_backend(store.config.rerank)}; fix: restore those parameters in store.json from a "
                "backup (gmv repair cannot change stored vectors), or use a new store") from None


_DDL = re.compile(r"\b(?:CREATE\s+(?:OR\s+REPLACE\s+)?(TABLE|VIEW)\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)"
                  r"|DROP\s+(TABLE|VIEW)\s+(?:IF\s+EXISTS\s+)?(\w+)"
                  r"|ALTER\s+(TABLE|VIEW)\s+(\w+)\s+RENAME\s+TO\s+(\w+))", re.IGNORECASE)


@lru_cache(maxsize=8)
def expected_schema(version: int | None = None) -> frozenset[tuple[str, str]]:
    """(kind, name) of every table and view the migrations up to `version` (None: all) make,
    read from their statements (CREATE, DROP, RENAME; a pass over the text, not running them:
    every command opening a ledger checks this). tests/test_repair_trust.py checks it against
    a ledger the migrations made."""
    from .migrate import load_migrations

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


def _objects(con) -> set[tuple[str, str]]:
    return ({("table", r[0]) for r in con.execute("SELECT table_name FROM duckdb_tables() WHERE NOT temporary")
             .fetchall()}
            | {("view", r[0]) for r in con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal "
                                                   "AND NOT temporary").fetchall()})


def schema_problems(ledger) -> list[tuple[str, str]]:
    """The tables and views the ledger's applied migrations make that it lacks, as (kind, name)."""
    have = _objects(ledger)
    if ("table", "schema_migrations") not in have:
        return [("table", "schema_migrations")]
    version = ledger.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] or 0
    return sorted(expected_schema(version) - have)


def recreate_views(ledger, names) -> None:
    """Make missing views again with the definitions the migrations give them."""
    import duckdb

    from .migrate import migrate

    mem = duckdb.connect(":memory:")
    try:
        migrate(mem)
        for name in names:
            sql = mem.execute("SELECT sql FROM duckdb_views() WHERE view_name = ?", [name]).fetchone()[0]
            ledger.execute(sql)
    finally:
        mem.close()


# ----------------------------------------------------------------------------- the repair marker


def begin_repair(root: Path, what: str) -> None:
    """Record (durably, before any change) that a repair of `what` is under way."""
    path = root / REPAIR_FILE
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        json.dump({"repairing": what, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "pid": os.getpid()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def unfinished_repair(root: Path) -> dict | None:
    """The marker of a repair that has not finished (killed, or stopped at unreadable sources)."""
    path = root / REPAIR_FILE
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"repairing": "unknown", "started": "?"}


def end_repair(root: Path) -> None:
    (root / REPAIR_FILE).unlink(missing_ok=True)


def describe_unfinished(root: Path, marker: dict) -> str:
    return (f"a `gmv repair` of the {marker.get('repairing')} started {marker.get('started')} did not finish, so the "
            f"store is incomplete; fix: run `gmv repair --store {root}` to finish it")
