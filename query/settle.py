"""From changed recall lists to new matches, for a batch of generated images of one set.

Training points were added to or removed from the lists exactly (`add`, `drop`); each
image's new recall set S' is the first N of its new list. Besides its top-k, each image
keeps its re-rank line: the top-k and a few runners-up behind them, the exact closest of the
recall set S by (distance, id). So:

  * nothing left S and nothing entered it: the line stands;
  * otherwise the line loses the candidates that left S and takes in the newcomers to S',
    whose re-rank distances are asked of Qdrant (a search among their ids only): every
    other member of S' is behind the line's last remaining member, so the merged line is
    exact up to there; its first k are the new top-k;
  * a line left shorter than k (more of it left S than runners-up stood behind): the k
    closest of S' by a re-rank search among the ids of S' (no recall search);
  * a list left shorter than N that does not hold every training image: a full re-score.

Without re-ranking (`none`) the top-k is the first k of the list. Distances computed from
images (pairwise re-rankers) cannot be asked of Qdrant: a changed recall set is re-scored.
Every search here is among given ids and exact, so it adds no approximation of an index.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gmv_store.backends.base import Embedder, Reranker
from gmv_store.errors import GmvError
from gmv_store.ledger.credits import replace_credits
from gmv_store.store import GENERATED, TRAINING, Store
from gmv_store.valuation import credits_rows as eq6_credits_rows
from gmv_store.vectors import Query

from .matches import GeneratedRow, TopK, read_topk
from .merge import columns, isin_rows, score_distances
from .recall_lists import Lists, Moved, runners_up, write_lists
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
    touched: np.ndarray | None = None  # (m,) bool: the rows the change reached (None: all); the others stand


@dataclass
class Outcome:
    queued: list[str]          # generated ids that need a full re-score
    from_lists: int = 0        # brought up to date from their lists alone (or newcomers' distances)
    reranked: int = 0          # by a re-rank search among their new recall set
    changed: list[str] = field(default_factory=list)  # generated ids whose top-k changed


@dataclass
class Line:
    """The re-rank line of m images: top-k then runners-up, closest first, padded."""

    ids: np.ndarray     # (m, L) uint64
    dist: np.ndarray    # (m, L) float64, inf past `count`
    count: np.ndarray   # (m,)
    every: np.ndarray   # (m,) bool: the line holds the whole recall set

    def valid(self) -> np.ndarray:
        return np.arange(self.ids.shape[1]) < self.count[:, None]


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


def _old_line(b: Batch, top: TopK) -> Line:
    """The stored top-k followed by the stored runners-up."""
    o = b.old
    width = b.k + o.runner_ids.shape[1]
    ids = np.zeros((len(o), width), np.uint64)
    dist = np.full((len(o), width), np.inf)
    ids[:, :b.k], dist[:, :b.k] = top.ids, top.distances
    ids[:, b.k:], dist[:, b.k:] = o.runner_ids, o.runner_dist
    valid = np.concatenate([np.arange(b.k) < top.count[:, None], np.arange(o.runner_ids.shape[1]) < o.n_runners[:, None]],
                           axis=1)
    n, ids, dist = columns(valid, ids, dist, fill=0)  # a short top-k (tiny training set) has no runners
    dist[np.arange(dist.shape[1]) >= n[:, None]] = np.inf
    return Line(ids, dist, n, o.runners_all.copy())


def _rerank_vectors(store: Store, rows: list[GeneratedRow], idx: np.ndarray) -> list[list[float]]:
    return store.vectors.vector_lists(GENERATED, [rows[i].point_id for i in idx], "rerank") if len(idx) else []


def settle(store: Store, b: Batch, timings: dict[str, float]) -> Outcome:
    """New top-k for every image of the batch; writes lists and changed credits (caller's
    transaction). Returns which images must be re-scored instead."""
    t = time.perf_counter()
    new = b.moved.lists
    left, fresh, n_new = _recall_sets(b)
    moved_set = left.any(axis=1) | fresh.any(axis=1)
    touched = np.ones(len(new), dtype=bool) if b.touched is None else b.touched
    queue = (new.length < b.n) & ~new.complete & touched
    top = read_topk(store.ledger, b.set_name, b.old.gids, b.k)
    line = _old_line(b, top)
    reranker = store.reranker
    kind, rv = reranker.rerank_kind(), reranker.vector_embedder()
    out = Outcome([])
    if kind == "none":
        # the recall set is the top-k: its first k, distances from the recall scores
        kk = min(b.k, new.ids.shape[1])
        n = np.minimum(n_new, b.k)
        keep = np.arange(kk) < n[:, None]
        line = Line(np.where(keep, new.ids[:, :kk], 0).astype(np.uint64),
                    np.where(keep, score_distances(new.scores[:, :kk], store.embedder.metric), np.inf), n,
                    np.zeros(len(n), bool))
        out.from_lists = int((~queue & touched).sum())
    elif kind == "pairwise":
        queue |= moved_set  # pairwise distances come from the images
    else:
        assert rv is not None, "a vector re-ranker has a re-rank embedder"
        todo = np.flatnonzero(moved_set & ~queue)
        timings["merge"] += time.perf_counter() - t
        t = time.perf_counter()
        f_ids, f_dist, n_fresh = _fresh_distances(store, b, rv, todo, fresh)
        timings["rerank"] += time.perf_counter() - t
        t = time.perf_counter()
        short = _merge_line(b, line, todo, left, f_ids, f_dist, n_fresh)
        timings["merge"] += time.perf_counter() - t
        t = time.perf_counter()
        _rerank_among(store, b, rv, short, n_new, line)
        timings["rerank"] += time.perf_counter() - t
        t = time.perf_counter()
        out.reranked = len(short)
        out.from_lists = int((~queue & touched).sum()) - len(short)
    ids, dist, count = line.ids[:, :b.k], line.dist[:, :b.k], np.minimum(line.count, b.k)
    if ids.shape[1] < b.k:
        ids = np.pad(ids, ((0, 0), (0, b.k - ids.shape[1])))
        dist = np.pad(dist, ((0, 0), (0, b.k - dist.shape[1])), constant_values=np.inf)
    valid_old = np.arange(b.k) < top.count[:, None]
    same = ((count == top.count) & ((ids == top.ids) | ~valid_old).all(axis=1)
            & ((dist == top.distances) | ~valid_old).all(axis=1))
    changed = np.flatnonzero(~same & ~queue & touched)
    out.queued = [b.old.gids[i] for i in np.flatnonzero(queue)]
    out.changed = [b.old.gids[i] for i in changed]
    n_run = np.maximum(line.count - b.k, 0)
    runners = line.ids[:, b.k:], line.dist[:, b.k:]
    new = new.with_runners(*runners, n_run, line.every) if runners[0].shape[1] else \
        new.with_runners(np.zeros((len(new), 0), np.uint64), np.zeros((len(new), 0)), n_run, line.every)
    timings["merge"] += time.perf_counter() - t
    t = time.perf_counter()
    write_lists(store.ledger, b.set_name, new, rows=np.flatnonzero(~queue & touched))
    replace_credits(store.ledger, b.set_name, out.changed, _credit_rows(b, changed, ids, dist, count))
    timings["write"] += time.perf_counter() - t
    return out


def _fresh_distances(store: Store, b: Batch, rv: Embedder, todo: np.ndarray,
                     fresh: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Re-rank distances of the newcomers to each recall set (rows `todo`), from Qdrant:
    padded (m, F) ids and distances, and counts (rows not in `todo`: none). A row's
    newcomers come back in Qdrant's order, not the list's: `_merge_line` sorts them."""
    new = b.moved.lists
    mask = fresh & np.isin(np.arange(len(fresh)), todo)[:, None]
    n_fresh, f_ids = columns(mask, new.ids)
    f_dist = np.full(f_ids.shape, np.inf)
    asked = np.flatnonzero(n_fresh)
    vecs = _rerank_vectors(store, b.rows, asked)
    h_ids, h_scores, got = store.vectors.query_arrays(TRAINING, [
        Query({"rerank": vecs[j]}, using="rerank", limit=int(n_fresh[i]), only_ids=tuple(f_ids[i, :n_fresh[i]].tolist()),
              exact=True) for j, i in enumerate(asked)])
    if len(asked) and (got != n_fresh[asked]).any():
        raise GmvError("the vector store returned fewer re-rank scores than the points it was asked about; "
                       "fix: run `gmv verify` (a training point may be missing from Qdrant)")
    if len(asked):
        cells = np.arange(f_ids.shape[1]) < n_fresh[asked, None]
        sub_ids, sub_scores = f_ids[asked], np.zeros(cells.shape)
        sub_ids[cells], sub_scores[cells] = h_ids, h_scores
        f_ids[asked] = sub_ids
        f_dist[asked] = np.where(cells, distances_of(store, rv, sub_scores), np.inf)
    return f_ids, f_dist, n_fresh


def distances_of(store: Store, rv: Embedder, scores: np.ndarray) -> np.ndarray:
    """`distance_from_score` over an array: the vectorised twin of the base rule (same float
    operations), or the re-ranker's own method score by score where it has one."""
    rr = store.reranker
    if type(rr).distance_from_score is Reranker.distance_from_score:
        return score_distances(scores, rv.metric)
    out: np.ndarray = np.vectorize(lambda s: rr.distance_from_score(float(s), rv.metric), otypes=[np.float64])(scores)
    return out


def _merge_line(b: Batch, line: Line, todo: np.ndarray, left: np.ndarray, f_ids: np.ndarray, f_dist: np.ndarray,
                n_fresh: np.ndarray) -> np.ndarray:
    """Bring the lines of rows `todo` up to date in place; returns the rows whose line fell
    short of k (they need a re-rank among their recall set)."""
    if not len(todo):
        return todo
    cap = b.k + runners_up(b.k)
    n_left, left_ids = columns(left[todo], b.old.ids[todo])
    keep = line.valid()[todo] & ~isin_rows(line.ids[todo], left_ids, np.arange(left_ids.shape[1]) < n_left[:, None])
    f_valid = np.arange(f_ids.shape[1]) < n_fresh[todo, None]
    ids = np.concatenate([line.ids[todo], f_ids[todo]], axis=1)
    dist = np.concatenate([np.where(keep, line.dist[todo], np.inf), np.where(f_valid, f_dist[todo], np.inf)], axis=1)
    valid = np.concatenate([keep, f_valid], axis=1)
    from_line = np.concatenate([keep, np.zeros(f_valid.shape, bool)], axis=1)
    order = np.lexsort((ids, dist), axis=1)
    ids, dist = np.take_along_axis(ids, order, axis=1), np.take_along_axis(dist, order, axis=1)
    from_line = np.take_along_axis(from_line, order, axis=1)
    total = valid.sum(axis=1)
    # exact up to the last member that was already in the line (a newcomer behind it may
    # trail a recall-set member the line never held) — all of it when the line held all
    last = np.where(from_line, np.arange(ids.shape[1]), -1).max(axis=1, initial=-1)
    every = line.every[todo]
    count = np.minimum(cap, np.where(every, total, last + 1))
    width = max(line.ids.shape[1], cap)
    grown = Line(np.zeros((len(line.count), width), np.uint64), np.full((len(line.count), width), np.inf),
                 line.count.copy(), line.every.copy())
    grown.ids[:, :line.ids.shape[1]], grown.dist[:, :line.ids.shape[1]] = line.ids, line.dist
    w = min(width, ids.shape[1])
    cut = np.arange(w) < count[:, None]
    grown.ids[todo] = 0
    grown.dist[todo] = np.inf
    grown.ids[todo, :w] = np.where(cut, ids[:, :w], 0)
    grown.dist[todo, :w] = np.where(cut, dist[:, :w], np.inf)
    grown.count[todo] = count
    grown.every[todo] = every & (total <= cap)
    line.ids, line.dist, line.count, line.every = grown.ids, grown.dist, grown.count, grown.every
    short: np.ndarray = todo[(count < b.k) & ~line.every[todo]]
    return short


def _rerank_among(store: Store, b: Batch, rv: Embedder, rows: np.ndarray, n_new: np.ndarray, line: Line) -> None:
    """Rows whose line fell short: the closest of the new recall set, by a search among it."""
    if not len(rows):
        return
    new = b.moved.lists
    cap = b.k + runners_up(b.k)
    vecs = _rerank_vectors(store, b.rows, rows)
    hits = ranked(store.vectors, TRAINING, [
        Query({"rerank": vecs[j]}, using="rerank", limit=cap, only_ids=tuple(new.ids[i, :n_new[i]].tolist()), exact=True)
        for j, i in enumerate(rows)], cap, rv.metric)
    for i, h in zip(rows, hits):
        line.ids[i] = 0
        line.dist[i] = np.inf
        line.ids[i, :len(h)] = [p for p, _ in h]
        line.dist[i, :len(h)] = [rv_distance(store, rv, s) for _, s in h]
        line.count[i] = len(h)
        line.every[i] = len(h) < cap


def rv_distance(store: Store, rv: Embedder, score: float) -> float:
    return store.reranker.distance_from_score(score, rv.metric)


def _credit_rows(b: Batch, changed: np.ndarray, ids: np.ndarray, dist: np.ndarray, count: np.ndarray) -> pa.Table:
    """Credit rows (Eq. 6, the one implementation) of the images whose top-k changed."""
    n = count[changed]
    keep = np.arange(b.k) < n[:, None]
    credit = np.zeros((len(changed), b.k))
    quality = np.array([b.rows[i].quality for i in changed], dtype=np.float64)
    for size in np.unique(n):  # images with as many contributors at once (nearly always all k)
        at = np.flatnonzero(n == size)
        credit[at, :size] = eq6_credits_rows(dist[changed[at], :size], quality[at])
    return pa.table({
        "generated_id": pa.array(np.repeat(np.asarray([b.old.gids[i] for i in changed], dtype=object), n), pa.string()),
        "point_id": ids[changed][keep],
        "rank": np.broadcast_to(np.arange(1, b.k + 1, dtype=np.int32), keep.shape)[keep],
        "distance": dist[changed][keep],
        "credit": credit[keep]})
