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
