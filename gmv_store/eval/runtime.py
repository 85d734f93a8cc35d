"""Runtime split of ingest and valuation (C4), from the pipelines' own reports.

A valuation's time is split into model forwards (embedder + re-rank vector + quality), vector
search (recall and re-rank queries in Qdrant), scoring (Eq. 6, timed here by recomputing it
from the stored distances and qualities), ledger writes (generated vectors, credits and value
sums, in one transaction per batch) and the rest (decoding images, de-duplication lookups).
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from gmv_store.ledger import evaluation as ledger
from gmv_store.valuation import credits

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection

    from gmv_store.ingest.pipeline import IngestReport
    from gmv_store.query.value import ValueReport


def scoring_seconds(con: Connection, set_name: str, generated_ids: Iterable[str] | None = None,
                    repeats: int = 3) -> float:
    """Seconds Eq. 6 takes for the given generated images of the set (best of `repeats`),
    recomputed from the stored distances and qualities."""
    rows = ledger.stored_scores(con, set_name)
    if generated_ids is not None:
        wanted = set(generated_ids)
        rows = [r for r in rows if r[0] in wanted]
    best = float("inf")
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        for _, d, q in rows:
            credits(d, q)
        best = min(best, time.perf_counter() - t)
    return best if rows else 0.0


def value_split(report: ValueReport, scoring_s: float) -> dict[str, Any]:
    """Seconds per stage of one `gmv_store.query.value.value` call, and per generated image (ms)."""
    t = report.timings
    n = max(report.valued, 1)
    forwards = t["embed"] + t["quality"]
    other = max(report.seconds - forwards - t["search"] - t["write"] - scoring_s, 0.0)
    split = {"forwards": forwards, "search": t["search"], "scoring": scoring_s, "write": t["write"], "other": other}
    out = {"generated": report.valued, "total_s": report.seconds, "ms_per_image": 1000 * report.seconds / n}
    for key, sec in split.items():
        out[f"{key}_s"] = sec
        out[f"{key}_ms"] = 1000 * sec / n
    return out


def add_splits(splits: list[dict[str, Any]]) -> dict[str, Any]:
    """Sum several `value_split` results (e.g. one store's sets)."""
    keys = ("forwards", "search", "scoring", "write", "other")
    n = sum(s["generated"] for s in splits)
    out: dict[str, Any] = {"generated": n, "total_s": sum(s["total_s"] for s in splits)}
    out["ms_per_image"] = 1000 * out["total_s"] / max(n, 1)
    for k in keys:
        out[f"{k}_s"] = sum(s[f"{k}_s"] for s in splits)
        out[f"{k}_ms"] = 1000 * out[f"{k}_s"] / max(n, 1)
    return out


def ingest_split(report: IngestReport) -> dict[str, Any]:
    n = max(report.added, 1)
    other = max(report.seconds - report.embed_seconds - report.write_seconds, 0.0)
    return {"added": report.added, "total_s": report.seconds, "embed_s": report.embed_seconds,
            "write_s": report.write_seconds, "other_s": other, "ms_per_image": 1000 * report.seconds / n,
            "embed_ms": 1000 * report.embed_seconds / n, "write_ms": 1000 * report.write_seconds / n}


def summarize(values: Iterable[float] | np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())} if v.size else {}
