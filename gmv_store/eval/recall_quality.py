"""Recall quality: how much the store's fast search loses against exact search.

Two different losses, measured separately:

- `two_stage_recall`: the valuation's recall-then-re-rank (keep N candidates by the recall
  embedding, then the k closest of those by the re-rank distance) against the exact top-k by
  the re-rank distance over the whole training set (numpy brute force over the stored
  vectors). recall@k = |two-stage top-k ∩ exact top-k| / k, averaged over the set's
  generated images, for several N. This is what a too-small N costs.
- `hnsw_recall`: the approximate nearest-neighbour index (Qdrant HNSW, which the embedded edge
  engine builds only on `optimize()`; the store searches exactly without it) against exact
  search on the same vectors, built on a temporary copy of the store's training shard.
"""
from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from gmv_store.backends.base import ImageReranker
from gmv_store.errors import BadInput
from gmv_store.store import GENERATED, TRAINING, Store

from .ledger_read import set_info


def _generated_points(con, set_name: str, limit: int | None) -> list[int]:
    rows = con.execute("SELECT point_id FROM generated_images WHERE set_name = ? ORDER BY generated_id",
                       [set_name]).fetchall()
    if limit:
        rows = rows[:limit]
    if not rows:
        raise BadInput(f"set '{set_name}' has no generated images")
    return [r[0] for r in rows]


def _unit(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, n, out=np.zeros_like(x), where=n > 0)


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


def _training_vectors(store: Store, using: str, chunk: int = 5000) -> tuple[list[str], np.ndarray]:
    ids = sorted(store.vectors.ids(TRAINING))
    parts = [store.vectors.vectors(TRAINING, ids[i:i + chunk], using) for i in range(0, len(ids), chunk)]
    return ids, np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def two_stage_recall(store: Store, set_name: str, recalls=None, k: int | None = None,
                     limit: int | None = None) -> list[dict]:
    """recall@k of recall-N-then-re-rank against the exact re-rank top-k, per N."""
    from query.search import search

    info = set_info(store.ledger, set_name)
    k = k or info["k"]
    if isinstance(store.reranker, ImageReranker):
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
        hits = np.array([len({int(c, 16) for c in m.contributors} & e) / k for m, e in zip(ms, exact_sets)])
        rows.append({"set_name": set_name, "k": k, "recall_N": N, "reference": f"exact top-k by {using} vector",
                     "recall_at_k": float(hits.mean()), "min_recall_at_k": float(hits.min()),
                     "ms_per_query": 1000 * dt / len(ms), "exact_ms_per_query": 1000 * exact_s / len(ms),
                     "as_valued": N == min(max(info["recall"], k), n), "queries": len(ms), "training": n})
    return rows


def hnsw_recall(store_path, set_name: str, k: int | None = None, efs=None, *, using: str = "recall",
                m: int = 16, ef_construct: int = 100, limit: int | None = None, work_dir=None) -> list[dict]:
    """recall@k of a Qdrant HNSW index (built on a temporary copy of the training shard)
    against exact search on the same shard, for each search-time ef (None = Qdrant's default;
    Qdrant never searches with an ef below the limit k, so the default list is None, 2k, 4k)."""
    import qdrant_edge as qe

    from gmv_store.vectors.edge import read_shard_spec

    s = Store.open(store_path)
    try:
        if s.config.engine != "edge":
            raise BadInput(f"the HNSW check builds an index on a copy of the embedded edge shard; this store uses "
                           f"engine '{s.config.engine}'; fix: run it on an edge store")
        info = set_info(s.ledger, set_name)
        k = k or info["k"]
        pids = _generated_points(s.ledger, set_name, limit)
        spec = s.vector_spec()
        if using not in spec:
            raise BadInput(f"the store has no '{using}' vector; fix: use one of {', '.join(spec)}")
        queries = s.vectors.vectors(GENERATED, pids, using)
        efs = efs or (None, 2 * k, 4 * k)
        src = s.root / "qdrant-edge" / TRAINING
    finally:
        s.close()  # flushes the shard; the copy below is then consistent
    dist = {"cosine": qe.Distance.Cosine, "euclid": qe.Distance.Euclid}
    with tempfile.TemporaryDirectory(prefix="gmv-hnsw-", dir=work_dir) as tmp:
        dst = Path(tmp) / TRAINING
        shutil.copytree(src, dst)
        vectors = {name: qe.EdgeVectorParams(size=v["size"], distance=dist[v["distance"]])
                   for name, v in read_shard_spec(dst).items()}
        # indexing_threshold 1 KB: index every segment, however small (tests use a few hundred points)
        cfg = qe.EdgeConfig(vectors=vectors,
                            hnsw_config=qe.HnswIndexConfig(m=m, ef_construct=ef_construct, full_scan_threshold=1),
                            optimizers=qe.EdgeOptimizersConfig(indexing_threshold=1))
        shard = qe.EdgeShard.load(str(dst), cfg)
        try:
            t = time.perf_counter()
            shard.optimize()
            build_s = time.perf_counter() - t
            n = shard.count(qe.CountRequest(exact=True))
            indexed = shard.info().indexed_vectors_count

            def search(params):
                reqs = [qe.QueryRequest(limit=k, query=qe.Query.Nearest(np.asarray(v, np.float32).tolist(), using=using),
                                        params=params, with_payload=False, with_vector=False) for v in queries]
                t0 = time.perf_counter()
                res = shard.query_batch(qe.QueryBatchRequest(reqs))
                return [{str(p.id) for p in hits} for hits in res], time.perf_counter() - t0

            exact, exact_s = search(qe.SearchParams(exact=True))
            rows = []
            for ef in efs:
                approx, dt = search(qe.SearchParams(hnsw_ef=ef) if ef else None)
                hits = np.array([len(a & e) / max(len(e), 1) for a, e in zip(approx, exact)])
                rows.append({"set_name": set_name, "vector": using, "k": k, "hnsw_ef": ef or "default", "m": m,
                             "ef_construct": ef_construct, "recall_at_k": float(hits.mean()),
                             "min_recall_at_k": float(hits.min()), "ms_per_query": 1000 * dt / len(queries),
                             "exact_ms_per_query": 1000 * exact_s / len(queries), "build_s": build_s,
                             "training": n, "indexed_vectors": indexed, "queries": len(queries)})
        finally:
            shard.close()
    return rows
