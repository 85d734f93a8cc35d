"""Incremental upkeep against the full recompute it replaces, side by side in one run.

Default (MNIST-sized): 58,000 training images, a set of 10,000 generated images (the MNIST
test set), k=50, N=500, then
  A. value 1,000 extra generated images into the set         vs  valuing all 11,000 again
  B. ingest 1,000 new training images, refresh (ingest excluded) vs re-valuing all 11,000
  C. forget 1 % of the training images, refresh               vs  re-valuing all 11,000
  D. (--near) ingest --new training images made from generated ones (each a generated
     image shifted by a pixel, with noise), refresh         vs  re-valuing all 11,000:
     they enter near the top of many lists, so many top-k change (issue 21's case)
with the split of each refresh (find entering images / merge / re-rank / write / re-score)
and the share of generated images brought up to date. Ingest builds the index as `gmv
ingest` does (default index mode: the store's default, `auto`). Prints a table; run:

    PYTHONPATH=. .venv/bin/python benchmarks/incremental.py [--train 58000] [--generated 10000]
        [--new 1000] [--extra 1000] [--k 50] [--recall 500] [--forget 0.01] [--index auto|hnsw|exact]
    ... --near                         # add row D
    ... --quick                        # a CI-sized smoke run (seconds)
    ... --train-input SHARDS... --new-input ... --generated-input ... --extra-input ...
                                       # any inputs `gmv ingest` / `gmv value` take, instead of MNIST slices
    ... --store PATH                   # a store already holding the training set (changed in place: pass a copy)
    ... --profile FILE                 # cProfile each row's incremental step into FILE.A ... FILE.D
"""
from __future__ import annotations

import argparse
import cProfile
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from gmv_store.config import IndexConfig
from gmv_store.ingest.index import build_index
from gmv_store.ingest.pipeline import ingest
from gmv_store.query.forget import forget_set, forget_training
from gmv_store.query.refresh import queue_all, refresh
from gmv_store.query.value import value
from gmv_store.store import Store

BASIC = dict(embedder=("pixels", {"size": 16}), rerank=("l2", {"size": 28}), quality=("none", {}))
QUICK = dict(train=3_000, generated=300, new=100, extra=100, k=10, recall=100)


def mnist_inputs(a, work: Path) -> dict[str, list[str]]:
    """npz slices of MNIST for whatever inputs were not given."""
    from gmv_store.datasets import load_mnist

    x, y = load_mnist("train")
    xt, yt = load_mnist("test")
    n0, n1 = a.train, a.train + a.new
    slices = {"train": (x[:n0], y[:n0]), "new": (x[n0:n1], y[n0:n1]), "extra": (x[n1:n1 + a.extra], y[n1:n1 + a.extra]),
              "gen": (xt[:a.generated], yt[:a.generated])}
    if a.near:  # each a generated image moved by one pixel, with seeded noise
        rng = np.random.default_rng(a.seed)
        pick = rng.permutation(a.generated)[:a.new]
        src = np.roll(xt[:a.generated][pick], 1, axis=2).astype(np.int16)
        slices["near"] = (np.clip(src + rng.integers(-12, 13, src.shape), 0, 255).astype(np.uint8),
                          yt[:a.generated][pick])
    out = {}
    for name, (imgs, labs) in slices.items():
        given = getattr(a, f"{'generated' if name == 'gen' else name}_input", None)
        if given:
            out[name] = given
            continue
        f = work / f"{name}.npz"
        np.savez(f, images=imgs, labels=labs)
        out[name] = [str(f)]
    return out


def add_training(s: Store, paths: list[str], owner: str | None = None) -> int:
    """As `gmv ingest` does, without the refresh: ingest, then bring the index up to date (a
    build that changed the index queues every stored match, as the store's rule says).
    Returns how many images were added."""
    added = ingest(s, paths, owner=owner).added
    if build_index(s).changed:
        queue_all(s, "index")
    return added


def settled(s: Store) -> None:
    """Before each timed step: the ledger checkpointed and its reader copy fresh, so that no
    step pays for the write-ahead log or the periodic copy a step before it left behind
    (a CLI command does both at its own close)."""
    s.snapshot()


def full_recompute(s: Store, paths: list[str], a, name: str) -> tuple[float, float]:
    """(wall, CPU) seconds of valuing every generated image again into a new set."""
    settled(s)
    t, c = time.perf_counter(), time.process_time()
    value(s, paths, name, k=a.k, recall=a.recall, exact=a.exact)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    forget_set(s, name)
    return seconds, cpu


def split(rep) -> str:
    t = rep.timings
    return (f"find {t['find']:.2f}s, merge {t['merge']:.2f}s, re-rank {t['rerank']:.2f}s, write {t['write']:.2f}s, "
            f"re-score {t['rescore']:.2f}s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=58_000)
    ap.add_argument("--generated", type=int, default=10_000)
    ap.add_argument("--new", type=int, default=1_000)
    ap.add_argument("--extra", type=int, default=1_000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--recall", type=int, default=None, help="N (default 10 k)")
    ap.add_argument("--forget", type=float, default=0.01, help="share of the training set forgotten in C")
    ap.add_argument("--near", action="store_true", help="add row D: new training images near generated ones")
    ap.add_argument("--index", choices=("auto", "hnsw", "exact"), default="auto")
    ap.add_argument("--exact", action="store_true", help="value the sets with exact search (value --exact)")
    ap.add_argument("--quick", action="store_true", help="CI-sized: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    for name in ("train", "new", "generated", "extra"):
        ap.add_argument(f"--{name}-input", nargs="+", default=None, metavar="PATH")
    ap.add_argument("--store", default=None, help="existing store holding the training set (changed in place)")
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profile", default=None, metavar="FILE",
                    help="cProfile the incremental step of each row into FILE.<row> (pstats format)")
    a = ap.parse_args()
    if a.quick:
        for k, v in QUICK.items():
            setattr(a, k, v)
    a.recall = a.recall or 10 * a.k

    work = Path(a.dir or tempfile.mkdtemp(prefix="gmv-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    inputs = mnist_inputs(a, work)
    if a.store:
        s = Store.open(a.store)
    else:
        shutil.rmtree(work / "store", ignore_errors=True)
        s = Store.init(work / "store", **BASIC, index=IndexConfig(mode=a.index))
    rows = []
    try:
        if not a.store:
            t = time.perf_counter()
            add_training(s, inputs["train"])
            print(f"setup: ingested {s.vectors.count('training'):,} training images (index {a.index}) in "
                  f"{time.perf_counter() - t:.1f}s", flush=True)
        t = time.perf_counter()
        value(s, inputs["gen"], "g", k=a.k, recall=a.recall, exact=a.exact)
        print(f"setup: valued {a.generated:,} generated images in {time.perf_counter() - t:.1f}s", flush=True)
        everything = inputs["gen"] + inputs["extra"]

        def measure(letter, label, action, report=True):
            """Time `action` on a settled store; its row beside the full recompute it replaces."""
            settled(s)
            prof = cProfile.Profile(time.process_time) if a.profile else None  # CPU: load-proof
            t, c = time.perf_counter(), time.process_time()
            if prof is not None:
                prof.enable()
            rep = action()
            took, cpu = time.perf_counter() - t, time.process_time() - c
            if prof is not None:
                prof.disable()
                prof.dump_stats(f"{a.profile}.{letter}")
            rep = rep if report else None
            full, full_cpu = full_recompute(s, everything, a, f"full-{letter.lower()}")
            rows.append((f"{letter}. {label}", took, full, rep, cpu, full_cpu))
            if rep is not None:
                print(f"{letter}: {rep.summary()}; {split(rep)}", flush=True)

        # A. extra generated images into the existing set, vs valuing all of them from scratch
        measure("A", f"value +{a.extra:,} generated into a set of {a.generated:,}",
                lambda: value(s, inputs["extra"], "g", k=a.k, recall=a.recall, exact=a.exact), report=False)

        # B. new training images + refresh, vs re-valuing every generated image
        n_new = add_training(s, inputs["new"], owner="new")
        measure("B", f"refresh after +{n_new:,} training (ingest excluded)", lambda: refresh(s))

        # C. forget a share of the training set + refresh, vs re-valuing every generated image
        ids = [r[0] for r in s.ledger.execute("SELECT contributor_id FROM training_images ORDER BY 1").fetchall()]
        gone = random.Random(a.seed).sample(ids, max(1, round(a.forget * len(ids))))

        def forget_and_refresh():
            forget_training(s, gone)
            return refresh(s)
        measure("C", f"forget {len(gone):,} training images ({100 * a.forget:g} %) + refresh", forget_and_refresh)

        if a.near:  # D. new training images near generated ones: many top-k change
            n_near = add_training(s, inputs["near"], owner="near")
            measure("D", f"refresh after +{n_near:,} training near generated ones", lambda: refresh(s))
    finally:
        s.close()

    # CPU seconds (this process, all its threads) beside the wall clock: on a machine shared
    # with other jobs the wall-clock ratio moves with their load, the CPU ratio much less
    print("\n| operation | incremental (s) | full recompute (s) | ratio | "
          "updated from lists / re-ranked / re-scored | CPU incremental / full (s) | CPU ratio |")
    print("|---|---|---|---|---|---|---|")
    for name, inc, full, rep, cpu, full_cpu in rows:
        f = "-" if rep is None else (f"{rep.merged - rep.reranked:,} / {rep.reranked:,} / {rep.rescored:,} "
                                     f"of {rep.total_generated:,}")
        print(f"| {name} | {inc:.2f} | {full:.2f} | {100 * inc / full:.1f}% | {f} | {cpu:.2f} / {full_cpu:.2f} | "
              f"{100 * cpu / full_cpu:.1f}% |")
    if not a.dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
