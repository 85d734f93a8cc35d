"""Checks that a store's parts agree, by counting, not by what a writer last recorded. The
SQL they run lives in `gmv_store.ledger.checks`; this module words what they find.

- `count_problems`: the ledger's rows of each collection against the collection's real
  point count (both ways), and the running value sums against the credits they sum. Each
  is one aggregate (a count of the engine's id tracker, two sums over the ledger), so every
  writer runs it when it opens the store.
- `check_whole`: the schema (the tables and views the migrations make, by name), the
  journal, then the counts.
- The repair marker (`repair.json`): written before `gmv repair` changes anything, removed
  when it is done. While it is there the store is incomplete; writers finish the repair
  first and readers refuse with the fix.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .config import LEDGER_FILE, IndexConfig, StoreConfig
from .errors import DiskFull, StoreDamaged, StoreMismatch

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection

    from .vectors import VectorSpec, VectorStore

# The ledger package imports this module (the repair marker) when it opens a ledger, so
# `gmv_store.ledger.checks` is imported inside the functions that run its checks.

REPAIR_FILE = "repair.json"
SUM_TOLERANCE = 1e-6  # running sums are float64 additions of the same credits in another order


class CheckedStore(Protocol):
    """What the checks read of a `Store` (store.py imports this module)."""

    root: Path
    config: StoreConfig
    ledger: Connection

    @property
    def vectors(self) -> VectorStore: ...
    def recover(self) -> int: ...
    def vector_spec(self) -> dict[str, VectorSpec]: ...
    def collection_index(self, collection: str) -> IndexConfig: ...


def count_problems(ledger: Connection, vectors: VectorStore, root: Path, tables: dict[str, str]) -> list[str]:
    """One line per disagreement, each with the fix. Call with the journal empty (after
    `Store.recover`): then rows and points must be equal in number. A collection the disk has
    no room to open is not counted."""
    from .ledger.checks import row_count

    out = []
    for collection, table in tables.items():
        rows = row_count(ledger, table)
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


def sum_problems(ledger: Connection, root: Path) -> list[str]:
    """The running value sums against the credits they add up (two aggregates)."""
    from .ledger.checks import value_totals

    n_sums, n_credits, v_sums, v_credits = value_totals(ledger)
    if n_sums != n_credits or abs(v_sums - v_credits) > SUM_TOLERANCE * max(1.0, abs(v_sums)):
        return [f"the ledger's running value sums count {n_sums:,} credits ({v_sums:.6g} in all) but the credits "
                f"table holds {n_credits:,} ({v_credits:.6g}); fix: run `gmv repair --store {root}` "
                "(it matches every generated image again)"]
    return []


def check_whole(store: CheckedStore, tables: dict[str, str]) -> None:
    """What a writer checks on opening, after the collections are there: the schema, then the
    journal's unfinished work finished (`Store.recover`), then the counts. StoreDamaged with
    the first problem and the fix."""
    from .ledger.checks import schema_problems

    lacking = schema_problems(store.ledger)
    if lacking:
        names = ", ".join(f"{kind} {name}" for kind, name in lacking)
        raise StoreDamaged(f"ledger {store.root / LEDGER_FILE} lacks {names}; fix: run `gmv repair --store {store.root}`")
    store.recover()
    problems = count_problems(store.ledger, store.vectors, store.root, tables)
    if problems:
        more = f" ({len(problems) - 1} more problem(s): `gmv status` lists them)" if len(problems) > 1 else ""
        raise StoreDamaged(problems[0] + more)


def check_vector_spec(store: CheckedStore, tables: list[str] | dict[str, str]) -> None:
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


def unfinished_repair(root: Path) -> dict[str, Any] | None:
    """The marker of a repair that has not finished (killed, or stopped at unreadable sources)."""
    path = root / REPAIR_FILE
    if not path.exists():
        return None
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        found = None
    return found if isinstance(found, dict) else {"repairing": "unknown", "started": "?"}


def end_repair(root: Path) -> None:
    (root / REPAIR_FILE).unlink(missing_ok=True)


def describe_unfinished(root: Path, marker: dict[str, Any]) -> str:
    return (f"a `gmv repair` of the {marker.get('repairing')} started {marker.get('started')} did not finish, so the "
            f"store is incomplete; fix: run `gmv repair --store {root}` to finish it")
