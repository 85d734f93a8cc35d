"""The quality metric's share of a valuation, for one or more code trees side by side.

Each tree values the same generated images into a copy of the same store, in a fresh process
(the metric's imports count, as they do for `gmv value`), all trees at once so that they see
the same machine load. Prints each tree's valuation time, its quality time and the share.

    PYTHONPATH=. .venv/bin/python benchmarks/quality_share.py --store gmv-demo --make 6000 \\
        --trees /path/to/old/checkout .          # e.g. main's tree against this one
    ... --input gen.npz                          # your own generated images instead of --make
    ... --quick                                  # a 2,000-image store with PIQE, 200 test digits (CI)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from md_table import markdown_table  # benchmarks/, the script's own folder

# Besides the wall seconds that `value` reports, CPU seconds, which a loaded machine distorts
# less: the process's over the valuation, and the quality metric's own, in whichever thread
# it runs (its warm-up import in the background, its scoring in the main thread).
CHILD = """
import json, sys, time
import gmv_store
from gmv_store.store import Store
from gmv_store.query.value import value
s = Store.open(sys.argv[1])
q, cpu = s.quality, {"prepare": 0.0, "score": 0.0}
def timed(fn, key):
    def run(*a, **kw):
        t = time.thread_time()
        try:
            return fn(*a, **kw)
        finally:
            cpu[key] += time.thread_time() - t
    return run
q.prepare, q.score = timed(q.prepare, "prepare"), timed(q.score, "score")
try:
    c = time.process_time()
    r = value(s, [sys.argv[2]], "quality-share", k=50)
    cpu["valuation"] = time.process_time() - c
finally:
    s.close()
cpu["quality"] = cpu["prepare"] + cpu["score"]
print(json.dumps({"valued": r.valued, "seconds": r.seconds, **r.timings, "cpu": cpu, "code": gmv_store.__file__}))
"""


def make_images(n: int, path: Path) -> None:
    """n digits (all classes) from the demo's generator, trained on MNIST (cached)."""
    from gmv_store.datasets import load_mnist
    from gmv_store.generators import load_or_train

    x, y = load_mnist("train")
    gen = load_or_train("gmm", x, y, seed=0)
    labels = np.arange(n) % 10
    np.savez(path, images=gen.sample(labels, seed=11), labels=labels)


def quick_store(work: Path) -> Path:
    from gmv_store.datasets import load_mnist
    from gmv_store.ingest.pipeline import ingest
    from gmv_store.store import Store

    x, y = load_mnist("train")
    np.savez(work / "train.npz", images=x[:2000], labels=y[:2000])
    s = Store.init(work / "store", embedder=("pixels", {"size": 16, "color": "gray"}),
                   rerank=("l2", {"size": 28, "color": "gray"}), quality=("piqe", {}))
    try:
        ingest(s, [str(work / "train.npz")])
    finally:
        s.close()
    return work / "store"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", help="a store with training images and a quality metric (e.g. the demo's)")
    ap.add_argument("--input", help="generated images to value (any input `gmv value` takes)")
    ap.add_argument("--make", type=int, default=0, help="value this many GMM digits instead of --input")
    ap.add_argument("--trees", nargs="+", default=["."], help="code trees (PYTHONPATH of each run)")
    ap.add_argument("--quick", action="store_true", help="a 2,000-image store and 200 test digits")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gmv-quality-") as tmp:
        work = Path(tmp)
        store = quick_store(work) if a.quick else Path(a.store or ap.error("give --store or --quick"))
        images = a.input
        if not images and a.quick:  # test digits: no generator to train
            from gmv_store.datasets import load_mnist

            images = str(work / "gen.npz")
            np.savez(images, images=load_mnist("test")[0][:200])
        elif not images:
            images = str(work / "gen.npz")
            make_images(a.make or ap.error("give --input or --make N"), Path(images))
        procs = []
        for i, tree in enumerate(a.trees):
            copy = work / f"store-{i}"
            shutil.copytree(store, copy)
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve()), "HF_HUB_OFFLINE": "1"}
            # run from the temporary folder: `python -c` puts the working directory first on
            # sys.path, so run from a checkout every tree would import that checkout's code
            procs.append(subprocess.Popen([sys.executable, "-c", CHILD, str(copy), str(Path(images).resolve())],
                                          env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        rows = []
        for tree, p in zip(a.trees, procs):
            out, err = p.communicate()
            if p.returncode:
                raise SystemExit(f"{tree}: valuation failed: {err.strip().splitlines()[-1] if err.strip() else p.returncode}")
            rows.append({"tree": tree, **json.loads(out.strip().splitlines()[-1])})
            if not Path(rows[-1]["code"]).resolve().is_relative_to(Path(tree).resolve()):
                raise SystemExit(f"{tree}: the valuation ran {rows[-1]['code']}, not this tree's code")
    print(json.dumps(rows))
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}\n")
    print(markdown_table(["tree", "valued", "valuation (s)", "quality (s)", "quality share",
                          "CPU: valuation / quality = load + score (s)", "CPU share"],
                         [[f"{r['tree']}", f"{r['valued']:,}", f"{r['seconds']:.1f}", f"{r['quality']:.1f}",
                           f"{100 * r['quality'] / r['seconds']:.1f} %",
                           f"{r['cpu']['valuation']:.1f} / {r['cpu']['quality']:.1f} = {r['cpu']['prepare']:.1f} + "
                           f"{r['cpu']['score']:.1f}",
                           f"{100 * r['cpu']['quality'] / r['cpu']['valuation']:.1f} %"] for r in rows]))


if __name__ == "__main__":
    main()
