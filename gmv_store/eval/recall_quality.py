"""Recall quality: how much the store's fast search loses against exact search.

Two different losses, measured separately:

- `two_stage_recall`: the valuation's recall-then-re-rank (keep N candidates by the recall
  embedding, then the k closest of those by the re-rank distance) against the exact top-k by
  the re-rank distance over the whole training set (numpy brute force over the stored
  vectors). recall@k = |two-stage top-k ∩ exact top-k| / k, averaged over the set's
  generated images, for several N. This is what a too-small N costs.
- `hnsw_recall`: the store's own approximate nearest-neighbour index (Qdrant HNSW on the
  training recall vector, `gmv init --index`) against exact search of the same vectors.
"""
from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from gmv_store.errors import BadInput
from gmv_store.ids import point_id
from gmv_store.ledger import evaluation as ledger
from gmv_store.store import GENERATED, TRAINING, Store

from .ledger_read import set_info

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


def _generated_points(con: Connection, set_name: str, limit: int | None) -> list[int]:
    pids = ledger.generated_point_ids(con, set_name)
    if limit:
        pids = pids[:limit]
    if not pids:
        raise BadInput(f"set '{set_name}' has no generated images")
    return pids


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    unit: np.ndarray = np.divide(x, n, out=np.zeros_like(x), where=n > 0)
    return unit


def exact_topk(queries: np.ndarray, base: np.ndarray, k: int, metric: str, chunk: int = 128) -> np.ndarray:
    """Row indices into `base` of the k nearest rows to each query, closest first, by brute
    force (cosine: 1 - cosine similarity; euclid: euclidean distance)."""
    q = np.asarray(queries, dtype=np.float32)
    b = np.asarray(base, dtype=np.float32)
    k = min(k, len(b))
    if metric == "cosine":
        q, b = _unit(q), _unit(b)
        bb = None
    elif metric == "euclid":
        bb = (b.astype(np.float64) ** 2).sum(1)
    else:
        raise BadInput(f"unknown metric {metric!r}")
    out = np.empty((len(q), k), dtype=np.int64)
    for i in range(0, len(q), chunk):
        qc = q[i:i + chunk]
        d = -(qc @ b.T).astype(np.float64) if bb is None else bb[None, :] - 2.0 * (qc @ b.T)
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(d, part, 1).argsort(1, kind="stable")
        out[i:i + chunk] = np.take_along_axis(part, order, 1)
    return out


def _training_vectors(store: Store, using: str, chunk: int = 5000) -> tuple[list[int], np.ndarray]:
    ids = sorted(store.vectors.ids(TRAINING))
    parts = [store.vectors.vectors(TRAINING, ids[i:i + chunk], using) for i in range(0, len(ids), chunk)]
    return ids, np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def two_stage_recall(store: Store, set_name: str, recalls: Iterable[int] | None = None, k: int | None = None,
                     limit: int | None = None) -> list[dict[str, Any]]:
    """recall@k of recall-N-then-re-rank against the exact re-rank top-k, per N."""
    from gmv_store.query.search import search

    info = set_info(store.ledger, set_name)
    k = k or info["k"]
    if store.reranker.rerank_kind() == "pairwise":
        raise BadInput(f"re-rank '{store.reranker.name}' is computed pairwise from images; an exact reference would "
                       "need one model forward per (generated, training) pair; fix: measure on a store whose re-rank "
                       "has a stored vector (l2, embedding, dreamsim, lpips mode=vector)")
    spec = store.vector_spec()
    using = "rerank" if "rerank" in spec else "recall"
    pids = _generated_points(store.ledger, set_name, limit)
    vecs = {name: store.vectors.vectors(GENERATED, pids, name) for name in spec}
    ids, base = _training_vectors(store, using)
    n = len(ids)
    if k > n:
        raise BadInput(f"k={k} exceeds the {n} training images")
    t = time.perf_counter()
    exact = exact_topk(vecs[using], base, k, spec[using].metric)
    exact_s = time.perf_counter() - t
    exact_sets = [{ids[j] for j in row} for row in exact]
    if recalls is None:
        recalls = [k, 2 * k, 5 * k, 10 * k, 20 * k, info["recall"]]
    rows = []
    for N in sorted({min(max(int(r), k), n) for r in recalls}):
        t = time.perf_counter()
        ms = search(store, vecs, k, N, [1.0] * len(pids))
        dt = time.perf_counter() - t
        hits = np.array([len({point_id(c) for c in m.contributors} & e) / k for m, e in zip(ms, exact_sets)])
        rows.append({"set_name": set_name, "k": k, "recall_N": N, "reference": f"exact top-k by {using} vector",
                     "recall_at_k": float(hits.mean()), "min_recall_at_k": float(hits.min()),
                     "ms_per_query": 1000 * dt / len(ms), "exact_ms_per_query": 1000 * exact_s / len(ms),
                     "as_valued": N == min(max(info["recall"], k), n), "queries": len(ms), "training": n})
    return rows


def hnsw_recall(store: Store, set_name: str, k: int | None = None, efs: Iterable[int | None] | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
    """recall@k of the store's own HNSW index (on the training recall vector) against exact
    search of the same vectors, for each search-time ef (None: the ef the store's searches use;
    Qdrant never searches with an ef below the limit k)."""
    from gmv_store.vectors import Query

    if store.config.index.mode == "exact":
        raise BadInput("this store searches exactly (gmv init --index exact); fix: measure a store made with "
                       "`gmv init --index hnsw` (or auto, past ~100,000 points)")
    state = store.vectors.index_state(TRAINING)
    if not state["indexed_points"]:
        raise BadInput(f"the store's index covers none of its {state['points']:,} points yet; fix: run `gmv index` "
                       "(auto mode indexes a segment once it holds 50,000 points)")
    info = set_info(store.ledger, set_name)
    k = k or info["k"]
    queries = store.vectors.vectors(GENERATED, _generated_points(store.ledger, set_name, limit), "recall")

    def run(**opts: Any) -> tuple[list[set[int]], float]:
        qs = [Query({"recall": v}, using="recall", limit=k, **opts) for v in queries]
        t0 = time.perf_counter()
        res = store.vectors.query(TRAINING, qs)
        return [{p for p, _ in hits} for hits in res], time.perf_counter() - t0

    exact, exact_s = run(exact=True)
    rows = []
    for ef in efs or (None, 2 * k, 4 * k):
        used = ef or store.config.index.search_ef(k)
        approx, dt = run(ef=used)
        hits = np.array([len(a & e) / max(len(e), 1) for a, e in zip(approx, exact)])
        rows.append({"set_name": set_name, "k": k, "hnsw_ef": used, "as_searched": ef is None,
                     "m": store.config.index.hnsw_m, "ef_construct": store.config.index.hnsw_ef_construct,
                     "quantization": store.config.index.quantization, "recall_at_k": float(hits.mean()),
                     "min_recall_at_k": float(hits.min()), "ms_per_query": 1000 * dt / len(queries),
                     "exact_ms_per_query": 1000 * exact_s / len(queries), "training": state["points"],
                     "indexed_points": state["indexed_points"], "queries": len(queries)})
    return rows
