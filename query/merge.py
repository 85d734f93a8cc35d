"""Exact changes of recall lists and top-k, for whole batches at once (pure numpy).

Every ranking here is the one order of `query.search`: better score first, then smaller id
(`order_key` turns scores into "smaller is better"). All scores come from Qdrant, so a merge
orders candidates exactly as a from-scratch search orders the same candidates; stored ids
decide ties, at the recall cut and at the k-th place alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .recall_lists import Lists


def order_key(scores: np.ndarray, metric: str) -> np.ndarray:
    """Scores as sort keys, smaller = better (cosine similarity: higher is better); nan -> inf."""
    key = -scores if metric == "cosine" else scores.copy()
    key[np.isnan(key)] = np.inf
    return key


def rank_rows(key: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per row, the column order of the one ranking order: key, then id."""
    return np.lexsort((ids, key), axis=1)


def positions(order: np.ndarray) -> np.ndarray:
    """Inverse of a per-row permutation: where each column went."""
    inv = np.empty_like(order)
    np.put_along_axis(inv, order, np.broadcast_to(np.arange(order.shape[1]), order.shape), axis=1)
    return inv


@dataclass
class Moved:
    """A batch of lists after a change: the new lists and where the old candidates went."""

    lists: Lists
    old_pos: np.ndarray   # (m, W_old): new position of each old candidate, -1 if it left the list
    new_pos: np.ndarray   # (m, E): new position of each added candidate, -1 if it did not get in


def add(lists: Lists, e_ids: np.ndarray, e_scores: np.ndarray, e_len: np.ndarray, cap: int, metric: str,
        e_all: np.ndarray | None = None) -> Moved:
    """Merge added training points into each list.

    Row i's added points are every new point that scores at least as well as the list's
    last candidate (all new points when the list is complete), at most `cap` of them in the
    one order; `e_all` counts how many there were before that cut (default: e_len). Only the
    merged prefix up to the old last candidate is known to be exact (a point outside the list
    may sit just below it), so the new list ends there — or at `cap`.
    """
    e_all = e_len if e_all is None else e_all
    m, w = lists.ids.shape
    e = e_ids.shape[1]
    valid_e = np.arange(e) < e_len[:, None]
    key = np.concatenate([np.where(lists.valid, order_key(lists.scores, metric), np.inf),
                          np.where(valid_e, order_key(e_scores, metric), np.inf)], axis=1)
    ids = np.concatenate([lists.ids, e_ids], axis=1)
    order = rank_rows(key, ids)
    inv = positions(order)
    merged_ids = np.take_along_axis(ids, order, axis=1)
    merged_scores = np.take_along_axis(np.concatenate([lists.scores, e_scores], axis=1), order, axis=1)
    rows = np.arange(m)
    last = inv[rows, np.maximum(lists.length - 1, 0)]
    exact_len = np.where(lists.length > 0, last + 1, 0)
    length = np.minimum(cap, np.where(lists.complete, lists.length + e_len, exact_len))
    complete = lists.complete & (lists.length + e_all <= cap)
    width = int(length.max()) if m else 0
    keep = np.arange(width) < length[:, None]
    out = Lists(lists.gids, np.where(keep, merged_ids[:, :width], 0).astype(np.uint64),
                np.where(keep, merged_scores[:, :width], np.nan), length, complete)
    old_pos = np.where(lists.valid & (inv[:, :w] < length[:, None]), inv[:, :w], -1)
    new_pos = np.where(valid_e & (inv[:, w:] < length[:, None]), inv[:, w:], -1)
    return Moved(out, old_pos, new_pos)


def drop(lists: Lists, removed: np.ndarray) -> Moved:
    """Remove training points from each list: the rest keep their order, and what remains
    is still the exact best of the remaining training set."""
    keep = lists.valid & ~np.isin(lists.ids, removed)
    new_pos = np.cumsum(keep, axis=1) - 1
    length = keep.sum(axis=1)
    out = Lists.from_flat(lists.gids, lists.ids[keep], lists.scores[keep], length, lists.complete)
    return Moved(out, np.where(keep, new_pos, -1), np.zeros((len(lists), 0), dtype=np.int64))


def isin_rows(a: np.ndarray, b: np.ndarray, b_valid: np.ndarray, chunk_cells: int = 1 << 24) -> np.ndarray:
    """(m, A) bool: a[i, j] is among row i's valid b[i, :]."""
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


def columns(mask: np.ndarray, *arrays: np.ndarray, fill=0) -> tuple[np.ndarray, ...]:
    """Per row, the cells where mask holds, moved to the front (their order kept), padded
    with `fill`; returns the counts first."""
    count = mask.sum(axis=1)
    width = int(count.max()) if len(count) else 0
    order = np.argsort(~mask, axis=1, kind="stable")[:, :width]
    keep = np.arange(width) < count[:, None]
    out = [count]
    for a in arrays:
        taken = np.take_along_axis(a, order, axis=1)
        out.append(np.where(keep, taken, np.asarray(fill, dtype=a.dtype)))
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
    return 1.0 - scores if metric == "cosine" else scores.copy()
