"""Runtime split of ingest and valuation (C4), from the pipelines' own reports.

A valuation's time is split into model forwards (embedder + re-rank vector + quality), vector
search (recall and re-rank queries in Qdrant), scoring (Eq. 6, timed here by recomputing it
from the stored distances and qualities), ledger writes (generated vectors, credits and value
sums, in one transaction per batch) and the rest (decoding images, de-duplication lookups).
"""
from __future__ import annotations

import time

import numpy as np

from gmv_store.valuation import credits


def scoring_seconds(con, set_name: str, generated_ids=None, repeats: int = 3) -> float:
    """Seconds Eq. 6 takes for the given generated images of the set (best of `repeats`),
    recomputed from the stored distances and qualities."""
    rows = con.execute(
        """SELECT s.generated_id, list(s.distance ORDER BY s.rank), any_value(g.quality)
           FROM scores s JOIN generated g USING (set_name, generated_id)
           WHERE s.set_name = ? GROUP BY s.generated_id""", [set_name]).fetchall()
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


def value_split(report, scoring_s: float) -> dict:
    """Seconds per stage of one `query.value.value` call, and per generated image (ms)."""
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


def add_splits(splits: list[dict]) -> dict:
    """Sum several `value_split` results (e.g. one store's sets)."""
    keys = ("forwards", "search", "scoring", "write", "other")
    n = sum(s["generated"] for s in splits)
    out = {"generated": n, "total_s": sum(s["total_s"] for s in splits)}
    out["ms_per_image"] = 1000 * out["total_s"] / max(n, 1)
    for k in keys:
        out[f"{k}_s"] = sum(s[f"{k}_s"] for s in splits)
        out[f"{k}_ms"] = 1000 * out[f"{k}_s"] / max(n, 1)
    return out


def ingest_split(report) -> dict:
    n = max(report.added, 1)
    other = max(report.seconds - report.embed_seconds - report.write_seconds, 0.0)
    return {"added": report.added, "total_s": report.seconds, "embed_s": report.embed_seconds,
            "write_s": report.write_seconds, "other_s": other, "ms_per_image": 1000 * report.seconds / n,
            "embed_ms": 1000 * report.embed_seconds / n, "write_ms": 1000 * report.write_seconds / n}


def summarize(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max())} if v.size else {}
