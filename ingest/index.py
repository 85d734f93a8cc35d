"""Bring the training collection's HNSW index up to date (the last step of ingest, and
`gmv index`). Qdrant builds the graph inside `optimize()`, which reports no progress, so the
progress line counts elapsed time against an estimate from the last build's rate.

A build changes which candidates an approximate search returns, so when any segment changed
the caller re-checks every stored match (see `api.index`)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass

from gmv_store.store import TRAINING, Store

RATE_FILE = "gmv-index-rate.json"
DEFAULT_S_PER_POINT_DIM = 1.4e-6  # ~0.36 ms per 256-d point (docs: 1M x 512-d in 364 s, m 16)


@dataclass
class IndexReport:
    mode: str
    changed: bool = False
    seconds: float = 0.0
    points: int = 0
    indexed_points: int = 0
    segments: int = 0
    rechecked: int = 0      # generated images queued to be matched again after the build
    refresh: object = None  # the RefreshReport of that re-check, when the caller ran one


def _estimate(store: Store, points: int) -> float:
    per = DEFAULT_S_PER_POINT_DIM
    try:
        per = json.loads((store.root / RATE_FILE).read_text())["s_per_point_dim"]
    except (OSError, ValueError, KeyError):
        pass
    return per * points * store.embedder.dim


def build_index(store: Store, progress: bool = False) -> IndexReport:
    """Index the segments that reached the threshold; a no-op for exact stores."""
    mode = store.config.index.mode
    report = IndexReport(mode)
    if mode == "exact":
        return report
    before = store.vectors.index_state(TRAINING)
    todo = max(0, before["points"] - before["indexed_points"])
    eta = _estimate(store, todo)
    stop = threading.Event()
    ticker = threading.Thread(target=_tick, args=(stop, todo, eta), daemon=True) if progress and todo else None
    t0 = time.perf_counter()
    if ticker:
        ticker.start()
    try:
        report.changed = store.vectors.build_index(TRAINING)
    finally:
        stop.set()
        if ticker:
            ticker.join()
    report.seconds = time.perf_counter() - t0
    after = store.vectors.index_state(TRAINING)
    report.points, report.indexed_points, report.segments = after["points"], after["indexed_points"], after["segments"]
    if report.changed and todo:
        (store.root / RATE_FILE).write_text(json.dumps(
            {"s_per_point_dim": report.seconds / (todo * store.embedder.dim)}))
    return report


def _tick(stop: threading.Event, points: int, eta: float) -> None:
    import sys

    t0 = time.perf_counter()
    while not stop.wait(1.0):
        dt = time.perf_counter() - t0
        left = f"about {max(0.0, eta - dt):.0f}s left" if dt < eta else "taking longer than estimated"
        sys.stderr.write(f"\rindex: building HNSW over {points:,} points, {dt:.0f}s ({left})   ")
        sys.stderr.flush()
    sys.stderr.write("\r" + " " * 80 + "\r")
