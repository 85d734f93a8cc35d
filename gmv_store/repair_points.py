"""`gmv repair` when the ledger is there: vector collections mended to hold exactly the
ledger's points (see `gmv_store.repair`), then every match recomputed from scratch."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .errors import BadInput, GmvError, SourceChanged, StoreDamaged
from .integrity import begin_repair, check_vector_spec, sum_problems, unfinished_repair
from .ledger import transaction
from .ledger.checks import recreate_views, schema_problems
from .ledger.origins import origins_of
from .ledger.rebuild import (
    StoredGenerated,
    StoredTraining,
    clear_matches,
    clear_refresh_queues,
    generated_rows_of,
    insert_generated_from_payloads,
    insert_training_from_payloads,
    point_ids,
    training_rows_of,
)
from .ledger.records import SetRow, payload_set
from .ledger.sets import insert_set, set_names
from .store import GENERATED, TABLES, TRAINING, Store

Stored = StoredTraining | StoredGenerated

BATCH = 256
READ_CHECK = 10_000  # vectors read per call when checking that a collection is readable


@dataclass
class RepairReport:
    """What `gmv repair` did, what it could not bring back, and what stops it finishing."""
    actions: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)  # what could not be brought back
    unreadable: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # sources that now hold another image
    vectors: list[str] = field(default_factory=list)  # given vectors that cannot be read again, with why
    seconds: float = 0.0

    @property
    def repaired(self) -> bool:
        return bool(self.actions) or not self.finished

    @property
    def finished(self) -> bool:
        return not (self.unreadable or self.changed or self.vectors)


def mend_points(store: Store, report: RepairReport, drop_unreadable: bool, k: int | None,
                recall: int | None) -> None:
    """Collections mended to hold exactly the ledger's points (their views and sums too),
    then, if anything changed, every generated image matched again."""
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
        rows = point_ids(store.ledger, table)
        held = store.vectors.ids(collection)
        if held - rows:
            extra[collection] = held - rows
        if rows - held:
            begin_repair(root, f"vector collection {collection}")
            _rewrite_missing(store, report, collection, rows - held, drop_unreadable)
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


def _set_aside(store: Store, collection: str, report: RepairReport) -> None:
    if store.config.engine != "edge":
        raise StoreDamaged(f"vector collection '{collection}' cannot be opened and this engine's files cannot be "
                           f"set aside by gmv; fix: restore {store.vectors_location()} from a backup")
    from .vectors.edge import EdgeVectorStore

    vectors = store.vectors
    if isinstance(vectors, EdgeVectorStore):  # the engine is edge (above): its files are the collection's
        vectors.release(collection)
    path = store.root / "qdrant-edge" / collection
    aside = path.with_name(f"{collection}.damaged-{datetime.now().strftime('%Y%m%d-%H%M%S')}")
    os.replace(path, aside)
    report.actions.append(f"kept the damaged vector collection '{collection}' aside as {aside.name}")


def _rewrite_missing(store: Store, report: RepairReport, collection: str, missing: set[int], drop: bool) -> None:
    """Write the missing points again under their old ids: vectors given with the data read
    again from their recorded files, the others embedded again from their sources."""
    ids = sorted(missing)
    rows: list[Stored] = list(training_rows_of(store.ledger, ids) if collection == TRAINING
                              else generated_rows_of(store.ledger, ids))
    given = origins_of(store.ledger, collection, ids)
    reread = [r for r in rows if "recall" in given.get(r.point_id, {})]
    rest = [r for r in rows if "recall" not in given.get(r.point_id, {})]
    bad: list[tuple[Stored, str]] = []
    if rest and store.config.embedder.name == "precomputed":  # nothing can compute them
        bad += [(r, f"vectors: {r.source}: no record of the file its vectors were read from (written before gmv "
                    "recorded them, or the ledger was rebuilt from the collections)") for r in rest]
        rest = []
    bad_embedded = _reembed(store, collection, rest)
    bad_read: list[tuple[Stored, str]] = []
    if reread:
        from .repair_vectors import reread_given

        bad_read = reread_given(store, collection, reread, given)
    if rest:
        report.actions.append(f"re-embedded {len(rest) - len(bad_embedded):,} missing {collection} points from their "
                              "sources")
    if reread:
        report.actions.append(f"read the given vectors of {len(reread) - len(bad_read):,} missing {collection} points "
                              "again from their recorded files (each checked against its recorded digest)")
    bad += bad_embedded + bad_read
    if len(bad) == len(rows):
        report.actions.append(f"could write none of the {len(rows):,} missing {collection} points again")
    if bad:
        _unreadable(store, report, collection, bad, drop)


def _reembed(store: Store, collection: str, rows: Sequence[Stored]) -> list[tuple[Stored, str]]:
    """Embed each row's source again, checked against its sha256, and upsert it under its
    old id; returns the rows whose source cannot be read or now holds another image."""
    from .sources.checked import load_checked

    bad: list[tuple[Stored, str]] = []
    for i in range(0, len(rows), BATCH):
        ok, pixels = [], []
        for r in rows[i:i + BATCH]:
            try:
                pixels.append(load_checked(r.source, r.sha256, store.root))
                ok.append(r)
            except SourceChanged:
                bad.append((r, "changed"))
            except (GmvError, OSError, ValueError):
                bad.append((r, "unreadable"))
        if ok:
            store.vectors.upsert(collection, [r.point_id for r in ok], store.embed(pixels), [r.payload() for r in ok])
    return bad


def _unreadable(store: Store, report: RepairReport, collection: str, bad: list[tuple[Stored, str]],
                drop: bool) -> None:
    if not drop:
        report.unreadable += [r.source for r, why in bad if why == "unreadable"]
        report.changed += [r.source for r, why in bad if why == "changed"]
        report.vectors += [why.removeprefix("vectors: ") for _, why in bad if why.startswith("vectors: ")]
        return
    from gmv_store.query.forget import forget_generated, forget_training

    if collection == TRAINING:
        forget_training(store, [r.contributor_id for r, _ in bad if isinstance(r, StoredTraining)])
    else:
        gen = [r for r, _ in bad if isinstance(r, StoredGenerated)]
        for set_name in sorted({r.set_name for r in gen}):
            forget_generated(store, set_name, [r.generated_id for r in gen if r.set_name == set_name])
    n_changed = sum(why == "changed" for _, why in bad)
    n_vectors = sum(why.startswith("vectors: ") for _, why in bad)
    report.actions.append(f"forgot {len(bad):,} {collection} images whose sources cannot be read"
                          + (f" ({n_changed:,} of them now hold another image)" if n_changed else "")
                          + (f" ({n_vectors:,} of them: their given vectors)" if n_vectors else ""))


def rematch_all(store: Store) -> None:
    """Every generated image matched again from the stored vectors, from scratch: credits,
    running sums and recall lists are emptied first, so damage to them cannot carry over.
    This covers whatever refresh work was pending, so the queues are emptied with it."""
    from gmv_store.query.matches import Match, generated_rows, replace_matches
    from gmv_store.query.refresh import rescore

    clear_matches(store.ledger)
    rows = generated_rows(store.ledger)
    for i in range(0, len(rows), BATCH):
        part = rows[i:i + BATCH]
        by_set: dict[str, dict[str, Match]] = {}
        for r, m in zip(part, rescore(store, part)):
            by_set.setdefault(r.set_name, {})[r.generated_id] = m
        with transaction(store.ledger) as con:
            for set_name, matches in by_set.items():
                replace_matches(con, set_name, matches, {})
    clear_refresh_queues(store.ledger)


def rows_from_points(store: Store, report: RepairReport, k: int | None, recall: int | None,
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
            insert_training_from_payloads(con, chunk, now)
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
            insert_generated_from_payloads(con, chunk, now)
            n_gen += len(chunk)
        for found in sets.values():
            insert_set(con, found)
    return n_train, n_gen, len(sets)
