"""`gmv repair`: bring back a store whose ledger or a vector collection is gone or damaged.

- Ledger missing or unreadable, collections there: the damaged file is kept aside
  (`ledger.duckdb.damaged-TIME`, never deleted) and the ledger is rebuilt — from the read
  snapshot when it holds exactly the points the collections hold, else from the points'
  payloads (each carries its ledger row), every generated image then re-matched from its
  stored vectors. A payload rebuild cannot bring back the audit log of earlier forgets; the
  report says so.
- A collection missing while the ledger has rows: the points are made again by embedding
  each image from its recorded source (same ids), then every match is recomputed.
  Unreadable sources are listed; `drop_unreadable` forgets them instead.
`gmv verify --full` passes afterwards.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .config import LEDGER_FILE, default_store_path, read_config
from .errors import BadInput, StoreDamaged
from .ledger import SNAPSHOT_FILE, connect_ledger, insert_columns, transaction
from .lock import WriterLock
from .store import GENERATED, TABLES, TRAINING, Store

BATCH = 256


@dataclass
class RepairReport:
    actions: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # what could not be brought back
    unreadable: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def repaired(self) -> bool:
        return bool(self.actions)


def repair(path, *, k: int | None = None, recall: int | None = None, drop_unreadable: bool = False,
           wait: float = 0.0) -> RepairReport:
    """Repair what is damaged (nothing when the store is whole). `k`/`recall` are used only
    for sets whose points do not record them."""
    t0 = time.perf_counter()
    root = default_store_path(path)
    config = read_config(root)
    report = RepairReport()
    lock = WriterLock(root, wait=wait)
    try:
        ledger, broken = _open_or_set_aside(root, report)
        store = Store(root, config, ledger, lock)
        try:
            from .migrate import migrate

            migrate(ledger)
            if broken:
                _rebuild_ledger(store, root, report, k, recall)
            else:
                _rebuild_collections(store, report, drop_unreadable)
            store.recover()
            if report.actions:
                store.snapshot()
        finally:
            store._vectors and store._vectors.close()
            store._vectors = None
            ledger.close()
    finally:
        lock.release()
    report.seconds = time.perf_counter() - t0
    return report


def _open_or_set_aside(root: Path, report: RepairReport):
    path = root / LEDGER_FILE
    try:
        return connect_ledger(path), False
    except StoreDamaged:
        if path.exists():
            aside = path.with_name(f"{LEDGER_FILE}.damaged-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
            os.replace(path, aside)
            wal = path.with_name(LEDGER_FILE + ".wal")
            if wal.exists():
                os.replace(wal, aside.with_name(aside.name + ".wal"))
            report.actions.append(f"kept the damaged ledger aside as {aside.name}")
        return connect_ledger(path, create=True), True


# ----------------------------------------------------------------------------- ledger from Qdrant


def _rebuild_ledger(store: Store, root: Path, report: RepairReport, k, recall) -> None:
    for name in TABLES:
        if not store.vectors.has_collection(name):
            raise StoreDamaged(f"the ledger and the vector collection '{name}' are both missing; nothing to rebuild "
                               f"from; fix: restore the store folder {root} from a backup")
    if _restore_snapshot(store, root, report):
        return
    _ledger_from_payloads(store, report, k, recall)
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
        for collection, table in TABLES.items():
            held = {r[0] for r in con.execute(f"SELECT point_id FROM {table}").fetchall()}
            if held != store.vectors.ids(collection):
                return False
        pending = con.execute("SELECT count(*) FROM journal").fetchone()[0]
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


def _ledger_from_payloads(store: Store, report: RepairReport, k, recall) -> None:
    from .sources import load_source

    con = store.ledger
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    n_train = 0
    with transaction(con):
        for chunk in store.vectors.scroll(TRAINING):
            cols = {c: [] for c in ("contributor_id", "point_id", "sha256", "source", "owner", "label", "meta",
                                    "height", "width", "channels", "ingested_at")}
            for pid, p in chunk:
                if "height" not in p:  # points written before payloads carried the shape
                    try:
                        p["height"], p["width"], p["channels"] = load_source(p["source"], store.root).shape
                    except Exception:  # noqa: BLE001 - recorded as 0, said in the report
                        p["height"] = p["width"] = p["channels"] = 0
                        report.unreadable.append(p.get("source", str(pid)))
                for c in cols:
                    cols[c].append(pid if c == "point_id" else p.get(c))
                cols["meta"][-1] = json.dumps(p.get("meta") or {})
                cols["ingested_at"][-1] = _time(p.get("ingested_at"), now)
            insert_columns(con, "training_images", cols)
            n_train += len(chunk)
        sets: dict[str, tuple[int, int, bool]] = {}
        n_gen = 0
        for chunk in store.vectors.scroll(GENERATED):
            cols = {c: [] for c in ("set_name", "generated_id", "point_id", "sha256", "source", "label", "meta",
                                    "quality", "valued_at")}
            for pid, p in chunk:
                if p["set_name"] not in sets:
                    kk, nn = p.get("k", k), p.get("recall", recall)
                    if kk is None or nn is None:
                        raise BadInput(f"generated points of set '{p['set_name']}' do not record their k and N; "
                                       "fix: pass --k K --recall N as that set was valued")
                    sets[p["set_name"]] = (int(kk), int(nn), bool(p.get("exact", False)))
                for c in cols:
                    cols[c].append(pid if c == "point_id" else p.get(c))
                cols["meta"][-1] = json.dumps(p.get("meta") or {})
                cols["valued_at"][-1] = _time(p.get("valued_at"), now)
            insert_columns(con, "generated_images", cols)
            n_gen += len(chunk)
        for name, (kk, nn, exact) in sets.items():
            con.execute("INSERT INTO generated_sets (set_name, k, recall, exact, created_at) "
                        "VALUES (?, ?, ?, ?, current_timestamp)", [name, kk, nn, exact])
    report.actions.append(f"rebuilt the ledger from the vector payloads: {n_train:,} training images, {n_gen:,} "
                          f"generated images in {len(sets)} set(s)")
    _rematch_all(store)
    if n_gen:
        report.actions.append(f"re-matched {n_gen:,} generated images from their stored vectors")


def _time(text, default):
    try:
        return datetime.fromisoformat(text) if text else default
    except ValueError:
        return default


def _rematch_all(store: Store) -> None:
    """Every generated image matched again from the stored vectors; values by difference.
    This covers whatever refresh work was pending, so the queues are emptied with it."""
    from query.matches import generated_rows, read_matches, replace_matches
    from query.refresh import rescore

    rows = generated_rows(store.ledger)
    for i in range(0, len(rows), BATCH):
        part = rows[i:i + BATCH]
        by_set: dict[str, dict] = {}
        for r, m in zip(part, rescore(store, part)):
            by_set.setdefault(r.set_name, {})[r.generated_id] = m
        with transaction(store.ledger) as con:
            for set_name, matches in by_set.items():
                replace_matches(con, set_name, matches, read_matches(con, set_name, list(matches)))
    for table in ("refresh_queue", "pending_refresh", "pending_removal"):
        store.ledger.execute(f"DELETE FROM {table}")


# ----------------------------------------------------------------------------- Qdrant from sources


def _rebuild_collections(store: Store, report: RepairReport, drop_unreadable: bool) -> None:
    from ingest.write import training_payload
    from query.value import generated_payload

    missing = [c for c in TABLES if not store.vectors.has_collection(c)]
    if not missing:
        return
    for collection in missing:
        store.vectors.ensure_collection(collection, store.vector_spec(), store.collection_index(collection))
    if TRAINING in missing:
        rows = store.ledger.execute(
            "SELECT point_id, contributor_id, sha256, source, owner, label, meta, ingested_at FROM training_images "
            "ORDER BY contributor_id").fetchall()
        bad = _reembed(store, TRAINING, rows, lambda r, px: training_payload(
            r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}"), r[7], px.shape))
        report.actions.append(f"re-embedded {len(rows) - len(bad):,} training images from their sources")
        _unreadable(store, report, TRAINING, bad, drop_unreadable)
    if GENERATED in missing:
        rows = store.ledger.execute(
            "SELECT g.point_id, g.set_name, g.generated_id, g.sha256, g.source, g.label, g.quality, g.meta, g.valued_at, "
            "s.k, s.recall, s.exact FROM generated_images g JOIN generated_sets s USING (set_name) ORDER BY 2, 3").fetchall()
        bad = _reembed(store, GENERATED, rows, lambda r, px: generated_payload(
            r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7] or "{}"), r[8], r[9], r[10], r[11]))
        report.actions.append(f"re-embedded {len(rows) - len(bad):,} generated images from their sources")
        _unreadable(store, report, GENERATED, bad, drop_unreadable)
    if not report.unreadable:
        _rematch_all(store)
        report.actions.append("re-matched every generated image against the rebuilt vectors")


def _reembed(store: Store, collection: str, rows: list[tuple], payload) -> list[tuple]:
    """Embed each row's source again and upsert it under its old id; returns unreadable rows."""
    from .sources import load_source

    bad = []
    for i in range(0, len(rows), BATCH):
        ok, pixels = [], []
        for r in rows[i:i + BATCH]:
            try:
                pixels.append(load_source(r[3] if collection == TRAINING else r[4], store.root))
                ok.append(r)
            except Exception:  # noqa: BLE001 - listed in the report
                bad.append(r)
        if ok:
            store.vectors.upsert(collection, [r[0] for r in ok], store.embed(pixels),
                                 [payload(r, px) for r, px in zip(ok, pixels)])
    return bad


def _unreadable(store: Store, report: RepairReport, collection: str, bad: list[tuple], drop: bool) -> None:
    if not bad:
        return
    sources = [r[3] if collection == TRAINING else r[4] for r in bad]
    if not drop:
        report.unreadable += sources
        return
    from query.forget import forget_generated, forget_training

    if collection == TRAINING:
        forget_training(store, [r[1] for r in bad])
    else:
        for set_name in sorted({r[1] for r in bad}):
            forget_generated(store, set_name, [r[2] for r in bad if r[1] == set_name])
    report.actions.append(f"forgot {len(bad):,} {collection} images whose sources cannot be read")
