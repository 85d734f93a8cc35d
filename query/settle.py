"""From changed recall lists to new matches, for a batch of generated images of one set.

Training points were added to or removed from the lists exactly (`merge.add`, `merge.drop`);
each image's new recall set S' is the first N of its new list. Its old top-k was the k best
of the old recall set S by (distance, id), so:

  * nothing left S and nothing entered it: the top-k stands;
  * no top-k member left S: the new top-k is the k best of the old top-k and the newcomers
    to S' (every other member of S' was already behind the k-th) — only the newcomers'
    re-rank distances are asked of Qdrant, by a search among their ids;
  * a top-k member left S: the k best of S' by a re-rank search among the ids of S' (no
    recall search);
  * a list left shorter than N that does not hold every training image: a full re-score.

Without re-ranking (`none`) the top-k is the first k of the list. Distances computed from
images (pairwise re-rankers) cannot be asked of Qdrant: a changed recall set is re-scored.
Every search here is among given ids and exact, so it adds no approximation of an index.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gmv_store.backends.base import ImageReranker
from gmv_store.store import GENERATED, TRAINING, Store
from gmv_store.valuation import credits as eq6_credits
from gmv_store.vectors import Query

from .matches import GeneratedRow, read_topk, replace_credits
from .merge import best_k, columns, isin_rows, score_distances
from .recall_lists import Lists, Moved, write_lists
from .search import ranked


@dataclass
class Batch:
    """Generated images of one set whose lists changed: rows, old lists, the change."""

    set_name: str
    k: int
    n: int                     # recall set size (N, or k without re-ranking)
    rows: list[GeneratedRow]   # aligned with old.gids
    old: Lists
    moved: Moved


@dataclass
class Outcome:
    queued: list[str]          # generated ids that need a full re-score
    from_lists: int = 0        # brought up to date from their lists alone (or newcomers' distances)
    reranked: int = 0          # by a re-rank search among their new recall set
    changed: list[str] = None  # generated ids whose top-k changed


def _recall_sets(b: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(left, fresh, n_new): old candidates that left the recall set (m, W_old); cells of
    the new lists that joined it (m, W_new); new recall set sizes."""
    old, new, mv = b.old, b.moved.lists, b.moved
    n_old = np.minimum(b.n, old.length)
    n_new = np.minimum(b.n, new.length)
    col = np.arange(old.ids.shape[1])
    in_old = old.valid & (col < n_old[:, None])
    pos = mv.old_pos
    left = in_old & ((pos < 0) | (pos >= n_new[:, None]))
    promoted = old.valid & ~in_old & (pos >= 0) & (pos < n_new[:, None])
    fresh = np.zeros(new.ids.shape, dtype=bool)
    r, c = np.nonzero(promoted)
    fresh[r, pos[r, c]] = True
    r, c = np.nonzero((mv.new_pos >= 0) & (mv.new_pos < n_new[:, None]))
    fresh[r, mv.new_pos[r, c]] = True
    return left, fresh, n_new


def _rerank_vectors(store: Store, rows: list[GeneratedRow], idx: np.ndarray) -> list:
    return store.vectors.vector_lists(GENERATED, [rows[i].point_id for i in idx], "rerank") if len(idx) else []


def settle(store: Store, b: Batch, timings: dict) -> Outcome:
    """New top-k for every image of the batch; writes lists and changed credits (caller's
    transaction). Returns which images must be re-scored instead."""
    t = time.perf_counter()
    new = b.moved.lists
    m = len(b.rows)
    left, fresh, n_new = _recall_sets(b)
    moved_set = left.any(axis=1) | fresh.any(axis=1)
    short = (new.length < b.n) & ~new.complete
    top = read_topk(store.ledger, b.set_name, b.old.gids, b.k)
    ids, dist, count = top.ids.copy(), top.distances.copy(), top.count.copy()
    reranker = store.reranker
    rv = reranker.vector_embedder()
    queue = short.copy()
    out = Outcome([])
    if rv is None and not isinstance(reranker, ImageReranker):
        # the recall set is the top-k: its first k, distances from the recall scores
        kk = min(b.k, new.ids.shape[1])
        keep = np.arange(b.k) < np.minimum(n_new, b.k)[:, None]
        ids[:] = 0
        ids[:, :kk] = new.ids[:, :kk]
        dist[:] = np.inf
        dist[:, :kk] = score_distances(new.scores[:, :kk], store.embedder.metric)
        ids, dist, count = np.where(keep, ids, 0).astype(np.uint64), np.where(keep, dist, np.inf), np.minimum(n_new, b.k)
        out.from_lists = int((~queue).sum())
    elif rv is None:
        queue |= moved_set  # pairwise distances come from the images
    else:
        n_left, left_ids = columns(left, b.old.ids)
        lost = (isin_rows(ids, left_ids, np.arange(left_ids.shape[1]) < n_left[:, None])
                & (np.arange(b.k) < count[:, None])).any(axis=1)
        partial = np.flatnonzero(moved_set & lost & ~queue)
        grow = np.flatnonzero(fresh.any(axis=1) & ~lost & ~queue)
        timings["merge"] += time.perf_counter() - t
        t = time.perf_counter()
        _grow(store, b, rv, grow, fresh, ids, dist, count)
        _rerank_among(store, b, rv, partial, n_new, ids, dist, count)
        timings["rerank"] += time.perf_counter() - t
        t = time.perf_counter()
        out.reranked = len(partial)
        out.from_lists = int((~queue).sum()) - len(partial)
    valid_old = np.arange(b.k) < top.count[:, None]
    same = ((count == top.count) & ((ids == top.ids) | ~valid_old).all(axis=1)
            & ((dist == top.distances) | ~valid_old).all(axis=1))
    changed = np.flatnonzero(~same & ~queue)
    out.queued = [b.old.gids[i] for i in np.flatnonzero(queue)]
    out.changed = [b.old.gids[i] for i in changed]
    timings["merge"] += time.perf_counter() - t
    t = time.perf_counter()
    keep = np.flatnonzero(~queue)
    write_lists(store.ledger, b.set_name, new.take(keep))
    replace_credits(store.ledger, b.set_name, out.changed,
                    _credit_rows(b, changed, ids, dist, count))
    timings["write"] += time.perf_counter() - t
    return out


def _grow(store: Store, b: Batch, rv, grow: np.ndarray, fresh: np.ndarray, ids: np.ndarray, dist: np.ndarray,
          count: np.ndarray) -> None:
    """Rows whose top-k stays inside the recall set: the k best of it and the newcomers."""
    if not len(grow):
        return
    new = b.moved.lists
    n_fresh, fresh_ids = columns(fresh[grow], new.ids[grow])
    vecs = _rerank_vectors(store, b.rows, grow)
    hits = store.vectors.query(TRAINING, [
        Query({"rerank": vecs[j]}, using="rerank", limit=int(n_fresh[j]), only_ids=tuple(fresh_ids[j, :n_fresh[j]].tolist()),
              exact=True) for j in range(len(grow))])
    fresh_dist = np.full(fresh_ids.shape, np.inf)
    for j, h in enumerate(hits):
        d = {p: rv_distance(store, rv, s) for p, s in h}
        fresh_dist[j, :n_fresh[j]] = [d[int(p)] for p in fresh_ids[j, :n_fresh[j]]]
    cand_ids = np.concatenate([ids[grow], fresh_ids], axis=1)
    cand_dist = np.concatenate([dist[grow], fresh_dist], axis=1)
    valid = np.concatenate([np.arange(b.k) < count[grow, None], np.arange(fresh_ids.shape[1]) < n_fresh[:, None]], axis=1)
    ids[grow], dist[grow], count[grow] = best_k(cand_ids, cand_dist, valid, b.k)


def _rerank_among(store: Store, b: Batch, rv, partial: np.ndarray, n_new: np.ndarray, ids: np.ndarray,
                  dist: np.ndarray, count: np.ndarray) -> None:
    """Rows that lost a top-k member: the k best of the new recall set, by a search among it."""
    if not len(partial):
        return
    new = b.moved.lists
    vecs = _rerank_vectors(store, b.rows, partial)
    hits = ranked(store.vectors, TRAINING, [
        Query({"rerank": vecs[j]}, using="rerank", limit=b.k, only_ids=tuple(new.ids[i, :n_new[i]].tolist()), exact=True)
        for j, i in enumerate(partial)], b.k, rv.metric)
    for i, h in zip(partial, hits):
        ids[i] = 0
        dist[i] = np.inf
        ids[i, :len(h)] = [p for p, _ in h]
        dist[i, :len(h)] = [rv_distance(store, rv, s) for _, s in h]
        count[i] = len(h)


def rv_distance(store: Store, rv, score: float) -> float:
    return store.reranker.distance_from_score(score, rv.metric)


def _credit_rows(b: Batch, changed: np.ndarray, ids: np.ndarray, dist: np.ndarray, count: np.ndarray) -> pa.Table:
    """Credit rows (Eq. 6, the one implementation) of the images whose top-k changed."""
    n = count[changed]
    keep = np.arange(b.k) < n[:, None]
    credit = np.zeros((len(changed), b.k))
    for j, i in enumerate(changed):
        credit[j, :n[j]] = eq6_credits(dist[i, :n[j]], b.rows[i].quality)
    return pa.table({
        "generated_id": pa.array(np.repeat(np.asarray([b.old.gids[i] for i in changed], dtype=object), n), pa.string()),
        "point_id": ids[changed][keep],
        "rank": np.broadcast_to(np.arange(1, b.k + 1, dtype=np.int32), keep.shape)[keep],
        "distance": dist[changed][keep],
        "credit": credit[keep]})
