"""The engine's own share of a valuation, per generated image, on an existing store: each call
valuation makes to Qdrant timed alone, with the process's CPU time beside the wall time.

  recall, index   the recall search through HNSW at the ef the store uses for the hits
                  valuation asks (N + reserve + 1 + tie margin), and at the lowest ef that
                  limit allows (Qdrant never searches with an ef below the limit)
  recall, exact   the same search without the index
  re-rank         the re-rank vector searched among the N recalled ids (k + runners-up kept)
  fetch           the N recalled ids' re-rank vectors fetched into Python: what re-ranking
                  outside the engine would have to do first

For the index, recall@N (the first N ids against exact search's) and the final top-k overlap
(each list re-ranked) say what its speed costs. These are floors for the whole valuation: whatever else it does (embedding, Python, the
ledger write) comes on top. CPU / wall near 1.0 means one core (the engine searches a shard's
segments one after another, and holds the GIL while it does).

    PYTHONPATH=. .venv/bin/python benchmarks/engine_costs.py --store S   # a store with a valued set
    PYTHONPATH=. .venv/bin/python benchmarks/engine_costs.py --quick     # builds a 3,000-image store
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from gmv_store.config import IndexConfig
from gmv_store.query.recall_lists import capacity, runners_up
from gmv_store.query.search import TIE_MARGIN
from gmv_store.store import GENERATED, TRAINING, Store
from gmv_store.vectors import Query


def build(work: Path) -> Path:
    from gmv_store.datasets import load_mnist
    from gmv_store.ingest.pipeline import ingest
    from gmv_store.query.value import value

    x, _ = load_mnist("train")
    xt, _ = load_mnist("test")
    np.savez(work / "train.npz", images=x[:3000])
    np.savez(work / "gen.npz", images=xt[:100])
    s = Store.init(work / "store", index=IndexConfig(mode="hnsw"))
    try:
        ingest(s, [str(work / "train.npz")])
        value(s, [str(work / "gen.npz")], "g", k=50, recall=500)
    finally:
        s.close()
    return work / "store"


def timed(fn, n: int, rounds: int) -> tuple[float, float]:
    """(ms per query, CPU / wall) of the fastest round: warm caches, the least noise."""
    best = None
    for _ in range(rounds):
        w, c = time.perf_counter(), time.process_time()
        fn()
        w, c = time.perf_counter() - w, time.process_time() - c
        if best is None or w < best[0]:
            best = (w, c)
    return 1000 * best[0] / n, best[1] / best[0]


def rerank_tops(s: Store, rr: np.ndarray, ids: list[tuple], k: int) -> list[set]:
    """The final top-k of each query: its re-rank vector among its recalled ids."""
    res = s.vectors.query(TRAINING, [Query({"rerank": v}, "rerank", k, only_ids=i, exact=True) for v, i in zip(rr, ids)])
    return [{p for p, _ in h} for h in res]


def measure(path: Path, queries: int, rounds: int, n_recall: int, k: int) -> dict:
    s = Store.open(path)
    try:
        s.vectors.count(TRAINING)  # the store open (loading vectors) is not a query's cost
        pids = [r[0] for r in s.ledger.execute(
            "SELECT point_id FROM generated_images ORDER BY point_id LIMIT ?", [queries]).fetchall()]
        if not pids:
            raise SystemExit(f"{path}: no generated images; value a set first (gmv value ... --store {path})")
        rec = s.vectors.vectors(GENERATED, pids, "recall")
        rr = s.vectors.vectors(GENERATED, pids, "rerank")
        limit = capacity(n_recall) + 1 + TIE_MARGIN
        ef = s.search_options(limit).get("ef")

        def recall(**o):
            return s.vectors.query(TRAINING, [Query({"recall": v}, "recall", limit, **o) for v in rec])

        lists = recall(exact=True)
        ids = [tuple(p for p, _ in h[:n_recall]) for h in lists]
        kr = k + runners_up(k)
        out = {"points": s.vectors.count(TRAINING), "queries": len(pids), "limit": limit, "ef": ef}
        calls = {"recall_exact": lambda: recall(exact=True),
                 "rerank": lambda: s.vectors.query(TRAINING, [Query({"rerank": v}, "rerank", kr, only_ids=i, exact=True)
                                                             for v, i in zip(rr, ids)]),
                 "fetch": lambda: [s.vectors.vectors(TRAINING, list(i), "rerank") for i in ids]}
        if ef is not None:
            calls = {"recall_index": lambda: recall(ef=ef), "recall_index_lowest_ef": lambda: recall(ef=limit), **calls}
        for name, fn in calls.items():
            out[f"{name}_ms"], out[f"{name}_cpu_per_wall"] = timed(fn, len(pids), rounds)
        if ef is not None:  # what the index's speed costs in quality, against exact search
            top = rerank_tops(s, rr, ids, k)
            for name, e in (("recall_index", ef), ("recall_index_lowest_ef", limit)):
                got = [tuple(p for p, _ in h[:n_recall]) for h in recall(ef=e)]
                out[f"{name}_recall_at_N"] = float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(got, ids)]))
                out[f"{name}_topk_overlap"] = float(np.mean([len(a & b) / len(b) for a, b in
                                                             zip(rerank_tops(s, rr, got, k), top)]))
        return out
    finally:
        s.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="a store with training images and at least one valued set")
    ap.add_argument("--quick", action="store_true", help="build a 3,000-image store in a temporary folder")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--recall", type=int, default=500, help="N")
    ap.add_argument("--k", type=int, default=50)
    a = ap.parse_args()
    if not a.store and not a.quick:
        ap.error("give --store PATH or --quick")
    with tempfile.TemporaryDirectory(prefix="gmv-engine-") as tmp:
        path = build(Path(tmp)) if a.quick else Path(a.store)
        r = measure(path, a.queries, a.rounds, a.recall, a.k)
    print(json.dumps(r))
    print(f"\n{r['points']:,} training points, {r['queries']} queries, {r['limit']} hits asked (N {a.recall}), "
          f"ef {r['ef']}\n")
    print("| engine call | ms per generated image | CPU / wall | recall@N / top-k overlap vs exact |\n|---|---|---|---|")
    for name, label in (("recall_index", f"recall through the index, ef {r['ef']}"),
                        ("recall_index_lowest_ef", f"recall through the index, ef {r['limit']} (lowest)"),
                        ("recall_exact", "recall, exact"), ("rerank", f"re-rank among the {a.recall} recalled ids"),
                        ("fetch", f"fetch the {a.recall} recalled re-rank vectors")):
        if f"{name}_ms" in r:
            quality = (f"{r[name + '_recall_at_N']:.4f} / {r[name + '_topk_overlap']:.4f}"
                       if f"{name}_recall_at_N" in r else "–")
            print(f"| {label} | {r[name + '_ms']:.2f} | {r[name + '_cpu_per_wall']:.2f} | {quality} |")


if __name__ == "__main__":
    main()
