"""Counterfactual checks (LDS, remove-and-retrain) for one generator kind on an MNIST store of
n images: build the store (the demo's backends), train the generator, draw m images, value
them at k = 30/50/100 with the generator's spec, then `lds` and `remove` for each k.

    python benchmarks/counterfactual.py --generator vae --n 10000 --subsets 16 --work /tmp/cf-vae
    python benchmarks/counterfactual.py --generator gmm --n 2000 --quick --work /tmp/cf-q   # pipeline check

Prints a Markdown table and writes WORK/results.json. Fits are cached (WORK/fits), so a killed
run resumes, and the three k share the LDS fits (same generated images).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--generator", default="gmm", choices=["gmm", "vae"])
    p.add_argument("--n", type=int, default=10_000, help="MNIST training images in the store")
    p.add_argument("--m", type=int, default=100, help="generated images")
    p.add_argument("--k", type=int, action="append", help="k values [30, 50, 100]")
    p.add_argument("--subsets", type=int, default=32)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--remove-k", type=int, action="append", help="k values for remove-and-retrain [every k]")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--profile", default="default", help="the demo's backend profile (default: pixels, l2, PIQE)")
    p.add_argument("--quick", action="store_true", help="quick generator hyper-parameters")
    p.add_argument("--work", required=True)
    a = p.parse_args()

    from gmv_store.datasets import load_mnist
    from gmv_store.demo import _backends
    from gmv_store.eval.counterfactual import lds, remove
    from gmv_store.generators import load_or_train
    from gmv_store.generators.spec import generator_meta
    from gmv_store.ingest.pipeline import ingest
    from gmv_store.query.value import value
    from gmv_store.store import Store

    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    ks = a.k or [30, 50, 100]
    x, y = load_mnist("train")
    idx = np.sort(np.random.default_rng(0).permutation(len(x))[:a.n])
    x, y = x[idx], y[idx]
    res = {"generator": a.generator, "n": a.n, "m": a.m, "quick": a.quick, "load_start": os.getloadavg()}
    store = work / "store"
    if not store.exists():
        np.savez(work / "train.npz", images=x, labels=y)
        t = time.perf_counter()
        gen = load_or_train(a.generator, x, y, work / "generators", seed=0, quick=a.quick)
        res["train_s"] = round(time.perf_counter() - t, 1)
        gy = np.arange(a.m) % 10
        np.savez(work / "generated.npz", images=gen.sample(gy, seed=1), labels=gy)
        _, chosen = _backends(a.profile)
        s = Store.init(store, embedder=chosen["embedder"], rerank=chosen["rerank"], quality=chosen["quality"])
        try:
            ingest(s, [str(work / "train.npz")], owner="mnist")
            meta = generator_meta(a.generator, x, y, seed=0, quick=a.quick, owners=["mnist"])
            for k in ks:
                value(s, [str(work / "generated.npz")], f"{a.generator}-k{k}", k=k, meta=meta)
        finally:
            s.close()
    rows = []
    for k in ks:
        set_name = f"{a.generator}-k{k}"
        r_l = lds(store, set_name, subsets=a.subsets, workers=a.workers, cache=work / "fits", note=print)
        r_r = (remove(store, set_name, seeds=a.seeds, workers=a.workers, cache=work / "fits", note=print)
               if a.remove_k is None or k in a.remove_k else None)
        res[set_name] = {"lds": r_l, "remove": r_r}
        rows.append(f"| {a.generator} | {a.n:,} | {k} | {r_l['lds']:.3f} [{r_l['lds_ci'][0]:.3f}, {r_l['lds_ci'][1]:.3f}] "
                    f"| {r_l['baselines']['random']:.3f} | {r_l['baselines']['no_quality']:.3f} "
                    f"| {r_l['baselines']['no_rerank']:.3f} | {r_l['set_level']['lds']:.3f} "
                    + (f"| {r_r['drop_top']:.2f} | {r_r['drop_random']:.2f} | {r_r['p_value']:.2g} "
                       f"| {r_l['seconds']:.0f} + {r_r['seconds']:.0f} |" if r_r else f"| – | – | – | {r_l['seconds']:.0f} |"))
        (work / "results.json").write_text(json.dumps(res, indent=1, default=float))
    res["load_end"] = os.getloadavg()
    (work / "results.json").write_text(json.dumps(res, indent=1, default=float))
    print("| generator | n | k | LDS [95% CI] | random | no quality | no re-rank | set-level LDS "
          "| drop top (nats) | drop random | p | s (lds + remove) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
