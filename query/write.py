"""Step 4 of valuation: store generated vectors, their scores and the running value sums.

Same write order as ingest: journal -> Qdrant -> one ledger transaction (rows, credits,
sums updated by difference, journal row removed).
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

from gmv_store.diskspace import check_write
from gmv_store.ledger import insert_columns, transaction
from gmv_store.store import GENERATED, Store
from gmv_store.vectors import point_id


def pack_scores(scores) -> bytes:
    return np.asarray(scores, dtype="<f8").tobytes()


def unpack_scores(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype="<f8")


def generated_point_id(set_name: str, sha256: str) -> int:
    return point_id(hashlib.sha256(f"{set_name}\0{sha256}".encode()).hexdigest())


@dataclass
class Scored:
    """One generated image with its top-k: contributor ids, distances and credits."""

    generated_id: str
    sha256: str
    source: str
    label: str | None
    quality: float
    contributors: list[str]
    distances: list[float]
    credits: list[float]
    recall_ranks: list[int]
    recall_scores: list[float]  # of every recalled candidate, best first

    @property
    def recall_floor(self) -> float | None:
        return float(self.recall_scores[-1]) if len(self.recall_scores) else None

    @property
    def n_recalled(self) -> int:
        return len(self.recall_scores)


def add_sums(con, set_name: str, scored: list[Scored], sign: int = 1) -> None:
    """value_sums += sign * credits, aggregated per contributor first (DuckDB collapses
    duplicate keys inside one upsert)."""
    agg_sum: dict[str, float] = defaultdict(float)
    agg_n: dict[str, int] = defaultdict(int)
    for s in scored:
        for cid, c in zip(s.contributors, s.credits):
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


def insert_credits(con, set_name: str, scored: list[Scored]) -> None:
    cols = {"set_name": [], "generated_id": [], "contributor_id": [], "rank": [], "distance": [], "credit": [],
            "recall_rank": []}
    for s in scored:
        for r, (cid, d, c, rr) in enumerate(zip(s.contributors, s.distances, s.credits, s.recall_ranks), start=1):
            cols["set_name"].append(set_name)
            cols["generated_id"].append(s.generated_id)
            cols["contributor_id"].append(cid)
            cols["rank"].append(r)
            cols["distance"].append(d)
            cols["credit"].append(c)
            cols["recall_rank"].append(rr)
    insert_columns(con, "credits", cols)


def write_generated(store: Store, set_name: str, scored: list[Scored], vectors: dict, meta: dict) -> None:
    if not scored:
        return
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    ids = [generated_point_id(set_name, s.sha256) for s in scored]
    payloads = [
        {"set_name": set_name, "generated_id": s.generated_id, "sha256": s.sha256, "source": s.source,
         "label": s.label, "quality": s.quality}
        for s in scored
    ]
    check_write(store, f"writing {len(scored):,} generated images", vectors=vectors, payloads=payloads,
                rows=len(scored) + 2 * sum(len(s.contributors) for s in scored),
                blob_bytes=8 * sum(len(s.recall_scores) for s in scored))
    op = store.journal_begin("value", GENERATED, ids, {"set_name": set_name})
    store.vectors.upsert(GENERATED, ids, vectors, payloads)
    with transaction(store.ledger) as con:
        insert_columns(con, "generated_images", {
            "set_name": [set_name] * len(scored), "generated_id": [s.generated_id for s in scored],
            "point_id": ids, "sha256": [s.sha256 for s in scored], "source": [s.source for s in scored],
            "label": [s.label for s in scored], "meta": [json.dumps(meta)] * len(scored),
            "quality": [s.quality for s in scored], "valued_at": [now] * len(scored),
            "recall_floor": [s.recall_floor for s in scored], "n_recalled": [s.n_recalled for s in scored],
            "recall_scores": [pack_scores(s.recall_scores) for s in scored],
        })
        insert_credits(con, set_name, scored)
        add_sums(con, set_name, scored)
        con.execute("DELETE FROM journal WHERE op_id = ?", [op])
