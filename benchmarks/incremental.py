"""Incremental upkeep against the full recompute it replaces, side by side in one run.

Default (MNIST-sized): 58,000 training images, a set of 10,000 generated images (the MNIST
test set), then
  A. value 1,000 extra generated images into the set      vs  valuing the whole 11,000 again
  B. ingest 1,000 new training images + refresh           vs  ingest + re-valuing all 10,000
and the fraction of generated images actually re-scored. Prints a table; run:

    .venv/bin/python benchmarks/incremental.py [--train 58000] [--generated 10000] [--profile basic]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from gmv_store.datasets import load_mnist
from gmv_store.store import Store
from ingest.pipeline import ingest
from query.value import value
from query.refresh import refresh

BASIC = dict(embedder=("pixels", {"size": 16}), rerank=("l2", {"size": 28}), quality=("none", {}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=58_000)
    ap.add_argument("--generated", type=int, default=10_000)
    ap.add_argument("--new", type=int, default=1_000)
    ap.add_argument("--extra", type=int, default=1_000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    a = ap.parse_args()

    x, y = load_mnist("train")
    xt, yt = load_mnist("test")
    work = Path(a.dir or tempfile.mkdtemp(prefix="gmv-bench-"))
    shutil.rmtree(work / "store", ignore_errors=True)
    files = {}
    n0, n1 = a.train, a.train + a.new
    for name, imgs, labs in (("train", x[:n0], y[:n0]), ("new", x[n0:n1], y[n0:n1]),
                             ("extra", x[n1:n1 + a.extra], y[n1:n1 + a.extra]),
                             ("gen", xt[:a.generated], yt[:a.generated])):
        files[name] = str(work / f"{name}.npz")
        np.savez(files[name], images=imgs, labels=labs)

    s = Store.init(work / "store", **BASIC)
    rows = []
    try:
        t = time.perf_counter()
        ingest(s, [files["train"]])
        print(f"setup: ingested {a.train:,} training images in {time.perf_counter() - t:.1f}s", flush=True)
        t = time.perf_counter()
        value(s, [files["gen"]], "g", k=a.k)
        t_set = time.perf_counter() - t
        print(f"setup: valued {a.generated:,} generated images in {t_set:.1f}s", flush=True)

        # A. extra generated images into the existing set, vs valuing all of them from scratch
        t = time.perf_counter()
        value(s, [files["extra"]], "g", k=a.k)
        t_extra = time.perf_counter() - t
        t = time.perf_counter()
        value(s, [files["gen"], files["extra"]], "g-full", k=a.k)
        t_full_a = time.perf_counter() - t
        rows.append(("A. value +%d generated into a set of %d" % (a.extra, a.generated), t_extra, t_full_a, None))

        # B. new training images + refresh, vs ingest + re-valuing every generated image
        from query.forget import forget_set
        forget_set(s, "g-full")
        t = time.perf_counter()
        ingest(s, [files["new"]])
        t_ingest = time.perf_counter() - t
        t = time.perf_counter()
        rep = refresh(s)
        t_refresh = time.perf_counter() - t
        t = time.perf_counter()
        value(s, [files["gen"], files["extra"]], "g-recompute", k=a.k)
        t_revalue = time.perf_counter() - t
        frac = (rep.rescored + rep.merged) / max(rep.total_generated, 1)
        searched = rep.rescored / max(rep.total_generated, 1)
        rows.append(("B. refresh after +%d training (ingest excluded)" % a.new, t_refresh, t_revalue, frac))
        rows.append(("B'. ingest + refresh vs ingest + full re-value", t_ingest + t_refresh, t_ingest + t_revalue, frac))
        print(f"refresh: {rep.summary()}; find+merge {rep.timings['find']:.1f}s, re-score {rep.timings['rescore']:.1f}s; "
              f"{100 * searched:.1f}% of generated images needed a new search", flush=True)
    finally:
        s.close()

    print("\n| operation | incremental (s) | full recompute (s) | ratio | generated images updated |")
    print("|---|---|---|---|---|")
    for name, inc, full, frac in rows:
        f = f"{100 * frac:.1f}%" if frac is not None else "-"
        print(f"| {name} | {inc:.2f} | {full:.2f} | {100 * inc / full:.1f}% | {f} |")
    if not a.dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
