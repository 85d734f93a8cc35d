"""How to find which new training images enter which generated images' recall lists, with
Qdrant doing every search. Plans, timed side by side on the same store and checked to find
the same pairs:

  a. per generated image: its stored recall vector searched among the new points only
     (a filter on their ids), no worse than its own list's last score;
  a'. as a, the new points picked by a range on their write time (an indexed integer
     payload) instead of their ids — what refresh does;
  b. per new image: its vector searched over the generated collection, no worse than the
     loosest last score of any list; then each pair kept only if it beats that image's own
     last score, and the kept pairs' scores asked again in the direction a from-scratch
     search computes them (its vector among its candidates' ids), so they are the same floats;
  c. as b, with the generated images cut into bands of similar last scores, each band
     searched (a filter on its ids) with its own loosest last score: fewer pairs to check.

    PYTHONPATH=. .venv/bin/python benchmarks/refresh_find.py [--train 20000] [--generated 3000] [--new 1000]
    ... --store PATH   # a store with training images ingested but not yet refreshed (a copy: nothing is written)
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from gmv_store.query.matches import generated_rows
from gmv_store.query.recall_lists import capacity, read_lists
from gmv_store.query.refresh import _threshold, entering, pending_filter
from gmv_store.query.search import recall_size
from gmv_store.store import GENERATED, TRAINING, Store
from gmv_store.vectors import Query


def build(a, work: Path) -> Path:
    from gmv_store.datasets import load_mnist
    from gmv_store.ingest.pipeline import ingest
    from gmv_store.query.value import value

    x, _ = load_mnist("train")
    xt, _ = load_mnist("test")
    for name, imgs in (("train", x[:a.train]), ("new", x[a.train:a.train + a.new]), ("gen", xt[:a.generated])):
        np.savez(work / f"{name}.npz", images=imgs)
    s = Store.init(work / "store", embedder=("pixels", {"size": 16}), rerank=("l2", {"size": 28}))
    try:
        ingest(s, [str(work / "train.npz")])
        value(s, [str(work / "gen.npz")], "g", k=50)
        ingest(s, [str(work / "new.npz")])  # pending, not refreshed
    finally:
        s.close()
    return work / "store"


def reverse(s: Store, rows, lists, new_ids: list[int], bands: int) -> tuple[dict, int]:
    """Plans b (bands=1) and c: pairs (generated row, new id) -> score, and how many
    candidate pairs the reverse searches returned."""
    metric = s.embedder.metric
    last = lists.scores[np.arange(len(lists)), lists.length - 1]
    key = -last if metric == "cosine" else last
    order = np.argsort(-key)  # best (tightest) last scores first
    groups = np.array_split(order, bands)
    tvecs = s.vectors.vector_lists(TRAINING, new_ids, "recall")
    pids = np.array([r.point_id for r in rows], dtype=np.uint64)
    row_of = {int(p): i for i, p in enumerate(pids)}
    cand: dict[int, list[int]] = {}
    n_pairs = 0
    for g in groups:
        loosest = float(last[g].min() if metric == "cosine" else last[g].max())
        only = tuple(int(p) for p in pids[g])
        res = s.vectors.query(GENERATED, [Query({"recall": v}, using="recall", limit=len(g), only_ids=only,
                                                score_threshold=_threshold(loosest, metric), exact=True) for v in tvecs])
        for nid, hits in zip(new_ids, res):
            n_pairs += len(hits)
            for p, score in hits:
                i = row_of[p]
                if (score >= last[i] - 1e-5) if metric == "cosine" else (score <= last[i] + 1e-5):
                    cand.setdefault(i, []).append(nid)
    # the scores a from-scratch search computes: the generated image's vector among its candidates
    idx = sorted(cand)
    gvecs = s.vectors.vector_lists(GENERATED, [rows[i].point_id for i in idx], "recall")
    res = s.vectors.query(TRAINING, [Query({"recall": gvecs[j]}, using="recall", limit=len(cand[i]),
                                           only_ids=tuple(cand[i]), score_threshold=_threshold(float(last[i]), metric),
                                           exact=True) for j, i in enumerate(idx)])
    return {(i, p): sc for i, hits in zip(idx, res) for p, sc in hits}, n_pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=20_000)
    ap.add_argument("--generated", type=int, default=3_000)
    ap.add_argument("--new", type=int, default=1_000)
    ap.add_argument("--bands", type=int, default=16)
    ap.add_argument("--store", default=None)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="gmv-find-"))
    try:
        if a.store:
            shutil.copytree(a.store, work / "store")
            path = work / "store"
        else:
            path = build(a, work)
        s = Store.open(path)
        try:
            con = s.ledger
            new_ids = [r[0] for r in con.execute("SELECT point_id FROM pending_refresh ORDER BY 1").fetchall()]
            (set_name, k, n), = con.execute("SELECT set_name, k, recall FROM generated_sets LIMIT 1").fetchall()
            rows = generated_rows(con, set_name)
            lists = read_lists(con, set_name, [r.generated_id for r in rows], metric=s.embedder.metric)
            n_train = con.execute("SELECT count(*) FROM training_images").fetchone()[0]
            cap = capacity(recall_size(s, k, n))
            print(f"{len(rows):,} generated images, {n_train:,} training images of which {len(new_ids):,} new")
            t = time.perf_counter()
            e_ids, e_scores, e_len = entering(s, rows, lists, new_ids, cap, n_train)
            ta = time.perf_counter() - t
            want = {(i, int(p)): sc for i in range(len(rows)) for p, sc in zip(e_ids[i, :e_len[i]], e_scores[i, :e_len[i]])}
            print(f"a. per generated image among the new ids: {ta:.2f}s, {len(want):,} entering pairs")
            t = time.perf_counter()
            among = pending_filter(s, new_ids)
            e_ids, e_scores, e_len = entering(s, rows, lists, new_ids, cap, n_train, among)
            dt = time.perf_counter() - t
            got = {(i, int(p)): sc for i in range(len(rows)) for p, sc in zip(e_ids[i, :e_len[i]], e_scores[i, :e_len[i]])}
            print(f"a'. per generated image, new points by write time ({next(iter(among))}): {dt:.2f}s "
                  f"({dt / ta:.2f}x a), same pairs and scores: {got == want}")
            for label, bands in (("b. per new image, loosest last score", 1), (f"c. per new image, {a.bands} bands", a.bands)):
                t = time.perf_counter()
                got, n_pairs = reverse(s, rows, lists, new_ids, bands)
                dt = time.perf_counter() - t
                same = {key: v for key, v in got.items() if key in want} == want and set(got) == set(want)
                print(f"{label}: {dt:.2f}s ({dt / ta:.1f}x a), {n_pairs:,} candidate pairs, same pairs and scores: {same}")
        finally:
            s.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
