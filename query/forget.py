"""Removing training images (an owner withdraws consent), generated images or whole sets.

Each removal is one `Store.removing` write: the ledger transaction removes the rows, writes
the audit row, records removed training points in `pending_removal` and journals the Qdrant
deletion; then the points are deleted (an interrupted deletion is finished by
`Store.recover` on the next open). The caller then runs `refresh`, which drops the points
from the recall lists holding them, so credit flows to the next contributors.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gmv_store.errors import BadInput, NotFound
from gmv_store.ledger import queues
from gmv_store.ledger.connection import Connection
from gmv_store.ledger.credits import any_generated, generated_points, remove_set, set_total, values_of
from gmv_store.ledger.forget_log import forgotten_training, log_forget, remove_training_rows, training_selected
from gmv_store.ledger.sets import get_set
from gmv_store.sources.location import to_record
from gmv_store.store import GENERATED, TRAINING, Store

from .matches import remove_generated


@dataclass
class ForgetReport:
    kind: str
    removed: int
    values_before: dict[str, float]
    refresh: Any = None  # the RefreshReport, when the caller ran one after forgetting


def forget_training(store: Store, ids: Sequence[str] = (), owner: str | None = None,
                    source: str | None = None) -> ForgetReport:
    """Remove training images by id, by owner, or by source glob pattern (e.g. '/data/alice/*')."""
    if not ids and owner is None and source is None:
        raise BadInput("nothing to forget; fix: pass contributor IDs, --owner NAME or --source PATTERN")
    con = store.ledger
    # a pattern of files inside the store matches their store-relative record too
    inside = to_record(source, store.root) if source is not None else None
    rows = training_selected(con, ids, owner, source, inside)
    found = {r[0] for r in rows}
    missing = [i for i in ids if i not in found]
    if missing:
        # Ids forgotten earlier are fine (running the same forget twice is a no-op).
        gone = forgotten_training(con)
        unknown = [i for i in missing if i not in gone]
        if unknown:
            raise NotFound(f"contributor id(s) not in the store: {', '.join(unknown[:5])}; nothing was removed")
    if not rows:
        return ForgetReport("training", 0, {})
    cids, pids = [r[0] for r in rows], [r[1] for r in rows]
    selector = " ".join(filter(None, [" ".join(ids), f"--owner {owner}" if owner is not None else "",
                                      f"--source {source}" if source is not None else ""]))
    values_before = values_of(con, cids)
    with store.removing("forget", TRAINING, pids) as con:
        if any_generated(con):
            # generated images valued before may hold them in their recall lists: a refresh is due
            queues.queue_removal(con, pids)
        remove_training_rows(con, cids)
        queues.unqueue_added(con, cids)
        log_forget(con, "training", selector, cids, values_before)
    return ForgetReport("training", len(cids), values_before)


def forget_generated(store: Store, set_name: str, ids: list[str]) -> ForgetReport:
    """Remove single generated images from a set; values of the set are updated by difference."""
    con = store.ledger
    _require_set(con, set_name)
    rows = generated_points(con, set_name, ids)
    missing = sorted(set(ids) - {r[0] for r in rows})
    if missing:
        raise NotFound(f"generated id(s) not in set '{set_name}': {', '.join(missing[:5])}; nothing was removed")
    gids, pids = [r[0] for r in rows], [r[1] for r in rows]
    with store.removing("forget", GENERATED, pids) as con:
        old = remove_generated(con, set_name, gids)
        values_before = {set_name: sum(sum(m.credits) for m in old.values())}
        log_forget(con, "generated", f"--set {set_name} " + " ".join(ids), gids, values_before)
    return ForgetReport("generated", len(gids), values_before)


def forget_set(store: Store, set_name: str) -> ForgetReport:
    """Remove a whole set: its images, credits, value sums and lists."""
    con = store.ledger
    _require_set(con, set_name)
    rows = generated_points(con, set_name)
    gids, pids = [r[0] for r in rows], [r[1] for r in rows]
    total = set_total(con, set_name)
    with store.removing("forget", GENERATED, pids) as con:
        remove_set(con, set_name)
        log_forget(con, "set", set_name, gids, {set_name: total})
    return ForgetReport("set", len(gids), {set_name: total})


def _require_set(con: Connection, set_name: str) -> None:
    if get_set(con, set_name) is None:
        raise NotFound(f"set '{set_name}' does not exist; nothing was removed")
