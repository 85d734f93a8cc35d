"""Do the values predict the counterfactual? LDS and remove-and-retrain on a set whose
generator the project trained (its spec in the images' metadata: `generators/spec.py`).

    from gmv_store.eval.counterfactual import lds, remove
    lds("store", "demo-gmm-k50", subsets=32)     # {"lds", "lds_ci", "subsets", "baselines", ...}
    remove("store", "demo-gmm-k50")              # {"drop_top", "drop_random", "p_value", "removed", ...}

Attribution of a generated image j = its credits V(x_i, x^_j) (Eq. 6; 0 outside its top-k);
the set's values phi (Eq. 5) rank the images removed. The generator is refit with its recorded
hyper-parameters and seed on each subset (`retrain.run_fits`, worker processes, cached), and
log p(x^_j | y_j) under each fit is the output (`generators/likelihood.py`: exact for the
mixture, the ELBO for the VAE).
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from gmv_store.errors import BadInput
from gmv_store.generators.spec import ids_sha256
from gmv_store.ledger import evaluation as ledger

from .lds_math import bootstrap_ci, lds_scores, nanmean, paired_greater, row_spearman, subset_masks
from .ledger_read import set_info

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection

Note = Callable[[str], None]
RANDOM_DRAWS = 10
NO_SPEC = ("set '{s}' records no generator (its images came from outside, not from a generator the project "
           "trained), so there is nothing to retrain; fix: use a set made by `gmv demo` or `gmv eval recipe`, or "
           "value with meta=generator_meta(...) (docs/evaluation.md)")


@dataclass
class Setup:
    """What both checks need of one set, read from the store."""

    set_name: str
    spec: dict[str, Any]
    k: int
    train_ids: list[str]
    train_x: np.ndarray      # (n, 28, 28) uint8, ordered by contributor id
    train_y: np.ndarray      # (n,) int64
    gen_x: np.ndarray        # (m, 28, 28) uint8, ordered by generated id
    gen_y: np.ndarray        # (m,) int64
    quality: np.ndarray      # (m,) q_j
    credits: np.ndarray      # (m, n) V(x_i, x^_j)
    no_rerank: np.ndarray    # (m, n) credits of the recall stage's top-k (no re-rank); NaN rows: no stored list
    values: np.ndarray       # (n,) phi_i
    outside: int             # credits to training images outside the generator's training data


def set_spec(con: Connection, set_name: str) -> dict[str, Any]:
    """The generator spec recorded with the set's images; BadInput (one line) when none or several."""
    if set_info(con, set_name)["m"] == 0:
        raise BadInput(f"set '{set_name}' holds no generated images; fix: value the generator's images into it first")
    rows = ledger.generator_counts(con, set_name)
    specs = [r for r in rows if r[0] is not None]
    if not rows or not specs:
        raise BadInput(NO_SPEC.format(s=set_name))
    if len(rows) > 1:
        raise BadInput(f"set '{set_name}' mixes images of {len(specs)} generators"
                       f"{' and outside images' if len(specs) < len(rows) else ''}; fix: check one set per generator")
    spec: dict[str, Any] = json.loads(str(specs[0][0]))
    return spec


def _int_labels(labels: Sequence[Any], what: str) -> np.ndarray:
    try:
        y = np.array([int(v) for v in labels], dtype=np.int64)
    except (TypeError, ValueError):
        raise BadInput(f"{what}: labels must be class ids 0..9 (found {sorted(set(map(str, labels)))[:5]}); "
                       "fix: ingest/value with labels") from None
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise BadInput(f"{what}: labels must be class ids 0..9, found {y.min()}..{y.max()}")
    return y


def _pixels(sources: Sequence[str], what: str, root: Path) -> np.ndarray:
    from gmv_store.sources import load_source

    out = np.empty((len(sources), 28, 28), dtype=np.uint8)
    for i, src in enumerate(sources):
        img = load_source(src, root)  # the demo's generated images are recorded relative to the store
        if img.shape != (28, 28, 1):
            raise BadInput(f"{src}: {what} image has shape {img.shape}; the generators are 28x28 grayscale")
        out[i] = img[:, :, 0]
    return out


def load_setup(store: str | Path | None, set_name: str, note: Note | None = None) -> Setup:
    from gmv_store.backends.base import Embedder
    from gmv_store.backends.registry import backend_class
    from gmv_store.config import default_store_path, read_config
    from gmv_store.ledger import open_ledger_readonly

    root = default_store_path(store)
    con = open_ledger_readonly(root, on_snapshot=note)
    try:
        spec = set_spec(con, set_name)
        k = set_info(con, set_name)["k"]
        owners = spec["train"]["owners"]
        train = ledger.training_images(con, owners)
        ids = [r[0] for r in train]
        if len(ids) != spec["train"]["n"] or ids_sha256(ids) != spec["train"]["ids_sha256"]:
            sel = f"owners {', '.join(owners)}" if owners is not None else "all owners"
            raise BadInput(f"set '{set_name}': its {spec['kind']} generator was trained on {spec['train']['n']:,} "
                           f"images, but the store's training images of {sel} ({len(ids):,}) are not those images; "
                           "fix: run the check on a store that holds exactly the generator's training data")
        gen = ledger.generated_images(con, set_name)
        index = {c: i for i, c in enumerate(ids)}
        gpos = {g[0]: j for j, g in enumerate(gen)}
        credits = np.zeros((len(gen), len(ids)))
        outside = 0
        for gid, cid, credit in ledger.credits_in_set(con, set_name):
            if cid in index:
                credits[gpos[gid], index[cid]] = credit
            else:
                outside += 1
        values = np.zeros(len(ids))
        for cid, v in ledger.credited_values(con, set_name):
            if cid in index:
                values[index[cid]] = v
        quality = np.array([g[3] for g in gen], dtype=np.float64)
        embedder = cast("type[Embedder]", backend_class("embedder", read_config(root).embedder.name))
        metric = embedder.metric
        no_rr = _recall_credits(con, set_name, k, metric, gpos, index, quality)
    finally:
        con.close()
    if note:
        note(f"reading {len(ids):,} training and {len(gen)} generated images ...")
    return Setup(set_name, spec, int(k), ids, _pixels([r[1] for r in train], "training", root),
                 _int_labels([r[2] for r in train], "training images"), _pixels([g[1] for g in gen], "generated", root),
                 _int_labels([g[2] for g in gen], f"set '{set_name}'"), quality, credits, no_rr, values, outside)


def _recall_credits(con: Connection, set_name: str, k: int, metric: str, gpos: dict[str, int], index: dict[str, int],
                    quality: np.ndarray) -> np.ndarray:
    """The credits the same pipeline gives without re-ranking: the first k of each stored recall
    list (the recall stage's ranking) with the recall distance (as `query.search` does with the
    `none` re-rank)."""
    from gmv_store.backends.base import score_to_distance
    from gmv_store.query.recall_lists import read_lists
    from gmv_store.valuation import credits

    out = np.full((len(gpos), len(index)), np.nan)
    lists = read_lists(con, set_name, metric=metric)
    for r, gid in enumerate(lists.gids):
        ids, scores = lists.row(r)
        top = [(f"{int(p):016x}", score_to_distance(s, metric)) for p, s in zip(ids[:k], scores[:k])]
        j = gpos[gid]
        out[j] = 0.0
        c = credits([d for _, d in top], quality[j])
        for (cid, _), cj in zip(top, c):
            if cid in index:
                out[j, index[cid]] = cj
    return out


def _hparams(spec: dict[str, Any], quick: bool) -> dict[str, Any]:
    if not quick:
        return spec
    from gmv_store.generators import generator_class

    return {**spec, "hparams": generator_class(spec["kind"]).hparams(True), "quick": True}


def _fit_setup(store: str | Path | None, set_name: str, quick: bool,
               note: Note | None) -> tuple[Setup, dict[str, Any], str]:
    """What both counterfactual checks start from: the set's setup, its generator's spec (the
    quick hyper-parameters with `quick`) and the likelihood that spec is scored by."""
    from gmv_store.generators.likelihood import likelihood_kind

    su = load_setup(store, set_name, note)
    spec = _hparams(su.spec, quick)
    return su, spec, likelihood_kind(spec["kind"])


def _per_class(y: np.ndarray, v: np.ndarray) -> dict[str, dict[str, Any]]:
    return {str(c): {"m": int((y == c).sum()), "mean": nanmean(v[y == c])} for c in np.unique(y)}


def lds(store: str | Path | None, set_name: str, *, subsets: int = 32, fraction: float = 0.5, seed: int = 0,
        quick: bool = False, workers: int | None = None, cache: str | Path | None = None, use_cache: bool = True,
        resamples: int = 1000, note: Note | None = None) -> dict[str, Any]:
    """The linear datamodeling score of the set's values (see the module doc and lds_math)."""
    from .retrain import run_fits

    t0 = time.perf_counter()
    if subsets < 3:
        raise BadInput(f"--subsets {subsets}: a rank correlation needs at least 3 subsets")
    su, spec, what = _fit_setup(store, set_name, quick, note)
    n, m = len(su.train_ids), len(su.gen_x)
    masks = subset_masks(n, subsets, fraction, seed)
    if note:
        note(f"LDS of set '{set_name}': {subsets} {spec['kind']} fits on {masks[0].sum():,} of {n:,} training images ...")
    ll, cost = run_fits(spec, su.train_x, su.train_y, su.gen_x, su.gen_y, [np.flatnonzero(r) for r in masks],
                        workers=workers, cache=cache, use_cache=use_cache, note=note)
    rng = np.random.default_rng([seed, 1])
    scores = {"values": su.credits, "no_quality": su.credits / su.quality[:, None],
              "no_rerank": np.nan_to_num(su.no_rerank)}
    per_image = {name: lds_scores(s, masks, ll) for name, s in scores.items()}
    per_image["no_rerank"][np.isnan(su.no_rerank).all(1)] = np.nan
    # random scores: the mean over RANDOM_DRAWS draws, so the null is measured, not one draw's noise
    per_image["random"] = np.mean([lds_scores(rng.standard_normal((m, n)), masks, ll) for _ in range(RANDOM_DRAWS)], 0)
    main = per_image["values"]
    # the set-level form: one predictor per subset, sum of the set's values phi, against the
    # set's mean log-likelihood (here the quality weighting matters: it weighs images)
    phi = {"values": su.values, "no_quality": scores["no_quality"].sum(0) / m, "no_rerank": scores["no_rerank"].sum(0) / m}
    mean_ll = ll.mean(1)
    set_level: dict[str, tuple[float, list[float] | None]] = {name: _set_lds(masks @ p, mean_ll, resamples, seed) for name, p in phi.items()}
    set_level["random"] = (nanmean([row_spearman((masks @ rng.standard_normal(n))[None], mean_ll[None])[0]
                                    for _ in range(RANDOM_DRAWS)]), None)
    return {"set": set_name, "generator": spec["kind"], "likelihood": what, "quick": quick,
            "hparams": spec["hparams"], "seed_fit": spec["seed"], "k": su.k, "m": m,
            "n_train": n, "subsets": subsets, "fraction": fraction, "seed": seed,
            "lds": nanmean(main), "lds_ci": list(bootstrap_ci(main, resamples, seed)),
            "baselines": {name: nanmean(per_image[name]) for name in ("random", "no_quality", "no_rerank")},
            "baselines_ci": {name: list(bootstrap_ci(per_image[name], resamples, seed))
                             for name in ("random", "no_quality", "no_rerank")},
            "undefined": int(np.isnan(main).sum()),
            "per_class": _per_class(su.gen_y, main),
            "set_level": {"lds": set_level["values"][0], "lds_ci": set_level["values"][1],
                          "baselines": {name: set_level[name][0] for name in ("random", "no_quality", "no_rerank")}},
            "loglik": {"mean": float(ll.mean()), "std_over_subsets": float(ll.std(0).mean())},
            "outside_credits": su.outside, "fits": cost, "seconds": round(time.perf_counter() - t0, 1)}


def _set_lds(predicted: np.ndarray, actual: np.ndarray, resamples: int, seed: int) -> tuple[float, list[float]]:
    rho = float(row_spearman(predicted[None], actual[None])[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(actual), size=(resamples, len(actual)))
    boot = row_spearman(predicted[idx], actual[idx])
    boot = boot[np.isfinite(boot)]
    ci = [float(q) for q in np.quantile(boot, [0.025, 0.975])] if len(boot) else [float("nan")] * 2
    return rho, ci


def remove(store: str | Path | None, set_name: str, *, fraction: float = 0.05, seeds: int = 5, seed: int = 0,
           quick: bool = False, workers: int | None = None, cache: str | Path | None = None, use_cache: bool = True,
           note: Note | None = None) -> dict[str, Any]:
    """Remove-and-retrain: drop the top `fraction` of the training images by the set's values,
    and as many at random (`seeds` draws), refit, and compare each generated image's drop in
    log-likelihood against the model fit on all of them (paired one-sided tests, top > random)."""
    from .retrain import run_fits

    t0 = time.perf_counter()
    if seeds < 1:
        raise BadInput(f"--seeds {seeds}: at least one random draw is needed")
    su, spec, what = _fit_setup(store, set_name, quick, note)
    n = len(su.train_ids)
    n_remove = round(fraction * n)
    if not 0 < fraction < 1 or not 1 <= n_remove < n:
        raise BadInput(f"--fraction {fraction} of {n} training images removes {n_remove}; fix: a fraction in (0, 1) "
                       "that removes at least one image")
    rng = np.random.default_rng([seed, 2])
    order = np.lexsort((rng.permutation(n), -su.values))  # highest value first, ties in random order
    top = order[:n_remove]
    randoms = [np.random.default_rng([seed, 3, s]).choice(n, n_remove, replace=False) for s in range(seeds)]
    everything = np.arange(n)
    keeps = [everything, np.setdiff1d(everything, top)] + [np.setdiff1d(everything, r) for r in randoms]
    if note:
        note(f"remove-and-retrain on set '{set_name}': {len(keeps)} {spec['kind']} fits, {n_remove:,} of {n:,} removed ...")
    ll, cost = run_fits(spec, su.train_x, su.train_y, su.gen_x, su.gen_y, keeps, workers=workers, cache=cache,
                        use_cache=use_cache, note=note)
    drop_top = ll[0] - ll[1]
    drop_rand = (ll[0] - ll[2:]).mean(0)
    test = paired_greater(drop_top, drop_rand)
    total = su.values.sum()
    return {"set": set_name, "generator": spec["kind"], "likelihood": what, "quick": quick,
            "hparams": spec["hparams"], "seed_fit": spec["seed"], "k": su.k,
            "m": len(su.gen_x), "n_train": n, "fraction": fraction, "seeds": seeds,
            "drop_top": float(drop_top.mean()), "drop_random": float(drop_rand.mean()), "p_value": test["p_value"],
            "removed": n_remove, "p_wilcoxon": test["p_wilcoxon"], "t": test["t"],
            "drop_random_per_seed": [float(v) for v in (ll[0] - ll[2:]).mean(1)],
            "removed_credited": int((su.values[top] > 0).sum()),
            "value_share_removed": float(su.values[top].sum() / total) if total > 0 else 0.0,
            "per_class": {c: {"m": d["m"], "drop_top": d["mean"], "drop_random": nanmean(drop_rand[su.gen_y == int(c)])}
                          for c, d in _per_class(su.gen_y, drop_top).items()},
            "loglik_full": float(ll[0].mean()), "fits": cost, "seconds": round(time.perf_counter() - t0, 1)}

