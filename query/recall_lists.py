"""The recall list of each generated image: batches of lists as padded numpy arrays, the two
exact changes refresh makes to them (`add`, `drop`), and their ledger form.

A list holds the best candidates of a generated image's recall stage, best first in the one
ranking order (better recall score, then smaller id): the N recalled ones, from which the
top-k is chosen, and a reserve of up to R more, so that removing training images seldom
needs a new search. What refresh relies on: a stored list is the exact best-L of the current
training set for some L >= N — or, when `complete`, the whole training set. `add` (merge the
new points that beat the last candidate) and `drop` (remove points) keep that true without
a search; a list that falls below N is re-scored from scratch.

In the ledger a list is a base (`recall_lists`: ids (uint64) and Qdrant scores (float64),
little-endian BLOBs) plus what changed since (`recall_changes`: candidates added, base ids
dropped, the current length, and the re-rank runners-up). A refresh that adds ten candidates to each of 10,000 lists then writes a few
hundred bytes per list instead of rewriting ~9 KB; a list whose changes pass a quarter of its
length is written whole again. Everything moves through Arrow a batch at a time.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa

from gmv_store.ledger.connection import Connection
from gmv_store.ledger.credits import list_rows, store_list_rows

from .merge import columns, isin_sorted, merge_positions, order_key, place, rebuild, scatter, sort_rows

RESERVE_SHARE = 0.1  # candidates kept beyond N, as a share of N: forgetting 1 % stays far inside it
RESERVE_MIN = 4
REWRITE_SHARE = 0.25  # a list is written whole again once its changes pass this share of it
REWRITE_MIN = 16
RUNNERS_SHARE = 0.25  # re-ranked candidates kept behind the top-k, as a share of k
RUNNERS_MIN = 8


def capacity(n: int) -> int:
    """How many candidates a list of a recall stage of n keeps: n plus the reserve."""
    return n + max(RESERVE_MIN, math.ceil(RESERVE_SHARE * n))


def runners_up(k: int) -> int:
    """How many re-ranked candidates are kept in line behind the top-k."""
    return max(RUNNERS_MIN, math.ceil(RUNNERS_SHARE * k))


_UNSET = np.zeros(0)  # a Lists field not given


@dataclass
class Lists:
    """Recall lists of m generated images of one set, padded to a common width W."""

    gids: list[str]
    ids: np.ndarray        # (m, W) uint64, 0 past each list's end
    scores: np.ndarray     # (m, W) float64, nan past each list's end
    length: np.ndarray     # (m,) int64
    complete: np.ndarray   # (m,) bool: the list holds every training image
    based: np.ndarray      # (m, W) bool: the candidate is in the stored base
    dropped: np.ndarray    # (m, D) uint64: base ids removed since the base was written
    n_dropped: np.ndarray  # (m,)
    stored: np.ndarray     # (m,) bool: read from the ledger (else new: written whole)
    # re-ranking: the candidates next in line after the top-k (the top-k itself is in
    # `credits`), so that a top-k member leaving the recall set seldom needs a new re-rank
    runner_ids: np.ndarray = field(default_factory=lambda: _UNSET)   # (m, r) uint64
    runner_dist: np.ndarray = field(default_factory=lambda: _UNSET)  # (m, r) float64, inf past `n_runners`
    n_runners: np.ndarray = field(default_factory=lambda: _UNSET)    # (m,)
    runners_all: np.ndarray = field(default_factory=lambda: _UNSET)  # (m,) bool: top-k and runners-up hold the whole recall set

    def __post_init__(self) -> None:
        m = len(self.gids)
        if self.runner_ids is _UNSET:  # none given: no runners-up
            self.runner_ids, self.runner_dist = np.zeros((m, 0), np.uint64), np.zeros((m, 0))
            self.n_runners, self.runners_all = np.zeros(m, np.int64), np.zeros(m, bool)

    def __len__(self) -> int:
        return len(self.gids)

    @property
    def valid(self) -> np.ndarray:
        """(m, W) bool: which cells hold a candidate."""
        return np.arange(self.ids.shape[1]) < self.length[:, None]

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        n = int(self.length[i])
        return self.ids[i, :n], self.scores[i, :n]

    def take(self, rows: np.ndarray) -> Lists:
        rows = np.asarray(rows, dtype=np.int64)
        w = int(self.length[rows].max()) if len(rows) else 0
        d = int(self.n_dropped[rows].max()) if len(rows) else 0
        r = int(self.n_runners[rows].max()) if len(rows) else 0
        # every row in order (the usual case in a refresh): a slice gives views, not copies
        # (Lists are never changed in place)
        every = len(rows) == len(self) and bool((rows == np.arange(len(rows))).all())
        at = slice(None) if every else rows
        return Lists(list(self.gids) if every else [self.gids[i] for i in rows], self.ids[at, :w], self.scores[at, :w],
                     self.length[at], self.complete[at], self.based[at, :w], self.dropped[at, :d], self.n_dropped[at],
                     self.stored[at], self.runner_ids[at, :r], self.runner_dist[at, :r], self.n_runners[at],
                     self.runners_all[at])

    def with_runners(self, ids: np.ndarray, dist: np.ndarray, count: np.ndarray, every: np.ndarray) -> Lists:
        return replace(self, runner_ids=ids, runner_dist=dist, n_runners=count, runners_all=every)

    @classmethod
    def from_flat(cls, gids: Sequence[str], ids: np.ndarray, scores: np.ndarray, length: np.ndarray,
                  complete: np.ndarray | Sequence[bool]) -> Lists:
        """New lists from the lists laid end to end (row-major order) and their lengths."""
        length = np.asarray(length, dtype=np.int64)
        m = len(length)
        w = int(length.max()) if m else 0
        mask = np.arange(w) < length[:, None]
        out_ids = np.zeros((m, w), dtype=np.uint64)
        out_scores = np.full((m, w), np.nan)
        out_ids[mask] = ids
        out_scores[mask] = scores
        return cls(list(gids), out_ids, out_scores, length, np.asarray(complete, dtype=bool), np.zeros((m, w), bool),
                   np.zeros((m, 0), np.uint64), np.zeros(m, np.int64), np.zeros(m, bool))

    @classmethod
    def from_rows(cls, gids: Sequence[str], ids: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                  complete: Sequence[bool], runner_ids: Sequence[np.ndarray] | None = None,
                  runner_dist: Sequence[np.ndarray] | None = None, runners_all: Sequence[bool] | None = None) -> Lists:
        length = np.array([len(a) for a in ids], dtype=np.int64)
        out = cls.from_flat(gids, _cat(ids, np.uint64), _cat(scores, np.float64), length, complete)
        if runner_ids is not None:
            assert runner_dist is not None and runners_all is not None, "runners come with distances and flags"
            n = np.array([len(a) for a in runner_ids], dtype=np.int64)
            out = out.with_runners(_padded(_cat(runner_ids, np.uint64), n, np.uint64(0)),
                                   _padded(_cat(runner_dist, np.float64), n, np.inf), n,
                                   np.asarray(runners_all, dtype=bool))
        return out


def _cat(arrays: Sequence[np.ndarray], dtype: Any) -> np.ndarray:
    return np.concatenate([np.asarray(a, dtype=dtype) for a in arrays]) if len(arrays) else np.zeros(0, dtype)


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
    last candidate (all new points when the list is complete), at most `cap` of them;
    `e_all` counts how many there were before that cut (default: e_len). Only the merged
    prefix up to the old last candidate is known to be exact (a point outside the list may
    sit just below it), so the new list ends there — or at `cap`.
    """
    e_all = e_len if e_all is None else e_all
    m, w = lists.ids.shape
    e_key = order_key(e_scores, metric)
    o = sort_rows(e_key, e_ids, e_len)  # Qdrant orders ties its own way
    e_ids, e_scores, e_key = (np.take_along_axis(a, o, axis=1) for a in (e_ids, e_scores, e_key))
    a_pos, b_pos = merge_positions(order_key(lists.scores, metric), lists.ids, lists.length, e_key, e_ids, e_len)
    last = a_pos[np.arange(m), np.maximum(lists.length - 1, 0)]
    exact_len = np.where(lists.length > 0, last + 1, 0)
    length = np.minimum(cap, np.where(lists.complete, lists.length + e_len, exact_len))
    width = int(length.max()) if m else 0
    va = lists.valid & (a_pos < length[:, None])
    vb = (np.arange(e_ids.shape[1]) < e_len[:, None]) & (b_pos < length[:, None])
    # the kept cells of each list are a prefix of it, in order: they fill every place of
    # the new list that no added cell takes (row-major boolean indexing), no index per cell
    pb = place(b_pos, vb, width)
    slots = np.arange(width) < length[:, None]
    slots.reshape(-1)[pb[0]] = False

    def lay(a: np.ndarray, b: np.ndarray, fill: Any) -> np.ndarray:
        out = np.full((m, width), fill, dtype=a.dtype)
        out[slots] = a[va]
        out.reshape(-1)[pb[0]] = b[pb[1]]
        return out

    out = replace(lists, ids=lay(lists.ids, e_ids, np.uint64(0)), scores=lay(lists.scores, e_scores, np.nan),
                  based=lay(lists.based, np.zeros(e_ids.shape, bool), False), length=length, complete=lists.complete & (lists.length + e_all <= cap))
    return Moved(out, np.where(va, a_pos, -1), np.where(vb, b_pos, -1))


def drop(lists: Lists, removed: np.ndarray) -> Moved:
    """Remove training points (`removed`: sorted ids) from each list: the rest keep their
    order, and what remains is still the exact best of the remaining training set."""
    gone = lists.valid & isin_sorted(lists.ids, removed)
    keep = lists.valid & ~gone
    pos = np.cumsum(keep, axis=1) - 1
    length = keep.sum(axis=1)
    shape = (len(lists), int(length.max()) if len(lists) else 0)
    n_new, new_ids = columns(gone & lists.based, lists.ids)  # base candidates gone: recorded as dropped
    n_dropped = lists.n_dropped + n_new
    d_width = int(n_dropped.max()) if len(lists) else 0
    old_d = lists.dropped.shape[1]
    dropped = scatter((len(lists), d_width), np.uint64(0),
                      (lists.dropped, place(np.broadcast_to(np.arange(old_d), lists.dropped.shape),
                                            np.arange(old_d) < lists.n_dropped[:, None], d_width)),
                      (new_ids, place(lists.n_dropped[:, None] + np.arange(new_ids.shape[1]),
                                      np.arange(new_ids.shape[1]) < n_new[:, None], d_width)))
    pk = place(pos, keep, shape[1])
    out = replace(lists, ids=scatter(shape, np.uint64(0), (lists.ids, pk)), scores=scatter(shape, np.nan, (lists.scores, pk)),
                  based=scatter(shape, False, (lists.based, pk)), length=length, dropped=dropped, n_dropped=n_dropped)
    return Moved(out, np.where(keep, pos, -1), np.zeros((len(lists), 0), dtype=np.int64))


# ----------------------------------------------------------------------------- ledger form


def _blobs(flat: np.ndarray, length: np.ndarray) -> pa.Array:
    """One BLOB per list from the lists laid end to end (one buffer, no object per row)."""
    data = np.ascontiguousarray(flat).astype(flat.dtype.newbyteorder("<"), copy=False)
    offsets = np.zeros(len(length) + 1, dtype=np.int64)
    np.cumsum(np.asarray(length, dtype=np.int64) * data.itemsize, out=offsets[1:])
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(length),
                                            [None, pa.py_buffer(offsets), pa.py_buffer(data.tobytes())])


def _unblob(column: pa.ChunkedArray, dtype: str) -> tuple[np.ndarray, np.ndarray]:
    """(values laid end to end, lengths) from a column of BLOBs."""
    arr = column.cast(pa.large_binary()).combine_chunks() if column.num_chunks else pa.array([], pa.large_binary())
    n = len(arr)
    if n == 0:
        return np.zeros(0, dtype=dtype), np.zeros(0, dtype=np.int64)
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset: arr.offset + n + 1]
    data = arr.buffers()[2]
    raw = np.frombuffer(data, dtype=np.uint8)[offsets[0]: offsets[-1]] if data is not None else np.zeros(0, np.uint8)
    return raw.view(dtype).astype(np.dtype(dtype).newbyteorder("="), copy=False), np.diff(offsets) // np.dtype(dtype).itemsize


def _padded(flat: np.ndarray, length: np.ndarray, fill: Any) -> np.ndarray:
    out = np.full((len(length), int(length.max()) if len(length) else 0), fill, dtype=flat.dtype)
    out[np.arange(out.shape[1]) < length[:, None]] = flat
    return out


def read_lists(con: Connection, set_name: str, gids: Sequence[str] | None = None, *, metric: str, ordered: bool = True) -> Lists:
    """The stored lists of the given generated images of one set, in the order given (or of
    the whole set, by id; `metric`: the recall metric, which orders them; `ordered=False`:
    in any order, `Lists.gids` says which). Images without a list (queued to be re-scored)
    are left out."""
    tbl = list_rows(con, set_name, gids, ordered=ordered)
    base_ids, base_len = _unblob(tbl.column("ids"), "<u8")
    base_scores, _ = _unblob(tbl.column("scores"), "<f8")
    add_ids, add_len = _unblob(tbl.column("added_ids"), "<u8")
    add_scores, _ = _unblob(tbl.column("added_scores"), "<f8")
    drop_ids, n_dropped = _unblob(tbl.column("dropped_ids"), "<u8")
    dropped = _padded(drop_ids, n_dropped, np.uint64(0))
    length = tbl.column("length").to_numpy().astype(np.int64)
    ids, scores, based = rebuild(base_ids, base_scores, base_len, add_ids, add_scores, add_len, dropped, n_dropped,
                                 length, metric)
    run_ids, n_run = _unblob(tbl.column("runner_ids"), "<u8")
    run_dist, _ = _unblob(tbl.column("runner_distances"), "<f8")
    return Lists(tbl.column("generated_id").to_pylist(), ids, scores, length,
                 tbl.column("complete").to_numpy(zero_copy_only=False).astype(bool), based, dropped, n_dropped,
                 np.ones(len(length), bool), _padded(run_ids, n_run, np.uint64(0)), _padded(run_dist, n_run, np.inf),
                 n_run, tbl.column("runners_all").to_numpy(zero_copy_only=False).astype(bool))


def write_lists(con: Connection, set_name: str, lists: Lists, new: bool = False, rows: np.ndarray | None = None) -> None:
    """Store these lists (one statement per form; `rows`: only those): a list read from the
    ledger whose changes are still small is stored as those changes; others are written
    whole (`new` ones are inserted, others replace what is stored or are inserted where
    nothing is)."""
    rows = np.arange(len(lists)) if rows is None else np.asarray(rows, dtype=np.int64)
    if not len(rows):
        return
    valid = lists.valid
    n_added = (valid & ~lists.based).sum(axis=1)
    small = lists.stored & (n_added + lists.n_dropped <= np.maximum(REWRITE_MIN, REWRITE_SHARE * lists.length))
    for part, whole in ((rows[~small[rows]], True), (rows[small[rows]], False)):
        if not len(part):
            continue
        sub = lists.take(part)
        v = sub.valid
        cells = v if whole else v & ~sub.based
        n = cells.sum(axis=1)
        empty = _blobs(np.zeros(0, np.uint64), np.zeros(len(part), np.int64))
        tbl = pa.table({"generated_id": pa.array(sub.gids, pa.string()),
                        "ids": _blobs(sub.ids[cells], n) if whole else empty,
                        "scores": _blobs(sub.scores[cells], n) if whole else empty,
                        "added_ids": empty if whole else _blobs(sub.ids[cells], n),
                        "added_scores": empty if whole else _blobs(sub.scores[cells], n),
                        "dropped_ids": empty if whole else _blobs(sub.dropped[_upto(sub.n_dropped, sub.dropped)],
                                                                  sub.n_dropped),
                        "length": sub.length, "complete": pa.array(sub.complete, pa.bool_()),
                        "runner_ids": _blobs(sub.runner_ids[_upto(sub.n_runners, sub.runner_ids)], sub.n_runners),
                        "runner_distances": _blobs(sub.runner_dist[_upto(sub.n_runners, sub.runner_dist)], sub.n_runners),
                        "runners_all": pa.array(sub.runners_all, pa.bool_())})
        store_list_rows(con, set_name, tbl, whole, insert_only=new)


def _upto(count: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.arange(a.shape[1]) < count[:, None]


def list_bytes(n_candidates: int) -> int:
    """Ledger bytes a list of n candidates takes (for free-space estimates)."""
    return 16 * n_candidates
