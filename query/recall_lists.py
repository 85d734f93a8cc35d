"""The recall list of each generated image, as the ledger keeps it (`recall_lists`) and as
refresh and forget work on it: whole batches of lists as padded numpy arrays.

A list holds the best candidates of a generated image's recall stage, best first in the one
ranking order (better recall score, then smaller id): the N recalled ones, from which the
top-k is chosen, and a reserve of up to R more, so that removing training images seldom
needs a new search. What refresh relies on: a stored list is the exact best-L of the current
training set for some L >= N — or, when `complete`, the whole training set. Adding points
(merge those that beat the last one) and removing points (drop them) keep that true without
a search; a list that falls below N is re-scored from scratch.

Ids (uint64) and scores (float64, as Qdrant returned them) are two little-endian BLOBs per
image, read and written through Arrow a batch at a time: no Python object per value.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa

RESERVE_SHARE = 0.1  # candidates kept beyond N, as a share of N: forgetting 1 % stays far inside it
RESERVE_MIN = 4


def capacity(n: int) -> int:
    """How many candidates a list of a recall stage of n keeps: n plus the reserve."""
    return n + max(RESERVE_MIN, math.ceil(RESERVE_SHARE * n))


@dataclass
class Lists:
    """Recall lists of m generated images of one set, padded to a common width W."""

    gids: list[str]
    ids: np.ndarray       # (m, W) uint64, 0 past each list's end
    scores: np.ndarray    # (m, W) float64, nan past each list's end
    length: np.ndarray    # (m,) int64
    complete: np.ndarray  # (m,) bool: the list holds every training image

    def __len__(self) -> int:
        return len(self.gids)

    @property
    def valid(self) -> np.ndarray:
        """(m, W) bool: which cells hold a candidate."""
        return np.arange(self.ids.shape[1]) < self.length[:, None]

    def row(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        n = int(self.length[i])
        return self.ids[i, :n], self.scores[i, :n]

    def take(self, rows: np.ndarray) -> "Lists":
        rows = np.asarray(rows, dtype=np.int64)
        width = int(self.length[rows].max()) if len(rows) else 0
        return Lists([self.gids[i] for i in rows], self.ids[rows, :width], self.scores[rows, :width],
                     self.length[rows], self.complete[rows])

    @classmethod
    def from_flat(cls, gids: Sequence[str], ids: np.ndarray, scores: np.ndarray, length: np.ndarray,
                  complete: np.ndarray) -> "Lists":
        """From the lists laid end to end (row-major order) and their lengths."""
        length = np.asarray(length, dtype=np.int64)
        width = int(length.max()) if len(length) else 0
        mask = np.arange(width) < length[:, None]
        out_ids = np.zeros((len(length), width), dtype=np.uint64)
        out_scores = np.full((len(length), width), np.nan)
        out_ids[mask] = ids
        out_scores[mask] = scores
        return cls(list(gids), out_ids, out_scores, length, np.asarray(complete, dtype=bool))

    @classmethod
    def from_rows(cls, gids: Sequence[str], ids: Sequence[np.ndarray], scores: Sequence[np.ndarray],
                  complete: Sequence[bool]) -> "Lists":
        length = np.array([len(a) for a in ids], dtype=np.int64)
        flat_ids = np.concatenate(ids).astype(np.uint64) if len(ids) else np.zeros(0, np.uint64)
        flat_scores = np.concatenate(scores).astype(np.float64) if len(scores) else np.zeros(0)
        return cls.from_flat(gids, flat_ids, flat_scores, length, complete)


def _blobs(flat: np.ndarray, length: np.ndarray) -> pa.Array:
    """One BLOB per list from the lists laid end to end (a view of the bytes, no copies per row)."""
    data = np.ascontiguousarray(flat).astype(flat.dtype.newbyteorder("<"), copy=False)
    offsets = np.zeros(len(length) + 1, dtype=np.int64)
    np.cumsum(length * data.itemsize, out=offsets[1:])
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
    itemsize = np.dtype(dtype).itemsize
    return raw.view(dtype).astype(np.dtype(dtype).newbyteorder("="), copy=False), np.diff(offsets) // itemsize


def read_lists(con, set_name: str, gids: Sequence[str] | None = None) -> Lists:
    """The stored lists of the given generated images of one set, in the order given (or of
    the whole set, by id). Images without a list (queued to be re-scored) are left out."""
    if gids is None:
        tbl = con.sql("SELECT generated_id, ids, scores, complete FROM recall_lists WHERE set_name = $1 "
                      "ORDER BY generated_id", params=[set_name]).to_arrow_table()
    else:
        con.register("_gmv_want", pa.table({"i": np.arange(len(gids)), "generated_id": pa.array(list(gids), pa.string())}))
        try:
            tbl = con.sql("SELECT r.generated_id, r.ids, r.scores, r.complete FROM _gmv_want w JOIN recall_lists r "
                          "ON r.set_name = $1 AND r.generated_id = w.generated_id ORDER BY w.i",
                          params=[set_name]).to_arrow_table()
        finally:
            con.unregister("_gmv_want")
    ids, length = _unblob(tbl.column("ids"), "<u8")
    scores, _ = _unblob(tbl.column("scores"), "<f8")
    return Lists.from_flat(tbl.column("generated_id").to_pylist(), ids, scores, length,
                           tbl.column("complete").to_numpy(zero_copy_only=False))


def write_lists(con, set_name: str, lists: Lists, new: bool = False) -> None:
    """Store the lists of these generated images (one statement): `new` ones are inserted,
    others replace what is stored (or are inserted where nothing is)."""
    if not len(lists):
        return
    valid = lists.valid
    tbl = pa.table({"generated_id": pa.array(lists.gids, pa.string()),
                    "ids": _blobs(lists.ids[valid], lists.length),
                    "scores": _blobs(lists.scores[valid], lists.length),
                    "complete": pa.array(lists.complete, pa.bool_())})
    con.register("_gmv_lists", tbl)
    try:
        if new:
            con.execute("INSERT INTO recall_lists SELECT $1, generated_id, ids, scores, complete FROM _gmv_lists",
                        [set_name])
            return
        # an UPDATE of the rows that exist is about twice as fast as an upsert of all of them
        con.execute("UPDATE recall_lists r SET ids = u.ids, scores = u.scores, complete = u.complete "
                    "FROM _gmv_lists u WHERE r.set_name = $1 AND r.generated_id = u.generated_id", [set_name])
        con.execute("INSERT INTO recall_lists SELECT $1, generated_id, ids, scores, complete FROM _gmv_lists u "
                    "WHERE NOT EXISTS (SELECT 1 FROM recall_lists r WHERE r.set_name = $1 "
                    "AND r.generated_id = u.generated_id)", [set_name])
    finally:
        con.unregister("_gmv_lists")


def list_bytes(n_candidates: int) -> int:
    """Ledger bytes a list of n candidates takes (for free-space estimates)."""
    return 16 * n_candidates
