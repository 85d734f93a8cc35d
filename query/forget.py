"""Removing training images (an owner withdraws consent), generated images or whole sets.

Each removal is one `Store.removing` write: the ledger transaction removes the rows, writes
the audit row, records removed training points in `pending_removal` and journals the Qdrant
deletion; then the points are deleted (an interrupted deletion is finished by
`Store.recover` on the next open). The caller then runs `refresh`, which drops the points
from the recall lists holding them, so credit flows to the next contributors.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from gmv_store.errors import BadInput, NotFound
from gmv_store.ledger import insert_columns
from gmv_store.sources.location import to_record
from gmv_store.store import GENERATED, TRAINING, Store

from .matches import remove_generated


@dataclass
class ForgetReport:
    kind: str
    removed: int
    values_before: dict
    refresh: object = None  # the RefreshReport, when the caller ran one after forgetting


def _log(con, kind: str, selector: str, ids: list[str], values_before: dict) -> None:
    fid = con.execute("SELECT coalesce(max(forget_id), 0) + 1 FROM forget_log").fetchone()[0]
    con.execute("INSERT INTO forget_log VALUES (?, current_timestamp, ?, ?, ?, ?, ?)",
                [fid, kind, selector, len(ids), ids, json.dumps(values_before)])


def forget_training(store: Store, ids: Sequence[str] = (), owner: str | None = None,
                    source: str | None = None) -> ForgetReport:
    """Remove training images by id, by owner, or by source glob pattern (e.g. '/data/alice/*')."""
    if not ids and owner is None and source is None:
        raise BadInput("nothing to forget; fix: pass contributor IDs, --owner NAME or --source PATTERN")
    con = store.ledger
    # a pattern of files inside the store matches their store-relative record too
    inside = to_record(source, store.root) if source is not None else None
    rows = con.execute(
        "SELECT contributor_id, point_id FROM training_images WHERE contributor_id IN (SELECT unnest(?)) "
        "OR (? IS NOT NULL AND owner = ?) OR (? IS NOT NULL AND (source GLOB ? OR source GLOB ?)) ORDER BY contributor_id",
        [list(ids), owner, owner, source, source, inside]).fetchall()
    found = {r[0] for r in rows}
    missing = [i for i in ids if i not in found]
    if missing:
        # Ids forgotten earlier are fine (running the same forget twice is a no-op).
        gone = {r[0] for r in con.execute(
            "SELECT DISTINCT unnest(ids) FROM forget_log WHERE kind = 'training'").fetchall()}
        unknown = [i for i in missing if i not in gone]
        if unknown:
            raise NotFound(f"contributor id(s) not in the store: {', '.join(unknown[:5])}; nothing was removed")
    if not rows:
        return ForgetReport("training", 0, {})
    cids, pids = [r[0] for r in rows], [r[1] for r in rows]
    selector = " ".join(filter(None, [" ".join(ids), f"--owner {owner}" if owner is not None else "",
                                      f"--source {source}" if source is not None else ""]))
    values_before = dict(con.execute(
        "SELECT set_name, sum(value) FROM contributor_values WHERE contributor_id IN (SELECT unnest(?)) GROUP BY 1",
        [cids]).fetchall())
    with store.removing("forget", TRAINING, pids) as con:
        if con.execute("SELECT count(*) FROM generated_images").fetchone()[0]:
            # generated images valued before may hold them in their recall lists: a refresh is due
            insert_columns(con, "pending_removal", {"point_id": pids, "queued_at": [datetime.now()] * len(pids)},
                           conflict="ON CONFLICT DO NOTHING")
        con.execute("DELETE FROM training_images WHERE contributor_id IN (SELECT unnest(?))", [cids])
        con.execute("DELETE FROM pending_refresh WHERE contributor_id IN (SELECT unnest(?))", [cids])
        _log(con, "training", selector, cids, values_before)
    return ForgetReport("training", len(cids), values_before)


def forget_generated(store: Store, set_name: str, ids: list[str]) -> ForgetReport:
    """Remove single generated images from a set; values of the set are updated by difference."""
    con = store.ledger
    _require_set(con, set_name)
    rows = con.execute("SELECT generated_id, point_id FROM generated_images WHERE set_name = ? "
                       "AND generated_id IN (SELECT unnest(?))", [set_name, list(ids)]).fetchall()
    missing = sorted(set(ids) - {r[0] for r in rows})
    if missing:
        raise NotFound(f"generated id(s) not in set '{set_name}': {', '.join(missing[:5])}; nothing was removed")
    gids, pids = [r[0] for r in rows], [r[1] for r in rows]
    with store.removing("forget", GENERATED, pids) as con:
        old = remove_generated(con, set_name, gids)
        values_before = {set_name: sum(sum(m.credits) for m in old.values())}
        _log(con, "generated", f"--set {set_name} " + " ".join(ids), gids, values_before)
    return ForgetReport("generated", len(gids), values_before)


def forget_set(store: Store, set_name: str) -> ForgetReport:
    con = store.ledger
    _require_set(con, set_name)
    rows = con.execute("SELECT generated_id, point_id FROM generated_images WHERE set_name = ?", [set_name]).fetchall()
    gids, pids = [r[0] for r in rows], [r[1] for r in rows]
    total = con.execute("SELECT coalesce(sum(value_sum), 0) FROM value_sums WHERE set_name = ?", [set_name]).fetchone()[0]
    with store.removing("forget", GENERATED, pids) as con:
        for table in ("credits", "value_sums", "recall_lists", "recall_changes", "refresh_queue", "generated_images", "generated_sets"):
            con.execute(f"DELETE FROM {table} WHERE set_name = ?", [set_name])
        _log(con, "set", set_name, gids, {set_name: total})
    return ForgetReport("set", len(gids), {set_name: total})


def _require_set(con, set_name: str) -> None:
    if not con.execute("SELECT count(*) FROM generated_sets WHERE set_name = ?", [set_name]).fetchone()[0]:
        raise NotFound(f"set '{set_name}' does not exist; nothing was removed")
