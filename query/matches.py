"""The record of one generated image's match in its set, and its ledger rows.

A `Match` is what valuation computes and what refresh, forget and verify read back and
compare: the top-k contributors with distances and credits (Eq. 6), plus the recall list it
was chosen from (ids and recall scores of the N recalled candidates and a reserve beyond
them, see `recall_lists`). A `GeneratedRow` is a generated image as the ledger records it.
Every read and write of matches goes through this module; writes are whole batches (Arrow
tables registered in DuckDB, one statement each), values moving by difference.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pyarrow as pa

from gmv_store.ledger.connection import Connection
from gmv_store.ledger.credits import GeneratedRow as GeneratedRow  # re-exported: the record callers know
from gmv_store.ledger.credits import (
    credit_rows,
    insert_generated_rows,
    queue_if_refresh_pending,
    remove_generated_rows,
    replace_credits,
    topk_table,
)
from gmv_store.ledger.credits import generated_rows as generated_rows
from gmv_store.valuation import credits as eq6_credits

from .recall_lists import Lists, read_lists, write_lists

TOLERANCE = 1e-6  # distances recomputed from the same float32 vectors agree far closer than this
# engines score in float32 (the local engine in numpy, possibly float64 before storing): a
# recomputed recall score may differ from the stored one in its last bits, never more than this
SCORE_RTOL = 8 * float(np.finfo(np.float32).eps)


def same_score(a: float, b: float) -> bool:
    """Two scores of one point, stored and recomputed, equal up to the engine's float32 precision."""
    return abs(a - b) <= SCORE_RTOL * max(1.0, abs(a), abs(b))


@dataclass
class Match:
    """One generated image's top-k, closest first, and its recall list."""

    contributors: list[str]
    distances: list[float]
    credits: list[float]
    recall_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # best first
    recall_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))
    complete: bool = False  # the recall list holds every training image
    runner_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))  # next closest after the k
    runner_distances: np.ndarray = field(default_factory=lambda: np.zeros(0))
    runners_all: bool = False  # the top-k and runners-up hold the whole recall set

    @classmethod
    def scored(cls, top: Sequence[tuple[str, float]], recall_ids: Sequence[int] | np.ndarray,
               recall_scores: Sequence[float] | np.ndarray, complete: bool, quality: float,
               runners: Sequence[tuple[int, float]] = (), runners_all: bool = False) -> Match:
        """From (contributor, distance) pairs, closest first: credits by Eq. 6; `runners`:
        the (point id, distance) pairs next in line."""
        dist = [float(d) for _, d in top]
        return cls([c for c, _ in top], dist, eq6_credits(dist, quality).tolist(),
                   np.asarray(recall_ids, dtype=np.uint64), np.asarray(recall_scores, dtype=np.float64), bool(complete),
                   np.asarray([p for p, _ in runners], dtype=np.uint64), np.asarray([d for _, d in runners], np.float64),
                   bool(runners_all))

    def same_scores(self, other: Match) -> bool:
        """Same top-k in the same order, distances and credits equal up to float rounding."""
        return (self.contributors == other.contributors
                and np.allclose(self.distances, other.distances, atol=TOLERANCE, rtol=0)
                and np.allclose(self.credits, other.credits, atol=10 * TOLERANCE * max(1.0, sum(other.credits)), rtol=0))

    def first_difference(self, other: Match) -> str:
        """Where two matches part: the first differing rank and both contributors there."""
        for rank, (a, b) in enumerate(zip(self.contributors, other.contributors), start=1):
            if a != b:
                return f"rank {rank}: stored {a}, recomputed {b}"
        if len(self.contributors) != len(other.contributors):
            return f"stored {len(self.contributors)} contributors, recomputed {len(other.contributors)}"
        for rank, (da, db) in enumerate(zip(self.distances, other.distances), start=1):
            if abs(da - db) > TOLERANCE:
                return f"rank {rank}: distance stored {da:.9g}, recomputed {db:.9g}"
        return "credits differ"

    def list_difference(self, recomputed: Match) -> str | None:
        """Where this stored recall list parts from a recomputed one, or None. Only their
        common length is compared: a stored list may have lent its reserve to removals, and
        one kept under another capacity may be longer."""
        n = len(self.recall_ids)
        for pos in range(min(n, len(recomputed.recall_ids))):
            if (self.recall_ids[pos] != recomputed.recall_ids[pos]
                    or not same_score(self.recall_scores[pos], recomputed.recall_scores[pos])):
                return (f"recall list position {pos + 1}: stored {int(self.recall_ids[pos]):016x} "
                        f"({self.recall_scores[pos]:.9g}), recomputed {int(recomputed.recall_ids[pos]):016x} "
                        f"({recomputed.recall_scores[pos]:.9g})")
        if n > len(recomputed.recall_ids) and recomputed.complete:
            return f"recall list holds {n} candidates, the training set {len(recomputed.recall_ids)}"
        if self.complete and not recomputed.complete:
            return "recall list says it holds every training image, a recompute finds more"
        for pos in range(min(len(self.runner_ids), len(recomputed.runner_ids))):
            if self.runner_ids[pos] != recomputed.runner_ids[pos]:
                return (f"runner-up {pos + 1}: stored {int(self.runner_ids[pos]):016x}, "
                        f"recomputed {int(recomputed.runner_ids[pos]):016x}")
        return None


def read_matches(con: Connection, set_name: str, generated_ids: Sequence[str], recall_metric: str | None = None) -> dict[str, Match]:
    """The stored matches of generated images of one set (absent ids: no entry), with their
    recall lists when the recall metric is given."""
    out: dict[str, Match] = {}
    for gid, cid, d, c in credit_rows(con, set_name, generated_ids):
        m = out.setdefault(gid, Match([], [], []))
        m.contributors.append(cid)
        m.distances.append(d)
        m.credits.append(c)
    if recall_metric is not None:
        lists = read_lists(con, set_name, generated_ids, metric=recall_metric)
        for i, gid in enumerate(lists.gids):
            m = out.setdefault(gid, Match([], [], []))
            m.recall_ids, m.recall_scores = (a.copy() for a in lists.row(i))
            m.complete = bool(lists.complete[i])
            n = int(lists.n_runners[i])
            m.runner_ids, m.runner_distances = lists.runner_ids[i, :n].copy(), lists.runner_dist[i, :n].copy()
            m.runners_all = bool(lists.runners_all[i])
    return out


@dataclass
class TopK:
    """The stored top-k of m generated images of one set, as padded (m, k) arrays."""

    ids: np.ndarray       # uint64 training point ids, 0 past `count`
    distances: np.ndarray  # inf past `count`
    credits: np.ndarray   # 0 past `count`
    count: np.ndarray     # (m,)


def read_topk(con: Connection, set_name: str, gids: Sequence[str], k: int) -> TopK:
    """The stored top-k of these generated images, in the order given (one query)."""
    m = len(gids)
    t = topk_table(con, set_name, gids)
    row, col = t.column("i").to_numpy(), t.column("rank").to_numpy().astype(np.int64) - 1
    out = TopK(np.zeros((m, k), np.uint64), np.full((m, k), np.inf), np.zeros((m, k)), np.bincount(row, minlength=m))
    out.ids[row, col] = t.column("pid").to_numpy()
    out.distances[row, col] = t.column("distance").to_numpy()
    out.credits[row, col] = t.column("credit").to_numpy()
    return out


def credit_table(gids: Sequence[str], matches: Sequence[Match]) -> pa.Table:
    """Credit rows of these matches (contributor ids as stored)."""
    n = np.array([len(m.contributors) for m in matches], dtype=np.int64)
    starts = np.repeat(np.cumsum(n) - n, n)
    return pa.table({
        "generated_id": pa.array(np.repeat(np.asarray(list(gids), dtype=object), n), pa.string()),
        "contributor_id": pa.array([c for m in matches for c in m.contributors], pa.string()),
        "rank": np.arange(int(n.sum()), dtype=np.int32) - starts.astype(np.int32) + 1,
        "distance": np.array([d for m in matches for d in m.distances], dtype=np.float64),
        "credit": np.array([c for m in matches for c in m.credits], dtype=np.float64)})


def lists_of(gids: Sequence[str], matches: Sequence[Match]) -> Lists:
    return Lists.from_rows(gids, [m.recall_ids for m in matches], [m.recall_scores for m in matches],
                           [m.complete for m in matches], [m.runner_ids for m in matches],
                           [m.runner_distances for m in matches], [m.runners_all for m in matches])


def insert_generated(con: Connection, rows: Sequence[GeneratedRow], matches: Sequence[Match], meta_json: str,
                     now: datetime) -> None:
    """Rows, recall lists, credits and running sums of newly valued generated images of one
    set, with their first matches (caller's transaction)."""
    set_name = rows[0].set_name
    insert_generated_rows(con, rows, meta_json, now)
    gids = [g.generated_id for g in rows]
    write_lists(con, set_name, lists_of(gids, matches), new=True)
    replace_credits(con, set_name, gids, credit_table(gids, matches), new=True)
    queue_if_refresh_pending(con, set_name, gids)


def replace_matches(con: Connection, set_name: str, fresh: dict[str, Match], old: dict[str, Match]) -> int:
    """Store fresh matches (with their recall lists) of already recorded generated images
    (caller's transaction). Values move by difference, only where the top-k changed; returns
    how many changed."""
    if not fresh:
        return 0
    changed = [gid for gid, m in fresh.items() if gid not in old or not old[gid].same_scores(m)]
    for gid, m in fresh.items():
        if gid in old and gid not in changed:
            # equal up to rounding: keep the stored numbers, so the running sums stay exact
            m.distances, m.credits = old[gid].distances, old[gid].credits
    replace_credits(con, set_name, changed, credit_table(changed, [fresh[g] for g in changed]))
    write_lists(con, set_name, lists_of(list(fresh), list(fresh.values())))
    return len(changed)


def remove_generated(con: Connection, set_name: str, generated_ids: Sequence[str]) -> dict[str, Match]:
    """Delete generated images with their credits, recall lists and queue entries; values by
    difference. Returns the matches they had."""
    old = read_matches(con, set_name, generated_ids)
    replace_credits(con, set_name, list(generated_ids), credit_table([], []))
    remove_generated_rows(con, set_name, generated_ids)
    return old
