"""Ranking arithmetic for whole batches of lists at once (pure numpy, no ledger, no Qdrant).

Every ranking here is the one order of `query.search`: better score first, then smaller id
(`order_key` turns scores into "smaller is better"). All scores come from Qdrant, so a merge
orders candidates exactly as a from-scratch search orders the same candidates; ids decide
ties, at the recall cut and at the k-th place alike.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from gmv_store.backends.base import higher_is_better


def order_key(scores: np.ndarray, metric: str) -> np.ndarray:
    """Scores as sort keys, smaller = better (cosine similarity: higher is better); nan -> inf."""
    key = -scores if higher_is_better(metric) else scores.copy()
    key[np.isnan(key)] = np.inf
    return key


def sort_rows(key: np.ndarray, ids: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Per row, the column order of the one ranking order (cells past `length` last)."""
    valid = np.arange(key.shape[1]) < length[:, None]
    return np.lexsort((ids, np.where(valid, key, np.inf)), axis=1)


def merge_positions(a_key: np.ndarray, a_ids: np.ndarray, a_len: np.ndarray, b_key: np.ndarray, b_ids: np.ndarray,
                    b_len: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the cells of two lists go when merged, per row: (a_pos, b_pos). Both lists are
    sorted in the one order; b is short (the points that changed), so each b cell is placed
    by a binary search in its row of a — all b cells of all rows at once, one vectorised
    bisection step at a time (O(b log a) in all, no Python per row)."""
    m, wa = a_key.shape
    wb = b_key.shape[1]
    b_valid = np.arange(wb) < b_len[:, None]
    r, c = np.nonzero(b_valid)
    before = np.zeros((m, wb), dtype=np.int64)  # a cells ahead of each b cell
    before[r, c] = count_ahead(a_key, a_ids, a_len, r, b_key[r, c], b_ids[r, c])
    b_pos = before + np.arange(wb)
    # an a cell moves down by the number of b cells placed ahead of it
    flat = (np.arange(m)[:, None] * (wa + 1) + before)[b_valid]
    ahead = np.cumsum(np.bincount(flat, minlength=m * (wa + 1)).reshape(m, wa + 1), axis=1)[:, :wa]
    return np.arange(wa) + ahead, np.where(b_valid, b_pos, -1)


def count_ahead(a_key: np.ndarray, a_ids: np.ndarray, a_len: np.ndarray, rows: np.ndarray, key: np.ndarray,
                ids: np.ndarray) -> np.ndarray:
    """For each (row, key, id): how many of that row's first a_len cells of (a_key, a_ids),
    sorted in the one order, come before it — smaller key, or equal key and smaller id."""
    lo = np.zeros(len(rows), dtype=np.int64)
    hi = a_len[rows].astype(np.int64)
    if not len(rows) or not a_key.shape[1]:
        return lo
    top = a_key.shape[1] - 1
    while True:
        open_ = np.flatnonzero(lo < hi)
        if not len(open_):
            return lo
        mid = (lo[open_] + hi[open_]) // 2
        at = np.minimum(mid, top)
        k, i = a_key[rows[open_], at], a_ids[rows[open_], at]
        less = (k < key[open_]) | ((k == key[open_]) & (i < ids[open_]))
        lo[open_] = np.where(less, mid + 1, lo[open_])
        hi[open_] = np.where(less, hi[open_], mid)


def place(pos: np.ndarray, valid: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Where the valid cells go in a row-major (m, width) array: (flat indices, which cells)."""
    ok = valid & (pos >= 0) & (pos < width)
    return (np.arange(pos.shape[0])[:, None] * width + pos)[ok], ok


def scatter(shape: tuple[int, int], fill: Any, *parts: tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """An (m, W) array holding each part's values at their `place`s, `fill` elsewhere."""
    out = np.full(shape, fill, dtype=parts[0][0].dtype)
    flat = out.reshape(-1)
    for values, (idx, ok) in parts:
        flat[idx] = values[ok]
    return out


def isin_sorted(values: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    """np.isin for a sorted set of uint64 ids. A table indexed by each id's low bits (ids
    are hash prefixes: their low bits are spread evenly) rules out nearly every value at
    once; only the few left are binary-searched (a refresh checks ~10^6 list cells against
    a few hundred removed ids: a search of every cell cost ~10x more)."""
    if not len(sorted_set):
        return np.zeros(values.shape, dtype=bool)
    bits = int(np.clip(np.ceil(np.log2(64 * len(sorted_set))), 10, 24))
    mask = (1 << bits) - 1  # a Python int: fits any integer dtype of the ids
    table = np.zeros(1 << bits, dtype=bool)
    table[(sorted_set & mask).astype(np.intp)] = True
    flat = values.reshape(-1)
    maybe = np.flatnonzero(table[(flat & mask).astype(np.intp)])
    out = np.zeros(flat.shape, dtype=bool)
    cand = flat[maybe]
    i = np.minimum(np.searchsorted(sorted_set, cand), len(sorted_set) - 1)
    out[maybe] = sorted_set[i] == cand
    return out.reshape(values.shape)


def isin_rows(a: np.ndarray, b: np.ndarray, b_valid: np.ndarray, chunk_cells: int = 1 << 24) -> np.ndarray:
    """(m, A) bool: a[i, j] is among row i's valid b[i, :] (b short)."""
    m, na = a.shape
    nb = b.shape[1]
    out = np.zeros((m, na), dtype=bool)
    if not nb or not m:
        return out
    step = max(1, chunk_cells // max(1, na * nb))
    for s in range(0, m, step):
        eq = (a[s:s + step, :, None] == b[s:s + step, None, :]) & b_valid[s:s + step, None, :]
        out[s:s + step] = eq.any(axis=2)
    return out


def columns(mask: np.ndarray, *arrays: np.ndarray, fill: Any = 0) -> tuple[np.ndarray, ...]:
    """Per row, the cells where mask holds, moved to the front (their order kept), padded
    with `fill`; returns the counts first. (Boolean indexing reads and writes row-major, so
    a[mask] lands in the first count cells of each row: no sort.)"""
    count = mask.sum(axis=1)
    width = int(count.max()) if len(count) else 0
    keep = np.arange(width) < count[:, None]
    out = [count]
    for a in arrays:
        taken = np.full((mask.shape[0], width), fill, dtype=a.dtype)
        taken[keep] = a[mask]
        out.append(taken)
    return tuple(out)


def best_k(ids: np.ndarray, dist: np.ndarray, valid: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row, the k closest valid candidates by (distance, id): (ids, distances, count)."""
    d = np.where(valid, dist, np.inf)
    order = np.lexsort((ids, d), axis=1)[:, :k]
    count = np.minimum(valid.sum(axis=1), k)
    keep = np.arange(order.shape[1]) < count[:, None]
    return (np.where(keep, np.take_along_axis(ids, order, axis=1), 0).astype(np.uint64),
            np.where(keep, np.take_along_axis(d, order, axis=1), np.inf), count)


def score_distances(scores: np.ndarray, metric: str) -> np.ndarray:
    """`score_to_distance` for arrays: the same float operations, so the same numbers."""
    return 1.0 - scores if metric == "cosine" else -scores if metric == "dot" else scores.copy()


def rebuild(base_ids: np.ndarray, base_scores: np.ndarray, base_len: np.ndarray, add_ids: np.ndarray,
            add_scores: np.ndarray, add_len: np.ndarray, dropped: np.ndarray, n_dropped: np.ndarray,
            length: np.ndarray, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lists from their stored form, laid end to end row by row (flat): a base in the one
    order; the ids of its cells that were dropped (`dropped`: padded (m, D), per row); the
    candidates added since, in the one order; and the length each list has now (a merge
    may leave base cells past it). Returns the padded (m, max length) ids, scores and
    `based` (the cell comes from the base).

    The added cells are few: each is placed by a binary search in its row of the base;
    the kept base cells then fill the other places in order (row-major boolean indexing),
    so the base is read about twice rather than padded, compacted and shifted."""
    m = len(base_len)
    offsets = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(base_len, out=offsets[1:])
    keep = np.ones(len(base_ids), dtype=bool)
    gone = _gone_cells(base_ids, offsets, dropped, n_dropped)
    keep[gone] = False
    n_keep = base_len - np.bincount(np.searchsorted(offsets, gone, "right") - 1, minlength=m)
    # each added cell's place: base cells ahead of it, less the dropped ones among them,
    # plus the added cells ahead of it in its own row
    a_starts = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(add_len, out=a_starts[1:])
    ra = np.repeat(np.arange(m), add_len)
    sign = -1.0 if higher_is_better(metric) else 1.0
    lo = offsets[ra]
    ahead = _bisect(base_scores, base_ids, sign, lo, lo + base_len[ra], add_scores, add_ids)
    ahead -= np.searchsorted(gone, ahead, "left") - np.searchsorted(gone, lo, "left")
    pos = ahead - lo + np.arange(len(ra)) - a_starts[ra]
    inside = pos < length[ra]
    n_in = np.bincount(ra[inside], minlength=m)
    fill = np.minimum(length, n_keep + n_in)  # cells the row holds (`length` unless the store is short of them)
    take = fill - n_in  # the first `take` kept base cells of each row stay, the rest fall past its end
    cut = np.flatnonzero(take < n_keep)
    if len(cut):
        # the first kept cell past `take`: the least s with s = row start + take + (dropped
        # cells in [row start, s]), found by iterating from s = row start + take (few drops a row)
        first, start = offsets[cut], offsets[cut] + take[cut]
        while True:
            nxt = first + take[cut] + np.searchsorted(gone, start, "right") - np.searchsorted(gone, first, "left")
            if (nxt == start).all():
                break
            start = nxt
        n_tail = offsets[cut + 1] - start
        tail = np.repeat(start - np.cumsum(n_tail) + n_tail, n_tail) + np.arange(int(n_tail.sum()))
        keep[tail] = False
    width = int(length.max()) if m else 0
    based = np.arange(width) < fill[:, None]
    at = ra[inside] * width + pos[inside]
    based.reshape(-1)[at] = False
    ids = np.zeros((m, width), dtype=np.uint64)
    scores = np.full((m, width), np.nan)
    ids[based], scores[based] = base_ids[keep], base_scores[keep]
    ids.reshape(-1)[at], scores.reshape(-1)[at] = add_ids[inside], add_scores[inside]
    return ids, scores, based


def _gone_cells(ids: np.ndarray, offsets: np.ndarray, dropped: np.ndarray, n_dropped: np.ndarray) -> np.ndarray:
    """Sorted flat indices of the cells whose id is among their own row's dropped ids
    (rows laid end to end, `offsets`). Cells whose id no row dropped are ruled out at once
    (`isin_sorted`); the few others are checked against their own row's drops."""
    every = np.unique(dropped[np.arange(dropped.shape[1]) < n_dropped[:, None]])
    if not len(every):
        return np.zeros(0, dtype=np.int64)
    maybe = np.flatnonzero(isin_sorted(ids, every))
    r = np.searchsorted(offsets, maybe, "right") - 1
    own = ((dropped[r] == ids[maybe][:, None]) & (np.arange(dropped.shape[1]) < n_dropped[r, None])).any(axis=1)
    out: np.ndarray = maybe[own]
    return out


def _bisect(scores: np.ndarray, ids: np.ndarray, sign: float, lo: np.ndarray, hi: np.ndarray, score: np.ndarray,
            pid: np.ndarray) -> np.ndarray:
    """For each (lo, hi, score, pid): the first index in [lo, hi) of the flat cells — sorted
    there in the one order (`sign` * score, then id) — that does not come before it."""
    lo, hi = lo.copy(), hi.copy()
    key = sign * score
    while True:
        open_ = np.flatnonzero(lo < hi)
        if not len(open_):
            return lo
        mid = (lo[open_] + hi[open_]) // 2
        k, i = sign * scores[mid], ids[mid]
        less = (k < key[open_]) | ((k == key[open_]) & (i < pid[open_]))
        lo[open_] = np.where(less, mid + 1, lo[open_])
        hi[open_] = np.where(less, hi[open_], mid)
