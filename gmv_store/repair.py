"""`gmv repair`: bring back a store whose ledger or vector collections are gone, damaged or
disagree with each other (found by counting, see `integrity`).

- Ledger missing, unreadable or lacking a table: the damaged file is kept aside
  (`ledger.duckdb.damaged-TIME`, never deleted) and the ledger is rebuilt — from the read
  snapshot when it holds exactly the points the collections hold, else from the points'
  payloads (each carries its ledger row), every generated image then re-matched from its
  stored vectors. A payload rebuild cannot bring back the audit log of earlier forgets; the
  report says so. A missing view is made again from its migration.
- A collection missing, unopenable (kept aside as `NAME.damaged-TIME`) or short of points:
  the missing points are made again by embedding each image from its recorded source (same
  ids), its content checked against the stored sha256, or, for vectors that came with the
  data (`--vectors`), by reading them again from their recorded files, each checked against
  its recorded digest (`repair_vectors`); points without ledger rows get their rows back
  from their payloads; then every match is recomputed from scratch. Sources or vector files
  that cannot be read or now hold something else are listed; `drop_unreadable` forgets those
  images.
- Running sums that disagree with the credits: every match recomputed from scratch.

Journaled like a write: `repair.json` is written before the first change and removed when
the store is whole again; until then writers finish the repair (api._writer) and readers
refuse. A killed repair run again starts over from what the store holds.
`gmv verify --full` passes afterwards.
"""
from __future__ import annotations

import os
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from .config import LEDGER_FILE, default_store_path, read_config
from .errors import StoreDamaged
from .integrity import begin_repair, end_repair, unfinished_repair
from .ledger import SNAPSHOT_FILE, connect_ledger
from .ledger.checks import schema_problems
from .ledger.connection import Connection
from .ledger.rebuild import journal_entries, point_ids
from .lock import WriterLock
from .repair_points import RepairReport as RepairReport  # re-exported: the api's return type
from .repair_points import mend_points, rematch_all, rows_from_points
from .store import TABLES, Store


def repair(path: str | os.PathLike[str] | None, *, k: int | None = None, recall: int | None = None,
           drop_unreadable: bool = False, wait: float = 0.0) -> RepairReport:
    """Repair what is damaged (nothing when the store is whole). `k`/`recall` are used only
    for sets whose points do not record them."""
    t0 = time.perf_counter()
    root = default_store_path(path)
    config = read_config(root)
    report = RepairReport()
    lock = WriterLock(root, wait=wait)
    try:
        marker = unfinished_repair(root)
        if marker is not None:
            report.actions.append(f"finishing the repair of the {marker.get('repairing')} started "
                                  f"{marker.get('started')}")
        ledger, broken = _open_or_set_aside(root, report, marker)
        store = Store(root, config, ledger, lock)
        try:
            from .migrate import migrate

            migrate(store.ledger)
            if broken:
                _rebuild_ledger(store, root, report, k, recall)
            else:
                mend_points(store, report, drop_unreadable, k, recall)
            store.recover()
            if report.actions:
                store.snapshot()
        finally:
            store._vectors and store._vectors.close()
            store._vectors = None
            store.ledger.close()
        if report.finished:
            end_repair(root)
    finally:
        lock.release()
    report.seconds = time.perf_counter() - t0
    return report


def finish_repair(path: str | os.PathLike[str] | None, wait: float = 0.0) -> RepairReport:
    """What a writer runs on a store whose repair did not finish; StoreDamaged if it cannot."""
    root = default_store_path(path)
    report = repair(path, wait=wait)
    if not report.finished:
        raise StoreDamaged(unreadable_line(report, root))
    return report


def unreadable_line(report: RepairReport, root: Path) -> str:
    """The one line saying why a repair stopped short, and the fix."""
    parts = []
    if report.unreadable:
        parts.append(f"{len(report.unreadable):,} recorded sources cannot be read (first: {report.unreadable[0]})")
    if report.changed:
        parts.append(f"{len(report.changed):,} now hold another image than the one stored (first: {report.changed[0]})")
    if report.vectors:
        parts.append(f"the given vectors of {len(report.vectors):,} images cannot be read again (first: "
                     f"{report.vectors[0]})")
    fix = f"restore them and run `gmv repair --store {root}` again, or pass --drop-unreadable to forget those images"
    if report.vectors:
        fix += " (then ingest them again with `gmv ingest --vectors PATH`)"
    return f"the repair cannot finish: {' and '.join(parts)}; fix: {fix}"


def _open_or_set_aside(root: Path, report: RepairReport, marker: dict[str, Any] | None) -> tuple[Connection, bool]:
    """The ledger, or a new empty one (True) after keeping a damaged one aside. A ledger left
    by a killed ledger rebuild is only part of one: it is deleted and the rebuild starts over."""
    path = root / LEDGER_FILE
    if marker is not None and marker.get("repairing") == "ledger":
        for p in (path, path.with_name(LEDGER_FILE + ".wal")):
            p.unlink(missing_ok=True)
        report.actions.append("deleted the part of a ledger an interrupted rebuild had written")
        return connect_ledger(path, create=True), True
    try:
        con = connect_ledger(path)
    except StoreDamaged:
        why = "damaged"
    else:
        lacking = [name for kind, name in schema_problems(con) if kind == "table"]
        if not lacking:
            return con, False
        con.close()
        why = f"lacking table(s) {', '.join(lacking)}"
    begin_repair(root, "ledger")
    if path.exists():
        aside = path.with_name(f"{LEDGER_FILE}.damaged-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
        os.replace(path, aside)
        wal = path.with_name(LEDGER_FILE + ".wal")
        if wal.exists():
            os.replace(wal, aside.with_name(aside.name + ".wal"))
        report.actions.append(f"kept the {why} ledger aside as {aside.name}")
    return connect_ledger(path, create=True), True


# ----------------------------------------------------------------------------- ledger from Qdrant


def _rebuild_ledger(store: Store, root: Path, report: RepairReport, k: int | None, recall: int | None) -> None:
    for name in TABLES:
        if not store.vectors.has_collection(name):
            raise StoreDamaged(f"the ledger and the vector collection '{name}' are both missing; nothing to rebuild "
                               f"from; fix: restore the store folder {root} from a backup")
    if _restore_snapshot(store, root, report):
        return
    n_train, n_gen, n_sets = rows_from_points(store, report, k, recall)
    report.actions.append(f"rebuilt the ledger from the vector payloads: {n_train:,} training images, {n_gen:,} "
                          f"generated images in {n_sets} set(s)")
    rematch_all(store)
    if n_gen:
        report.actions.append(f"re-matched {n_gen:,} generated images from their stored vectors")
    report.lost.append("the audit log of earlier forgets (the `forgotten` view) is not kept in Qdrant")


def _restore_snapshot(store: Store, root: Path, report: RepairReport) -> bool:
    snap = root / SNAPSHOT_FILE
    if not snap.exists():
        return False
    try:
        con = connect_ledger(snap, read_only=True)
    except StoreDamaged:
        return False
    try:
        if schema_problems(con):
            return False
        for collection, table in TABLES.items():
            if point_ids(con, table) != store.vectors.ids(collection):
                return False
        pending = journal_entries(con)
    finally:
        con.close()
    if pending:
        return False
    store.ledger.close()
    shutil.copyfile(snap, root / LEDGER_FILE)
    store.ledger = connect_ledger(root / LEDGER_FILE)
    age = time.time() - snap.stat().st_mtime
    report.actions.append(f"restored the ledger from its read snapshot ({age:.0f}s old; it holds exactly the points "
                          "the vector collections hold)")
    return True
