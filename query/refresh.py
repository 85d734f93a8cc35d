"""Keep stored matches equal to a from-scratch valuation when the training set changes.

Each generated image keeps its recall list (`recall_lists`): the exact best candidates of
its recall stage, N of them and a reserve beyond. A training-set change alters a match only
through that list, so refresh brings lists up to date first and the top-k from them:

  * removed training points (`gmv forget`) are dropped from every list holding them; the
    reserve moves up, and no search is needed while a list keeps N candidates;
  * added training points enter a list when they score at least as well as its last
    candidate. Which ones do is asked of Qdrant per generated image — its stored recall
    vector searched among the new points only, no worse than its list's last score — the
    same scores a from-scratch search computes; they are merged in the one ranking order,
    ids deciding ties (`merge.add`).

Then `settle` turns each changed list into the new top-k (unchanged; k best of the old top-k
and the newcomers; or a re-rank among the new recall set), re-scoring from scratch only the
images whose list fell below N. Lists, credits and value sums are written a batch at a time,
values moving by difference. All of it is one ledger transaction with the removal of the
pending entries; the re-scores that remain drain from `refresh_queue` in chunks, one
transaction each, so an interrupted refresh resumes and nothing is counted twice.

Every search refresh makes is among given ids and exact, so under an approximate (HNSW)
recall index it adds no approximation of its own: a list stays what the index returned at
valuation, updated exactly.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gmv_store.backends.base import higher_is_better
from gmv_store.collector import collector_paused
from gmv_store.ingest.write import SEQ
from gmv_store.ledger import queues, transaction
from gmv_store.ledger.connection import Connection
from gmv_store.ledger.credits import (
    generated_counts,
    generated_rows,
    listed_not_queued,
    queued_rows,
    training_count,
    valued_sets,
)
from gmv_store.progress import Progress
from gmv_store.sources.checked import load_checked
from gmv_store.store import GENERATED, TRAINING, Store
from gmv_store.vectors import Query, flat_hits

from .matches import GeneratedRow, Match, read_matches, replace_matches
from .recall_lists import Lists, Moved, add, capacity, drop, read_lists
from .search import ranked, recall_size, search
from .settle import Batch, settle
from .value import candidate_loader

CHUNK = 256                # generated images re-scored per ledger transaction
BATCH = 4096               # generated images brought up to date per numpy batch
FULL_RESCORE_SHARE = 0.25  # more new images than this share of the training set: re-score all


@dataclass
class RefreshReport:
    merged: int = 0            # brought up to date from their recall lists (no recall search)
    reranked: int = 0          # of those, by a re-rank among their new recall set
    queued: int = 0            # queued for a full re-score
    rescored: int = 0          # re-scored from scratch
    changed: int = 0           # whose top-k or distances actually changed
    total_generated: int = 0
    sets: int = 0
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=lambda: {"find": 0.0, "merge": 0.0, "rerank": 0.0, "write": 0.0,
                                                   "rescore": 0.0})
    touched: set[tuple[str, str]] = field(default_factory=set, repr=False)  # (set, generated id) brought up to date

    def summary(self) -> str:
        return (f"re-scored {len(self.touched):,} of {self.total_generated:,} generated images in "
                f"{self.sets} set{'s' if self.sets != 1 else ''} ({self.changed:,} changed; "
                f"{self.merged - self.reranked:,} from their recall lists, {self.reranked:,} re-ranked among them, "
                f"{self.rescored:,} by a new search)")


def _threshold(last: float, metric: str) -> float:
    # a hair looser than the list's last score: a tie with it may still enter (ids decide)
    eps = 1e-6 * max(1.0, abs(last))
    return last - eps if higher_is_better(metric) else last + eps


def pending_filter(store: Store, point_ids: list[int]) -> dict[str, Any]:
    """How a query picks the pending training points: by the range of their write times
    (`ingest_seq` payload; a filter on 1,000 ids is copied into every query and costs about
    twice the search), when exactly those points are in it — else by their ids."""
    lo, with_seq, n = queues.pending_seq_range(store.ledger)
    if n == len(point_ids) and with_seq == n and n and lo is not None:
        store.vectors.ensure_payload_index(TRAINING, SEQ)
        if store.vectors.count(TRAINING, payload_from=(SEQ, lo)) == n:
            return {"payload_from": (SEQ, lo)}
    return {"only_ids": tuple(point_ids)}


def entering(store: Store, rows: list[GeneratedRow], lists: Lists, point_ids: list[int], cap: int,
             n_train: int, among: dict[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per generated image, the given training points that get into its list: Qdrant's recall
    scores of its stored vector against those points only (`among`: how a query picks them,
    see `pending_filter`), at least as good as the list's last score (any, for a list of
    every training image), at most `cap` in the one order. Returns padded (m, E) ids and
    scores, and counts."""
    metric = store.embedder.metric
    vecs = store.vectors.vector_lists(GENERATED, [r.point_id for r in rows], "recall")
    among = among or {"only_ids": tuple(point_ids)}
    last = lists.scores[np.arange(len(lists)), np.maximum(lists.length - 1, 0)]
    thresholds = [None if lists.complete[i] or not lists.length[i] else _threshold(float(last[i]), metric)
                  for i in range(len(lists))]
    # few enter a list (about cap * new / training): ask for a few more than that, and ask
    # again, cut in the one order, where a search came back full
    first = min(cap, len(point_ids), 2 * math.ceil(cap * len(point_ids) / max(n_train, 1)) + 16)
    queries = [Query({"recall": vecs[i]}, using="recall", limit=first, score_threshold=thresholds[i], exact=True,
                     **among) for i in range(len(rows))]
    h_ids, h_scores, got = store.vectors.query_arrays(TRAINING, queries)
    full = np.flatnonzero(got >= first)
    again_ids, again_scores, again = flat_hits(ranked(store.vectors, TRAINING, [queries[i] for i in full], cap, metric))
    count = got.copy()
    count[full] = again
    width = int(count.max()) if len(count) else 0
    e_ids = np.zeros((len(rows), width), dtype=np.uint64)
    e_scores = np.full((len(rows), width), np.nan)
    once = np.ones(len(rows), dtype=bool)  # answered by the first search
    once[full] = False
    cells = (np.arange(width) < got[:, None]) & once[:, None]  # every hit laid in at once, row by row
    kept = np.repeat(once, got)
    e_ids[cells], e_scores[cells] = h_ids[kept], h_scores[kept]
    if len(full):  # asked again, cut in the one order
        cells = np.arange(width) < again[:, None]
        sub_ids, sub_scores = np.zeros((len(full), width), np.uint64), np.full((len(full), width), np.nan)
        sub_ids[cells], sub_scores[cells] = again_ids, again_scores
        e_ids[full], e_scores[full] = sub_ids, sub_scores
    return e_ids, e_scores, count


def apply_changes(store: Store, removed: list[int], added: list[int], report: RefreshReport) -> None:
    """Bring every generated image with a stored list (and not queued for a re-score) up to
    date with removed and added training points (inside the caller's transaction)."""
    con = store.ledger
    n_train = training_count(con)
    removed_ids = np.unique(np.asarray(removed, dtype=np.uint64))
    among = pending_filter(store, added) if added else None
    for s_row in valued_sets(con):
        set_name, k = s_row.set_name, s_row.k
        gids = listed_not_queued(con, set_name)
        n = recall_size(store, k, s_row.recall)
        for s in range(0, len(gids), BATCH):
            with collector_paused():
                _update_batch(store, report, set_name, k, n, gids[s:s + BATCH], removed_ids, added, n_train, among)


def _update_batch(store: Store, report: RefreshReport, set_name: str, k: int, n: int, part: list[str],
                  removed_ids: np.ndarray, added: list[int], n_train: int, among: dict[str, Any] | None) -> None:
    con = store.ledger
    t = time.perf_counter()
    by_id = {r.generated_id: r for r in generated_rows(con, set_name, part)}
    lists = read_lists(con, set_name, part, metric=store.embedder.metric, ordered=False)
    rows = [by_id[g] for g in lists.gids]
    report.timings["merge"] += time.perf_counter() - t
    if len(removed_ids):
        t = time.perf_counter()
        moved = drop(lists, removed_ids)
        report.timings["merge"] += time.perf_counter() - t
        lists, rows = _apply(store, report, set_name, k, n, rows, lists, moved,
                             np.flatnonzero(moved.lists.length < lists.length))
    if added and len(lists):
        t = time.perf_counter()
        e_ids, e_scores, e_len = entering(store, rows, lists, added, capacity(n), n_train, among)
        report.timings["find"] += time.perf_counter() - t
        t = time.perf_counter()
        e_all = np.where(lists.complete, len(added), e_len)
        moved = add(lists, e_ids, e_scores, e_len, capacity(n), store.embedder.metric, e_all=e_all)
        report.timings["merge"] += time.perf_counter() - t
        _apply(store, report, set_name, k, n, rows, lists, moved, np.flatnonzero((moved.new_pos >= 0).any(axis=1)))


def _apply(store: Store, report: RefreshReport, set_name: str, k: int, n: int, rows: list[GeneratedRow],
           lists: Lists, moved: Moved, hit: np.ndarray) -> tuple[Lists, list[GeneratedRow]]:
    """Settle the rows `hit` that one change affected; returns the lists and rows that
    remain (queued ones left out) for the next change."""
    if len(hit):
        if 2 * len(hit) >= len(lists):  # most lists changed: settled where they are (a take copies them all)
            touched = np.zeros(len(lists), dtype=bool)
            touched[hit] = True
            batch = Batch(set_name, k, n, rows, lists, moved, touched)
        else:
            old = lists.take(hit)  # as wide as its own longest list: old_pos is cut to match
            sub = Moved(moved.lists.take(hit), moved.old_pos[hit, :old.ids.shape[1]], moved.new_pos[hit])
            batch = Batch(set_name, k, n, [rows[i] for i in hit], old, sub)
        out = settle(store, batch, report.timings)
        enqueue(store, set_name, out.queued, "refresh")
        report.merged += out.from_lists + out.reranked
        report.reranked += out.reranked
        report.changed += len(out.changed)
        queued = set(out.queued)
        report.touched.update((set_name, lists.gids[i]) for i in hit if lists.gids[i] not in queued)
    else:
        queued = set()
    keep = np.array([g not in queued for g in moved.lists.gids], dtype=bool)
    return moved.lists.take(np.flatnonzero(keep)), [r for r, kp in zip(rows, keep) if kp]


def enqueue(store: Store, set_name: str, gids: list[str], reason: str) -> None:
    queues.queue_refresh(store.ledger, set_name, gids, reason)


def _enqueue_rows(store: Store, rows: list[GeneratedRow], reason: str) -> None:
    by_set: dict[str, list[str]] = {}
    for r in rows:
        by_set.setdefault(r.set_name, []).append(r.generated_id)
    for set_name, gids in by_set.items():
        enqueue(store, set_name, gids, reason)


def queue_all(store: Store, reason: str) -> int:
    """Queue every generated image for a full re-score (after an index build: the approximate
    search may now return other candidates). Pending training-set changes are covered by it."""
    rows = generated_rows(store.ledger)
    with transaction(store.ledger):
        _enqueue_rows(store, rows, reason)
        queues.clear_pending(store.ledger)
    return len(rows)


def refresh_due(con: Connection) -> tuple[int, int]:
    """(training images added or removed and not yet matched, generated images queued for
    re-scoring)."""
    return queues.refresh_due(con)


def rescore(store: Store, rows: list[GeneratedRow]) -> list[Match]:
    """Match stored generated images again from their stored vectors (no re-embedding)."""
    out: dict[tuple[str, str], Match] = {}
    groups: dict[tuple[int, int, bool], list[GeneratedRow]] = {}
    for r in rows:
        groups.setdefault((r.k, r.recall, r.exact), []).append(r)
    for (k, recall, exact), group in groups.items():
        pids = [r.point_id for r in group]
        vecs = {"recall": store.vectors.vectors(GENERATED, pids, "recall")}
        if store.reranker.rerank_kind() == "vector":
            vecs["rerank"] = store.vectors.vectors(GENERATED, pids, "rerank")
        images = ([load_checked(r.source, r.sha256, store.root) for r in group]
                  if store.reranker.rerank_kind() == "pairwise" else None)
        matches = search(store, vecs, k, recall, [r.quality for r in group], images=images,
                         load_candidate=candidate_loader(store), exact=exact)
        out.update(((r.set_name, r.generated_id), m) for r, m in zip(group, matches))
    return [out[(r.set_name, r.generated_id)] for r in rows]


def drain_queue(store: Store, report: RefreshReport, progress: bool = False) -> None:
    con = store.ledger
    bar = Progress("refresh", total=report.queued or None, enabled=progress)
    while True:
        rows = queued_rows(con, CHUNK)
        if not rows:
            queues.clear_refresh_queue(con)  # entries of generated images removed meanwhile
            break
        fresh = rescore(store, rows)
        by_set: dict[str, dict[str, Match]] = {}
        for r, m in zip(rows, fresh):
            by_set.setdefault(r.set_name, {})[r.generated_id] = m
        with transaction(con):
            for set_name, matches in by_set.items():
                gids = list(matches)
                report.changed += replace_matches(con, set_name, matches, read_matches(con, set_name, gids))
                queues.dequeue(con, set_name, gids)
                report.touched.update((set_name, g) for g in gids)
        report.rescored += len(rows)
        bar.update(len(rows))
        store.maybe_snapshot()
    bar.close()


def refresh(store: Store, progress: bool = False) -> RefreshReport:
    """Apply pending removals and additions of training images, then drain the queue."""
    t0 = time.perf_counter()
    con = store.ledger
    report = RefreshReport()
    added = queues.pending_added(con)
    removed = queues.pending_removed(con)
    if added or removed:
        with transaction(con):
            n_train = training_count(con)
            if len(added) > FULL_RESCORE_SHARE * n_train:
                # so many new images that searching among them costs about a full search
                _enqueue_rows(store, generated_rows(con), "ingest")
            else:
                apply_changes(store, removed, added, report)
            queues.clear_pending(con)
    report.queued = queues.queued_count(con)
    t = time.perf_counter()
    drain_queue(store, report, progress=progress)
    report.timings["rescore"] = time.perf_counter() - t
    report.total_generated, report.sets = generated_counts(con)
    report.seconds = time.perf_counter() - t0
    return report
