"""Keep stored matches equal to a from-scratch valuation when the training set changes.

A generated image j's match comes from two stages: the N best candidates by the recall
vector, then the k closest of those by the re-rank distance. New training images can only
alter it by entering j's recall set. Which ones enter is asked of Qdrant per generated image:
j's stored recall vector searched among the new points only, no worse than j's recall floor
— the same scores a from-scratch search computes. Then, from j's stored recall scores:

  * if none of j's top-k can leave the recall set, the new top-k is the old one merged with
    the entering images (their re-rank distances again from Qdrant): applied at once;
  * otherwise (or when a tie at the cut cannot be ordered without the ids of candidates the
    ledger does not keep) j goes to `refresh_queue` and is re-scored from scratch.

Removed training images queue every j whose recall set held one. The queue drains in
chunks, one ledger transaction each, values moving by difference, so an interrupted refresh
resumes where it stopped and nothing is counted twice.
"""
from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from gmv_store.backends.base import ImageReranker, score_to_distance
from gmv_store.ledger import insert_columns, transaction
from gmv_store.progress import Progress
from gmv_store.sources import load_source
from gmv_store.store import GENERATED, TRAINING, Store
from gmv_store.vectors import Hit, Query

from .matches import GeneratedRow, Match, generated_rows, read_matches, replace_matches
from .search import contributor_of, hit_order, ranked, recall_size, search
from .value import candidate_loader

CHUNK = 256                # generated images re-scored per ledger transaction
FULL_RESCORE_SHARE = 0.25  # more new images than this share of the training set: re-score all


@dataclass
class RefreshReport:
    merged: int = 0            # brought up to date without a search (exact merge)
    queued: int = 0            # queued for a full re-score
    rescored: int = 0          # re-scored from scratch
    changed: int = 0           # whose top-k or distances actually changed
    total_generated: int = 0
    sets: int = 0
    seconds: float = 0.0
    timings: dict = field(default_factory=lambda: {"find": 0.0, "merge": 0.0, "rescore": 0.0})
    touched: set = field(default_factory=set)  # (set, generated id) brought up to date

    def summary(self) -> str:
        return (f"re-scored {len(self.touched):,} of {self.total_generated:,} generated images in "
                f"{self.sets} set{'s' if self.sets != 1 else ''} ({self.changed:,} changed; "
                f"{self.merged:,} by merging the new images, {self.rescored:,} by a new search)")


def better(a: float, b: float, metric: str) -> bool:
    """Is recall score a strictly better than b (cosine: higher; euclid: lower)?"""
    return a > b if metric == "cosine" else a < b


def _threshold(floor: float | None, metric: str) -> float | None:
    # a hair looser than the floor: a tie with it may still enter (decided by id below)
    if floor is None:
        return None
    return floor - 1e-6 if metric == "cosine" else floor + 1e-6


def entering(store: Store, rows: list[GeneratedRow], state: dict[str, Match], point_ids: list[int]) -> dict[str, list[Hit]]:
    """Per generated image (by "set\\0id"), the given training points that reach its recall
    set: Qdrant's recall scores of j's vector against only those points, best first."""
    metric = store.embedder.metric
    vecs = store.vectors.vectors(GENERATED, [r.point_id for r in rows], "recall")
    only = tuple(point_ids)
    out: dict[str, list[Hit]] = {}
    by_n: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_n[recall_size(store, r.k, r.recall)].append(i)
    for n, idx in by_n.items():
        queries = []
        for i in idx:
            m = state[_key(rows[i])]
            floor = m.recall_floor if m.n_recalled >= n else None  # a recall set not yet full takes anything
            queries.append(Query({"recall": vecs[i]}, using="recall", limit=n, only_ids=only,
                                 score_threshold=_threshold(floor, metric), exact=True))
        for i, hits in zip(idx, ranked(store.vectors, TRAINING, queries, n, metric)):
            if hits:
                out[_key(rows[i])] = hits
    return out


def _key(r: GeneratedRow) -> str:
    return f"{r.set_name}\0{r.generated_id}"


def _state(store: Store, rows: list[GeneratedRow]) -> dict[str, Match]:
    by_set: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        by_set[r.set_name].append(r.generated_id)
    out = {}
    for set_name, gids in by_set.items():
        for gid, m in read_matches(store.ledger, set_name, gids, with_recall=True).items():
            out[f"{set_name}\0{gid}"] = m
    return out


def competition_ranks(scores: np.ndarray, values, metric: str) -> list[int]:
    """1 + how many recall scores are strictly better than each value (ties share a rank)."""
    s = np.asarray(scores, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    pos = np.searchsorted(-s, -v, "left") if metric == "cosine" else np.searchsorted(s, v, "left")
    return (pos + 1).tolist()


def _merge_one(store: Store, row: GeneratedRow, old: Match, hits: list[Hit], n: int,
               rerank_of: dict[int, float]) -> Match | None:
    """The new match of j when `hits` (new points, canonical order) meet its recall set, or
    None when only a full re-score can tell."""
    metric = store.embedder.metric
    old_scores = np.asarray(old.recall_scores, dtype=np.float64)
    new_scores = np.array([s for _, s in hits], dtype=np.float64)
    merged = np.concatenate([old_scores, new_scores])
    merged = np.sort(merged)[::-1] if metric == "cosine" else np.sort(merged)
    merged = merged[:n]
    cut = merged[-1] if len(merged) >= n else None
    members = old_scores[np.asarray(old.recall_ranks, dtype=int) - 1] if old.contributors else np.zeros(0)
    if store.reranker.vector_embedder() is None:
        # no re-rank: the recall set is the top-k and all its ids are known, so the merge is
        # the first k of old + new in the one ranking order
        key = hit_order(metric)
        cand = sorted([(int(c, 16), s) for c, s in zip(old.contributors, members)] + list(hits), key=key)[: row.k]
        scores = np.array([s for _, s in cand], dtype=np.float64)
        ranks = competition_ranks(scores, scores, metric)
        return Match.scored([(contributor_of(p), score_to_distance(s, metric), r) for (p, s), r in zip(cand, ranks)],
                            scores, row.quality)
    if cut is not None:
        if any(not better(m, cut, metric) for m in members):
            return None  # a top-k member may leave the recall set
        if (new_scores == cut).any() and (old_scores == cut).any():
            return None  # old and new candidates tie at the cut: their ids decide, and old ids are not kept
    # a new point is in when its place among old + new (old ones strictly better, earlier new ones) is < n
    inside = []
    for i, (pid, s) in enumerate(hits):
        n_better_old = int((old_scores > s).sum()) if metric == "cosine" else int((old_scores < s).sum())
        if n_better_old + i < n:
            inside.append((pid, s))
    cand = list(zip(old.contributors, old.distances, members))
    cand += [(contributor_of(p), rerank_of[p], s) for p, s in inside]
    top = sorted(cand, key=lambda c: (c[1], c[0]))[: row.k]
    ranks = competition_ranks(merged, [c[2] for c in top], metric)
    return Match.scored([(c, d, r) for (c, d, _), r in zip(top, ranks)], merged, row.quality)


def merge_new_training(store: Store, point_ids: list[int], report: RefreshReport) -> None:
    """Bring every generated image up to date with a batch of new training points (inside the
    caller's transaction): exact merges are written, the rest queued for a re-score."""
    rows = generated_rows(store.ledger)
    if not rows or not point_ids:
        return
    t = time.perf_counter()
    state = _state(store, rows)
    hits = entering(store, rows, state, point_ids)
    report.timings["find"] += time.perf_counter() - t
    t = time.perf_counter()
    affected = [r for r in rows if _key(r) in hits]
    if isinstance(store.reranker, ImageReranker):
        _enqueue(store, affected, "ingest")  # distances come from the images: re-score
        report.timings["merge"] += time.perf_counter() - t
        return
    rerank = _rerank_distances(store, affected, hits)
    queued: list[GeneratedRow] = []
    fresh: dict[str, dict[str, Match]] = defaultdict(dict)
    for r in affected:
        key = _key(r)
        m = _merge_one(store, r, state[key], hits[key], recall_size(store, r.k, r.recall), rerank.get(key, {}))
        if m is None:
            queued.append(r)
        else:
            fresh[r.set_name][r.generated_id] = m
    for set_name, matches in fresh.items():
        old = {gid: state[f"{set_name}\0{gid}"] for gid in matches}
        report.changed += replace_matches(store.ledger, set_name, matches, old)
        report.merged += len(matches)
        report.touched.update((set_name, gid) for gid in matches)
    _enqueue(store, queued, "ingest")
    report.timings["merge"] += time.perf_counter() - t


def _rerank_distances(store: Store, rows: list[GeneratedRow], hits: dict[str, list[Hit]]) -> dict[str, dict[int, float]]:
    """Re-rank distances from Qdrant between each j and its entering points."""
    rv = store.reranker.vector_embedder()
    if rv is None or not rows:
        return {}
    vecs = store.vectors.vectors(GENERATED, [r.point_id for r in rows], "rerank")
    queries = [Query({"rerank": vecs[i]}, using="rerank", limit=len(hits[_key(r)]),
                     only_ids=tuple(p for p, _ in hits[_key(r)]), exact=True) for i, r in enumerate(rows)]
    res = store.vectors.query(TRAINING, queries)
    return {_key(r): {p: store.reranker.distance_from_score(s, rv.metric) for p, s in h} for r, h in zip(rows, res)}


def queue_for_removed_training(store: Store, point_ids: list[int], contributor_ids: list[str]) -> int:
    """Queue the generated images whose recall set holds any of the images about to be
    removed (inside the caller's transaction, before the rows go)."""
    rows = generated_rows(store.ledger)
    if not rows or not point_ids:
        return 0
    hits = entering(store, rows, _state(store, rows), point_ids)
    affected = [r for r in rows if _key(r) in hits]
    _enqueue(store, affected, "forget")
    return len(affected)


def _enqueue(store: Store, rows: list[GeneratedRow], reason: str) -> None:
    if rows:
        insert_columns(store.ledger, "refresh_queue", {
            "set_name": [r.set_name for r in rows], "generated_id": [r.generated_id for r in rows],
            "reason": [reason] * len(rows), "queued_at": [np.datetime64("now").astype(object)] * len(rows),
        }, conflict="ON CONFLICT DO NOTHING")


def queue_all(store: Store, reason: str) -> int:
    """Queue every generated image for a full re-score (after an index build: the approximate
    search may now return other candidates). Pending new training images are covered by it."""
    rows = generated_rows(store.ledger)
    with transaction(store.ledger):
        _enqueue(store, rows, reason)
        store.ledger.execute("DELETE FROM pending_refresh")
    return len(rows)


def refresh_due(con) -> tuple[int, int]:
    """(training images not yet matched, generated images queued for re-scoring)."""
    return (con.execute("SELECT count(*) FROM pending_refresh").fetchone()[0],
            con.execute("SELECT count(*) FROM refresh_queue").fetchone()[0])


def rescore(store: Store, rows: list[GeneratedRow]) -> list[Match]:
    """Match stored generated images again from their stored vectors (no re-embedding)."""
    out: dict[str, Match] = {}
    groups: dict[tuple[int, int, bool], list[GeneratedRow]] = defaultdict(list)
    for r in rows:
        groups[(r.k, r.recall, r.exact)].append(r)
    for (k, recall, exact), group in groups.items():
        pids = [r.point_id for r in group]
        vecs = {"recall": store.vectors.vectors(GENERATED, pids, "recall")}
        if store.reranker.vector_embedder() is not None:
            vecs["rerank"] = store.vectors.vectors(GENERATED, pids, "rerank")
        images = [load_source(r.source) for r in group] if isinstance(store.reranker, ImageReranker) else None
        matches = search(store, vecs, k, recall, [r.quality for r in group], images=images,
                         load_candidate=candidate_loader(store), exact=exact)
        out.update((_key(r), m) for r, m in zip(group, matches))
    return [out[_key(r)] for r in rows]


def drain_queue(store: Store, report: RefreshReport, progress: bool = False) -> None:
    con = store.ledger
    bar = Progress("refresh", total=report.queued or None, enabled=progress)
    while True:
        rows = generated_rows(con, "EXISTS (SELECT 1 FROM refresh_queue q WHERE q.set_name = g.set_name "
                                   "AND q.generated_id = g.generated_id)", limit=CHUNK)
        if not rows:
            con.execute("DELETE FROM refresh_queue")  # entries of generated images removed meanwhile
            break
        fresh = rescore(store, rows)
        by_set: dict[str, dict[str, Match]] = defaultdict(dict)
        for r, m in zip(rows, fresh):
            by_set[r.set_name][r.generated_id] = m
        with transaction(con):
            for set_name, matches in by_set.items():
                gids = list(matches)
                report.changed += replace_matches(con, set_name, matches, read_matches(con, set_name, gids))
                con.execute("DELETE FROM refresh_queue WHERE set_name = ? AND generated_id IN (SELECT unnest(?))",
                            [set_name, gids])
                report.touched.update((set_name, g) for g in gids)
        report.rescored += len(rows)
        bar.update(len(rows))
        store.maybe_snapshot()
    bar.close()


def refresh(store: Store, progress: bool = False) -> RefreshReport:
    """Match pending training images against generated images, then drain the queue."""
    t0 = time.perf_counter()
    con = store.ledger
    report = RefreshReport()
    pending = [r[0] for r in con.execute("SELECT point_id FROM pending_refresh ORDER BY contributor_id").fetchall()]
    if pending:
        with transaction(con):
            n_train = con.execute("SELECT count(*) FROM training_images").fetchone()[0]
            if len(pending) > FULL_RESCORE_SHARE * n_train:
                # so many new images that searching among them costs about a full search
                _enqueue(store, generated_rows(con), "ingest")
            else:
                merge_new_training(store, pending, report)
            con.execute("DELETE FROM pending_refresh")
    report.queued = con.execute("SELECT count(*) FROM refresh_queue").fetchone()[0]
    t = time.perf_counter()
    drain_queue(store, report, progress=progress)
    report.timings["rescore"] = time.perf_counter() - t
    report.total_generated, report.sets = con.execute(
        "SELECT count(*), count(DISTINCT set_name) FROM generated_images").fetchone()
    report.seconds = time.perf_counter() - t0
    return report
