"""`gmv repair` when the ledger is there: vector collections mended to hold exactly the
ledger's points (see `gmv_store.repair`), then every match recomputed from scratch."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from .errors import BadInput, GmvError, SourceChanged, StoreDamaged
from .integrity import begin_repair, check_vector_spec, recreate_views, schema_problems, sum_problems, unfinished_repair
from .ledger import insert_columns, transaction
from .ledger.records import (
    GENERATED_COLUMNS,
    TRAINING_COLUMNS,
    SetRow,
    generated_payload,
    payload_columns,
    payload_set,
    training_payload,
)
from .ledger.sets import insert_set, set_names
from .store import GENERATED, TABLES, TRAINING, Store

BATCH = 256
READ_CHECK = 10_000  # vectors read per call when checking that a collection is readable


def mend_points(store: Store, report, drop_unreadable: bool, k, recall) -> None:
    root = store.root
    resuming = unfinished_repair(root) is not None
    readable = {c: store.vectors.has_collection(c) and _opens(store, c) for c in TABLES}
    # store.json's backends must make the vectors stored: no repair changes them
    check_vector_spec(store, [c for c, ok in readable.items() if ok])
    views = [name for kind, name in schema_problems(store.ledger) if kind == "view"]
    if views:
        begin_repair(root, "ledger views")
        recreate_views(store.ledger, views)
        report.actions.append(f"made the missing view(s) {', '.join(views)} again from their migrations")
    for collection in TABLES:
        if store.vectors.has_collection(collection) and not readable[collection]:
            begin_repair(root, f"vector collection {collection}")
            _set_aside(store, collection, report)
        if not store.vectors.has_collection(collection):
            begin_repair(root, f"vector collection {collection}")
            store.vectors.ensure_collection(collection, store.vector_spec(), store.collection_index(collection))
    store.recover()  # the journal's unfinished writes first: then rows and points must match
    extra: dict[str, set[int]] = {}
    changed = resuming
    for collection, table in TABLES.items():
        rows = {r[0] for r in store.ledger.execute(f"SELECT point_id FROM {table}").fetchall()}
        held = store.vectors.ids(collection)
        if held - rows:
            extra[collection] = held - rows
        if rows - held:
            begin_repair(root, f"vector collection {collection}")
            _reembed_missing(store, report, collection, rows - held, drop_unreadable)
            changed = True
    if extra:
        begin_repair(root, "ledger rows")
        n_train, n_gen, n_sets = rows_from_points(store, report, k, recall, only=extra)
        report.actions.append(f"gave {n_train + n_gen:,} points without ledger rows their rows back from their "
                              f"payloads ({n_train:,} training, {n_gen:,} generated, {n_sets} new set(s))")
        changed = True
    if sum_problems(store.ledger, root):
        begin_repair(root, "running value sums")
        report.actions.append("the running value sums disagreed with the credits")
        changed = True
    if changed and report.finished:
        rematch_all(store)
        report.actions.append("re-matched every generated image from scratch against the vectors")


def _opens(store: Store, collection: str) -> bool:
    """The collection opens and every stored vector of it can be read (a pass over them)."""
    try:
        ids = sorted(store.vectors.ids(collection))
        for i in range(0, len(ids), READ_CHECK):
            for using in store.vector_spec():
                store.vectors.vectors(collection, ids[i:i + READ_CHECK], using)
        return True
    except StoreDamaged:
        return False


def _set_aside(store: Store, collection: str, report) -> None:
    if store.config.engine != "edge":
        raise StoreDamaged(f"vector collection '{collection}' cannot be opened and this engine's files cannot be "
                           f"set aside by gmv; fix: restore {store.vectors_location()} from a backup")
    store.vectors.release(collection)
    path = store.root / "qdrant-edge" / collection
    aside = path.with_name(f"{collection}.damaged-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    report.actions.append(f"kept the damaged vector collection '{collection}' aside as {aside.name}")


def _reembed_missing(store: Store, report, collection: str, missing: set[int], drop: bool) -> None:

    ids = sorted(missing)
    if collection == TRAINING:
        rows = store.ledger.execute(
            "SELECT point_id, contributor_id, sha256, source, owner, label, meta, ingested_at FROM training_images "
            "WHERE point_id IN (SELECT unnest(?)) ORDER BY contributor_id", [ids]).fetchall()
        bad = _reembed(store, TRAINING, rows, lambda r, px: training_payload(
            r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}"), r[7], px.shape), report)
    else:
        rows = store.ledger.execute(
            "SELECT g.point_id, g.set_name, g.generated_id, g.sha256, g.source, g.label, g.quality, g.meta, "
            "g.valued_at, s.k, s.recall, s.exact FROM generated_images g JOIN generated_sets s USING (set_name) "
            "WHERE g.point_id IN (SELECT unnest(?)) ORDER BY 2, 3", [ids]).fetchall()
        bad = _reembed(store, GENERATED, rows, lambda r, px: generated_payload(
            r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7] or "{}"), r[8], r[9], r[10], r[11]), report)
    report.actions.append(f"re-embedded {len(rows) - len(bad):,} missing {collection} points from their sources")
    if bad:
        _unreadable(store, report, collection, bad, drop)


def _reembed(store: Store, collection: str, rows: list[tuple], payload, report) -> list[tuple]:
    """Embed each row's source again, checked against its sha256, and upsert it under its
    old id; returns the rows whose source cannot be read or now holds another image."""
    from .sources.checked import load_checked

    src, sha = (3, 2) if collection == TRAINING else (4, 3)
    bad = []
    for i in range(0, len(rows), BATCH):
        ok, pixels = [], []
        for r in rows[i:i + BATCH]:
            try:
                pixels.append(load_checked(r[src], r[sha], store.root))
                ok.append(r)
            except SourceChanged:
                bad.append((r, "changed"))
            except (GmvError, OSError, ValueError):
                bad.append((r, "unreadable"))
        if ok:
            store.vectors.upsert(collection, [r[0] for r in ok], store.embed(pixels),
                                 [payload(r, px) for r, px in zip(ok, pixels)])
    return bad


def _unreadable(store: Store, report, collection: str, bad: list[tuple], drop: bool) -> None:
    src = 3 if collection == TRAINING else 4
    if not drop:
        report.unreadable += [r[src] for r, why in bad if why == "unreadable"]
        report.changed += [r[src] for r, why in bad if why == "changed"]
        return
    from query.forget import forget_generated, forget_training

    rows = [r for r, _ in bad]
    if collection == TRAINING:
        forget_training(store, [r[1] for r in rows])
    else:
        for set_name in sorted({r[1] for r in rows}):
            forget_generated(store, set_name, [r[2] for r in rows if r[1] == set_name])
    n_changed = sum(why == "changed" for _, why in bad)
    report.actions.append(f"forgot {len(bad):,} {collection} images whose sources cannot be read"
                          + (f" ({n_changed:,} of them now hold another image)" if n_changed else ""))


def rematch_all(store: Store) -> None:
    """Every generated image matched again from the stored vectors, from scratch: credits,
    running sums and recall lists are emptied first, so damage to them cannot carry over.
    This covers whatever refresh work was pending, so the queues are emptied with it."""
    from query.matches import generated_rows, replace_matches
    from query.refresh import rescore

    with transaction(store.ledger) as con:
        for table in ("credits", "value_sums", "recall_lists", "recall_changes"):
            con.execute(f"DELETE FROM {table}")
    rows = generated_rows(store.ledger)
    for i in range(0, len(rows), BATCH):
        part = rows[i:i + BATCH]
        by_set: dict[str, dict] = {}
        for r, m in zip(part, rescore(store, part)):
            by_set.setdefault(r.set_name, {})[r.generated_id] = m
        with transaction(store.ledger) as con:
            for set_name, matches in by_set.items():
                replace_matches(con, set_name, matches, {})
    for table in ("refresh_queue", "pending_refresh", "pending_removal"):
        store.ledger.execute(f"DELETE FROM {table}")


def rows_from_points(store: Store, report, k, recall,
                     only: dict[str, set[int]] | None = None) -> tuple[int, int, int]:
    """Ledger rows made from the points' payloads (every point, or those in `only`), with a
    set row for each set not in the ledger. Returns (training rows, generated rows, new sets)."""
    from .sources.checked import load_checked

    con = store.ledger
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    n_train = n_gen = 0
    with transaction(con):
        for chunk in store.vectors.scroll(TRAINING):
            chunk = [(pid, p) for pid, p in chunk if only is None or pid in only.get(TRAINING, ())]
            for pid, p in chunk:
                if "height" not in p:  # points written before payloads carried the shape
                    try:
                        p["height"], p["width"], p["channels"] = load_checked(p["source"], p["sha256"], store.root).shape
                    except Exception:  # noqa: BLE001 - recorded as 0, said in the report
                        p["height"] = p["width"] = p["channels"] = 0
                        report.unreadable.append(p.get("source", str(pid)))
            insert_columns(con, "training_images", payload_columns(chunk, TRAINING_COLUMNS, "ingested_at", now))
            n_train += len(chunk)
        known = set_names(con)
        sets: dict[str, SetRow] = {}
        for chunk in store.vectors.scroll(GENERATED):
            chunk = [(pid, p) for pid, p in chunk if only is None or pid in only.get(GENERATED, ())]
            for _pid, p in chunk:
                if p["set_name"] not in sets and p["set_name"] not in known:
                    found = payload_set(p, k, recall)
                    if found is None:
                        raise BadInput(f"generated points of set '{p['set_name']}' do not record their k and N; "
                                       "fix: pass --k K --recall N as that set was valued")
                    sets[p["set_name"]] = found
            insert_columns(con, "generated_images", payload_columns(chunk, GENERATED_COLUMNS, "valued_at", now))
            n_gen += len(chunk)
        for found in sets.values():
            insert_set(con, found)
    return n_train, n_gen, len(sets)
