"""Train (or load from the cache) each class-conditional MNIST generator on the 60k training
images and check its samples with the reference CNN classifier. Prints a table:

    .venv/bin/python benchmarks/generators.py [--cache DIR] [--only gmm,vae] [--seed 0] [--n-per-class 100]

Columns: training time (measured now, or recorded in the cache file when it was trained),
whether it came from the cache, ms per sample (1,000 samples, 100 per class), and the
fraction of those samples that the classifier labels as their conditioning class. The
classifier's own accuracy on mnist:test is printed first.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gmv_store.datasets import load_mnist  # noqa: E402
from gmv_store.generators import GENERATORS, cache_path, default_cache_dir, load_or_train  # noqa: E402
from gmv_store.generators.classifier import classifier_cache_path, load_or_train_classifier  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=default_cache_dir(), help="cache dir (default %(default)s)")
    ap.add_argument("--only", default=",".join(GENERATORS), help="comma-separated generator names")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-per-class", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="quick hyper-parameters (smoke test, not a benchmark)")
    args = ap.parse_args(argv)

    x, y = load_mnist("train")
    xt, yt = load_mnist("test")
    cached = classifier_cache_path(x, y, args.cache, seed=0, quick=args.quick).is_file()
    t0 = time.perf_counter()
    clf = load_or_train_classifier(x, y, args.cache, seed=0, quick=args.quick)
    took = time.perf_counter() - t0
    print(f"classifier: test accuracy {clf.accuracy_on(xt, yt):.4f} on mnist:test (10,000); "
          f"train {clf.train_seconds or took:.1f} s{' (cached)' if cached else ''}")

    labels = np.repeat(np.arange(10), args.n_per_class)
    print(f"\n{'generator':<10} {'train s':>9} {'cached':>7} {'ms/sample':>10} {'clf acc':>8}  per-class acc")
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        was_cached = cache_path(name, x, y, args.cache, seed=args.seed, quick=args.quick).is_file()
        t0 = time.perf_counter()
        gen = load_or_train(name, x, y, args.cache, seed=args.seed, quick=args.quick)
        train_s = time.perf_counter() - t0
        if was_cached:
            train_s = getattr(gen, "train_seconds", None) or float("nan")
        gen.sample(labels[:10], seed=args.seed + 1)  # warm-up
        t0 = time.perf_counter()
        s = gen.sample(labels, seed=args.seed + 1)
        ms = (time.perf_counter() - t0) * 1000 / len(labels)
        pred = clf.predict(s)
        per_class = " ".join(f"{(pred[labels == c] == c).mean():.2f}" for c in range(10))
        print(f"{name:<10} {train_s:>9.1f} {'yes' if was_cached else 'no':>7} {ms:>10.3f} "
              f"{(pred == labels).mean():>8.3f}  {per_class}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
