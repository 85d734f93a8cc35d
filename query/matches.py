"""The record of one generated image's match in its set, and its ledger rows.

A `Match` is what valuation computes and what refresh, forget and verify read back and
compare: the top-k contributors with distances, credits (Eq. 6) and their ranks in the recall
stage, plus the recall scores of every recalled candidate (refresh decides from them whether
a training-set change can alter the match). A `GeneratedRow` is a generated image as the
ledger records it. Every read and write of matches goes through this module.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable, Sequence

import numpy as np

from gmv_store.ledger import insert_columns
from gmv_store.valuation import credits as eq6_credits

TOLERANCE = 1e-6  # distances recomputed from the same float32 vectors agree far closer than this


def pack_scores(scores) -> bytes:
    return np.asarray(scores, dtype="<f8").tobytes()


def unpack_scores(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f8")


@dataclass
class Match:
    """One generated image's top-k, closest first, and its recall state."""

    contributors: list[str]
    distances: list[float]
    credits: list[float]
    recall_ranks: list[int]        # each contributor's 1-based rank in the recall stage
    recall_scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # all recalled, best first

    @classmethod
    def scored(cls, top: Sequence[tuple[str, float, int]], recall_scores, quality: float) -> "Match":
        """From (contributor, distance, recall rank) triples, closest first: credits by Eq. 6."""
        dist = [float(d) for _, d, _ in top]
        return cls([c for c, _, _ in top], dist, eq6_credits(dist, quality).tolist(), [r for _, _, r in top],
                   np.asarray(recall_scores, dtype=np.float64))

    @property
    def recall_floor(self) -> float | None:
        return float(self.recall_scores[-1]) if len(self.recall_scores) else None

    @property
    def n_recalled(self) -> int:
        return len(self.recall_scores)

    def same_scores(self, other: "Match") -> bool:
        """Same top-k in the same order, distances and credits equal up to float rounding."""
        return (self.contributors == other.contributors
                and np.allclose(self.distances, other.distances, atol=TOLERANCE, rtol=0)
                and np.allclose(self.credits, other.credits, atol=10 * TOLERANCE * max(1.0, sum(other.credits)), rtol=0))

    def first_difference(self, other: "Match") -> str:
        """Where two matches part: the first differing rank and both contributors there."""
        for rank, (a, b) in enumerate(zip(self.contributors, other.contributors), start=1):
            if a != b:
                return f"rank {rank}: stored {a}, recomputed {b}"
        if len(self.contributors) != len(other.contributors):
            return f"stored {len(self.contributors)} contributors, recomputed {len(other.contributors)}"
        for rank, (a, b) in enumerate(zip(self.distances, other.distances), start=1):
            if abs(a - b) > TOLERANCE:
                return f"rank {rank}: distance stored {a:.9g}, recomputed {b:.9g}"
        return "credits differ"


@dataclass(frozen=True)
class GeneratedRow:
    """A generated image as the ledger records it, with its set's k and N."""

    set_name: str
    generated_id: str
    point_id: int
    sha256: str
    source: str
    label: str | None
    quality: float
    k: int
    recall: int
    exact: bool = False  # the set searches exactly (valued with --exact), not through the index


_GENERATED_SELECT = """
    SELECT g.set_name, g.generated_id, g.point_id, g.sha256, g.source, g.label, g.quality, s.k, s.recall, s.exact
    FROM generated_images g JOIN generated_sets s USING (set_name)"""


def generated_rows(con, where: str = "", params: Sequence = (), limit: int | None = None) -> list[GeneratedRow]:
    """Generated images (all, or those matching the SQL condition `where` over `g`), in
    (set, id) order."""
    sql = _GENERATED_SELECT + (f" WHERE {where}" if where else "") + " ORDER BY g.set_name, g.generated_id"
    sql += f" LIMIT {int(limit)}" if limit else ""
    return [GeneratedRow(*r) for r in con.execute(sql, list(params)).fetchall()]


def read_matches(con, set_name: str, generated_ids: Sequence[str], with_recall: bool = False) -> dict[str, Match]:
    """The stored matches of generated images of one set (absent ids: no entry)."""
    out: dict[str, Match] = {}
    for gid, cid, d, c, rr in con.execute(
            "SELECT generated_id, contributor_id, distance, credit, recall_rank FROM credits "
            "WHERE set_name = ? AND generated_id IN (SELECT unnest(?)) ORDER BY generated_id, rank",
            [set_name, list(generated_ids)]).fetchall():
        m = out.setdefault(gid, Match([], [], [], []))
        m.contributors.append(cid)
        m.distances.append(d)
        m.credits.append(c)
        m.recall_ranks.append(rr)
    if with_recall:
        for gid, blob in con.execute(
                "SELECT generated_id, recall_scores FROM generated_images WHERE set_name = ? "
                "AND generated_id IN (SELECT unnest(?))", [set_name, list(generated_ids)]).fetchall():
            out.setdefault(gid, Match([], [], [], [])).recall_scores = unpack_scores(blob)
    return out


def add_sums(con, set_name: str, matches: Iterable[Match], sign: int = 1) -> None:
    """value_sums += sign * credits, aggregated per contributor first (DuckDB collapses
    duplicate keys inside one upsert)."""
    agg_sum: dict[str, float] = defaultdict(float)
    agg_n: dict[str, int] = defaultdict(int)
    for m in matches:
        for cid, c in zip(m.contributors, m.credits):
            agg_sum[cid] += sign * c
            agg_n[cid] += sign
    if not agg_sum:
        return
    ids = list(agg_sum)
    insert_columns(
        con, "value_sums",
        {"set_name": [set_name] * len(ids), "contributor_id": ids,
         "value_sum": [agg_sum[i] for i in ids], "n_credits": [agg_n[i] for i in ids]},
        conflict="ON CONFLICT (set_name, contributor_id) DO UPDATE SET "
                 "value_sum = value_sums.value_sum + excluded.value_sum, "
                 "n_credits = value_sums.n_credits + excluded.n_credits",
    )
    con.execute("DELETE FROM value_sums WHERE set_name = ? AND n_credits <= 0", [set_name])


def insert_credits(con, set_name: str, matches: dict[str, Match]) -> None:
    cols: dict[str, list] = {"set_name": [], "generated_id": [], "contributor_id": [], "rank": [], "distance": [],
                             "credit": [], "recall_rank": []}
    for gid, m in matches.items():
        n = len(m.contributors)
        cols["set_name"] += [set_name] * n
        cols["generated_id"] += [gid] * n
        cols["contributor_id"] += m.contributors
        cols["rank"] += list(range(1, n + 1))
        cols["distance"] += m.distances
        cols["credit"] += m.credits
        cols["recall_rank"] += m.recall_ranks
    insert_columns(con, "credits", cols)


def insert_generated(con, rows: Sequence[GeneratedRow], matches: Sequence[Match], meta_json: str,
                     now: datetime) -> None:
    """Rows, credits and running sums of newly valued generated images of one set, with their
    first matches (caller's transaction)."""
    set_name = rows[0].set_name
    insert_columns(con, "generated_images", {
        "set_name": [set_name] * len(rows), "generated_id": [g.generated_id for g in rows],
        "point_id": [g.point_id for g in rows], "sha256": [g.sha256 for g in rows],
        "source": [g.source for g in rows], "label": [g.label for g in rows], "meta": [meta_json] * len(rows),
        "quality": [g.quality for g in rows], "valued_at": [now] * len(rows),
        "recall_floor": [m.recall_floor for m in matches], "n_recalled": [m.n_recalled for m in matches],
        "recall_scores": [pack_scores(m.recall_scores) for m in matches],
    })
    by_id = {g.generated_id: m for g, m in zip(rows, matches)}
    insert_credits(con, set_name, by_id)
    # the running sums from the rows just written, aggregated inside DuckDB (one key per
    # contributor: DuckDB collapses duplicate keys inside one upsert)
    con.execute(
        "INSERT INTO value_sums SELECT set_name, contributor_id, sum(credit), count(*) FROM credits "
        "WHERE set_name = ? AND generated_id IN (SELECT unnest(?)) GROUP BY set_name, contributor_id "
        "ON CONFLICT (set_name, contributor_id) DO UPDATE SET value_sum = value_sums.value_sum + excluded.value_sum, "
        "n_credits = value_sums.n_credits + excluded.n_credits", [set_name, list(by_id)])


def replace_matches(con, set_name: str, fresh: dict[str, Match], old: dict[str, Match]) -> int:
    """Store fresh matches of already recorded generated images (caller's transaction).
    Values move by difference, only where the top-k changed; returns how many changed."""
    if not fresh:
        return 0
    changed = {gid for gid, m in fresh.items() if gid not in old or not old[gid].same_scores(m)}
    for gid, m in fresh.items():
        if gid not in changed:
            # equal up to rounding: keep the stored numbers, so the running sums stay exact
            m.distances, m.credits = old[gid].distances, old[gid].credits
    add_sums(con, set_name, [old[g] for g in changed if g in old], sign=-1)
    add_sums(con, set_name, [fresh[g] for g in changed])
    gids = list(fresh)
    # credit rows (recall ranks change even when the top-k does not) and recall sets, at once
    con.execute("DELETE FROM credits WHERE set_name = ? AND generated_id IN (SELECT unnest(?))", [set_name, gids])
    insert_credits(con, set_name, fresh)
    con.execute(
        "UPDATE generated_images g SET recall_floor = u.f, n_recalled = u.n, recall_scores = u.sc "
        "FROM (SELECT unnest(?) AS gid, unnest(?) AS f, unnest(?) AS n, unnest(?::BLOB[]) AS sc) u "
        "WHERE g.set_name = ? AND g.generated_id = u.gid",
        [gids, [fresh[g].recall_floor for g in gids], [fresh[g].n_recalled for g in gids],
         [pack_scores(fresh[g].recall_scores) for g in gids], set_name])
    return len(changed)


def remove_generated(con, set_name: str, generated_ids: Sequence[str]) -> dict[str, Match]:
    """Delete generated images with their credits and queue entries; values by difference.
    Returns the matches they had."""
    old = read_matches(con, set_name, generated_ids)
    add_sums(con, set_name, old.values(), sign=-1)
    for table in ("credits", "refresh_queue", "generated_images"):
        con.execute(f"DELETE FROM {table} WHERE set_name = ? AND generated_id IN (SELECT unnest(?))",
                    [set_name, list(generated_ids)])
    return old
