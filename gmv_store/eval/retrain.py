"""Retraining for the counterfactual checks: one generator per subset of a training set, each
fit in a worker process, each result (the generated images' log-likelihoods) cached on disk.

The cache makes a run resumable (a killed run keeps the fits it finished) and lets sets that
share a generator and generated images (the demo's k = 30/50/100 sets) share the fits. Its
key holds everything a result depends on: kind, hyper-parameters, seed, the training data's
fingerprint, the subset, the generated images and the likelihood code's revision.

Workers are spawned (not forked: the parent holds DuckDB and Qdrant threads) and read the
training and generated images from memory-mapped .npy files written once per run; each runs
its numerical libraries on one thread, so two workers use two cores.
"""
from __future__ import annotations

import functools
import hashlib
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from gmv_store.errors import GmvError
from gmv_store.generators.base import atomic_write

LL_VERSION = 1  # bump when gmv_store.generators.likelihood changes what it computes
_DATA: dict[str, np.ndarray] = {}


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def cache_root(cache: str | Path | None) -> Path:
    from gmv_store.generators import default_cache_dir

    return Path(cache).expanduser() if cache is not None else default_cache_dir().parent / "counterfactual"


def _digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def fit_key(spec: dict[str, Any], gen_x: np.ndarray, gen_y: np.ndarray, keep: np.ndarray) -> str:
    payload = {"kind": spec["kind"], "hparams": spec["hparams"], "seed": spec["seed"],
               "train": spec["train"]["ids_sha256"], "keep": _digest(np.asarray(keep, dtype=np.int64)),
               "generated": _digest(gen_x) + _digest(np.asarray(gen_y, dtype=np.int64)), "ll": LL_VERSION}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _init(folder: str) -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    for name in ("train_x", "train_y", "gen_x", "gen_y"):
        _DATA[name] = np.load(Path(folder) / f"{name}.npy", mmap_mode="r")


def _fit(kind: str, hparams: dict[str, Any], seed: int, keep: np.ndarray) -> tuple[np.ndarray, float]:
    from gmv_store.generators.likelihood import fit_and_score

    return fit_and_score(kind, hparams, seed, np.asarray(_DATA["train_x"][keep]), np.asarray(_DATA["train_y"][keep]),
                         np.asarray(_DATA["gen_x"]), np.asarray(_DATA["gen_y"]))


def run_fits(spec: dict[str, Any], train_x: np.ndarray, train_y: np.ndarray, gen_x: np.ndarray, gen_y: np.ndarray,
             subsets: Sequence[np.ndarray], *, workers: int | None = None, cache: str | Path | None = None,
             use_cache: bool = True, note: Callable[[str], None] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """log p(generated | label) under a generator fit on each subset (indices into train_x):
    an (len(subsets), m) array, and what it cost ({"fits", "cached", "fit_s", "wall_s"})."""
    t0 = time.perf_counter()
    root = cache_root(cache)
    keys = [fit_key(spec, gen_x, gen_y, keep) for keep in subsets]
    out = np.full((len(subsets), len(gen_x)), np.nan)
    todo = []
    for i, key in enumerate(keys):
        path = root / f"{key}.npy"
        if use_cache and path.is_file():
            try:
                out[i] = np.load(path)
                continue
            except (OSError, ValueError):  # a damaged cache entry is refit and rewritten
                pass
        todo.append(i)
    fit_s = []
    if todo:
        n_workers = min(workers or default_workers(), len(todo))
        with tempfile.TemporaryDirectory(prefix="gmv-fits-") as folder:
            for name, a in (("train_x", train_x), ("train_y", train_y), ("gen_x", gen_x), ("gen_y", gen_y)):
                np.save(Path(folder) / f"{name}.npy", np.ascontiguousarray(a))
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=_init, initargs=(folder,)) as pool:
                futures = {pool.submit(_fit, spec["kind"], spec["hparams"], spec["seed"],
                                       np.asarray(subsets[i], dtype=np.int64)): i for i in todo}
                for done, fut in enumerate(as_completed(futures), 1):
                    i = futures[fut]
                    try:
                        ll, seconds = fut.result()
                    except BrokenProcessPool:
                        raise GmvError(f"a fit worker died (killed, or out of memory) after {done - 1} of {len(todo)} "
                                       "fits, which are kept; fix: run the same command again (fewer --workers if "
                                       "memory is short)") from None
                    out[i] = ll
                    fit_s.append(seconds)
                    if use_cache:
                        atomic_write(root / f"{keys[i]}.npy", functools.partial(_save, a=ll))
                    if note:
                        note(f"  fit {done}/{len(todo)} ({len(subsets[i]):,} images, {seconds:.1f}s)")
    return out, {"fits": len(todo), "cached": len(subsets) - len(todo),
                 "workers": min(workers or default_workers(), len(todo)),
                 "fit_s": round(float(np.sum(fit_s)), 1), "wall_s": round(time.perf_counter() - t0, 1)}


def _save(tmp: Path, a: np.ndarray) -> None:
    with open(tmp, "wb") as f:
        np.save(f, a)
