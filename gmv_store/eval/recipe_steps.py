"""The steps of the MNIST evaluation recipe (see `recipe.py` for the order and the entry point)."""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gmv_store.errors import BadInput, GmvError
from gmv_store.ledger import evaluation as ledger

from .recipe_config import RecipeConfig, _Run, _save_npz, backend_specs, combo_name

if TYPE_CHECKING:
    from gmv_store.generators.base import Generator
    from gmv_store.generators.classifier import MnistClassifier
    from gmv_store.store import Store


def step_data(r: _Run) -> None:
    from gmv_store.datasets import load_mnist

    cfg = r.cfg
    x, y = load_mnist("train")
    need = max(cfg.n_full, cfg.n_sub, 2 * cfg.member_n, cfg.ood_n)
    if need > len(x):
        raise BadInput(f"the recipe needs {need} MNIST images but MNIST train has {len(x)}; fix: lower the pool sizes")
    perm = np.random.default_rng(cfg.seed).permutation(len(x))

    def pool(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        idx = np.sort(idx)
        return x[idx], y[idx]

    r.data["full"] = pool(perm[:cfg.n_full])
    r.data["sub"] = pool(perm[:cfg.n_sub])
    r.data["trained"] = pool(perm[:cfg.member_n])
    r.data["heldout"] = pool(perm[cfg.member_n:2 * cfg.member_n])
    r.data["ood_clean"] = pool(perm[:cfg.ood_n])
    for name in ("full", "sub", "trained", "heldout", "ood_clean"):
        _save_npz(r.work / "data" / f"{name}.npz", *r.data[name])
    r.results["data"] = {name: len(r.data[name][0]) for name in ("full", "sub", "trained", "heldout", "ood_clean")}


def available_generators(cfg: RecipeConfig) -> tuple[list[str], dict[str, str]]:
    from gmv_store.generators import GENERATORS, generator_class

    wanted = list(cfg.generators) if cfg.generators else list(GENERATORS)
    ok: list[str] = []
    skipped: dict[str, str] = {}
    for name in wanted:
        if name not in GENERATORS:
            skipped[name] = f"not registered (registered: {', '.join(GENERATORS)})"
            continue
        try:
            generator_class(name)
            ok.append(name)
        except GmvError as e:
            skipped[name] = str(e)
    if not ok:
        raise BadInput(f"no generator can be loaded ({skipped}); fix: install torch or choose --generator gmm")
    return ok, skipped


def train(r: _Run, name: str, images: np.ndarray, labels: np.ndarray, role: str) -> Generator:
    """load_or_train with the wall time and whether it came from the cache."""
    from gmv_store.generators import cache_path, default_cache_dir, load_or_train

    cache = r.cache if r.cache is not None else default_cache_dir()
    cached = cache_path(name, images, labels, cache, seed=r.cfg.seed, quick=r.cfg.quick).is_file()
    t = time.perf_counter()
    gen = load_or_train(name, images, labels, cache, seed=r.cfg.seed, quick=r.cfg.quick)
    wall = time.perf_counter() - t
    r.results.setdefault("generator_training", []).append({
        "generator": name, "role": role, "n_train": len(images), "cached": cached, "wall_s": round(wall, 2),
        "train_s": round(getattr(gen, "train_seconds", None) or (0.0 if cached else wall), 2)})
    return gen


def _meta(r: _Run, name: str, images: np.ndarray, labels: np.ndarray, owners: list[str]) -> dict[str, Any]:
    """What the sets of this generator record, so `gmv eval lds` / `remove` can retrain it."""
    from gmv_store.generators.spec import generator_meta

    return generator_meta(name, images, labels, seed=r.cfg.seed, quick=r.cfg.quick, owners=owners)


def step_generators(r: _Run) -> None:
    from gmv_store.generators.classifier import load_or_train_classifier

    cfg = r.cfg
    names, skipped = available_generators(cfg)
    r.results["generators"] = names
    r.results["generators_skipped"] = skipped
    xf, yf = r.data["full"]
    clf = None
    try:
        t = time.perf_counter()
        clf = load_or_train_classifier(xf, yf, r.cache, seed=cfg.seed, quick=cfg.quick)
        r.results["classifier"] = {"n_train": len(xf), "wall_s": round(time.perf_counter() - t, 2),
                                   "test_accuracy": _classifier_test_accuracy(clf)}
    except GmvError as e:
        r.results["classifier"] = {"error": str(e)}
    except ImportError as e:
        r.results["classifier"] = {"error": f"needs {e.name}"}
    acc: dict[str, float] = {}
    for name in names:
        r.echo(f"  generator {name}: training on {len(xf):,} images (cached after the first run) ...")
        gen = train(r, name, xf, yf, "C1 / sensitivity (full pool)")
        c1_labels = np.arange(cfg.m) % 10
        sens_labels = np.arange(cfg.sens_pool) % 10
        t = time.perf_counter()
        c1 = gen.sample(c1_labels, seed=cfg.seed + 1)
        sens = gen.sample(sens_labels, seed=cfg.seed + 2)
        r.results.setdefault("generation", []).append(
            {"generator": name, "images": len(c1) + len(sens), "s": round(time.perf_counter() - t, 3)})
        r.gens[name] = {"c1": _save_npz(r.work / "generated" / f"{name}-c1.npz", c1, c1_labels),
                        "sens": _save_npz(r.work / "generated" / f"{name}-sens.npz", sens, sens_labels),
                        "meta": _meta(r, name, xf, yf, ["mnist"])}
        if clf is not None:
            acc[name] = clf.accuracy_on(np.concatenate([c1, sens]), np.concatenate([c1_labels, sens_labels]))
    r.results["sample_accuracy"] = acc
    r.classifier = clf


def _classifier_test_accuracy(clf: MnistClassifier) -> float:
    from gmv_store.datasets import load_mnist

    xt, yt = load_mnist("test")
    return clf.accuracy_on(xt, yt)


def _new_store(r: _Run, name: str, specs: dict[str, tuple[str, dict[str, Any]]]) -> Store:
    """A recipe store. Made with an HNSW index configured but not built: its valuations search
    exactly until `step_hnsw` builds the index to measure it."""
    from gmv_store.config import IndexConfig
    from gmv_store.store import Store

    return Store.init(r.stores / name, embedder=specs["embedder"], rerank=specs["rerank"], quality=specs["quality"],
                      index=IndexConfig(mode="hnsw"))


def step_c1(r: _Run) -> None:
    """Identical-class test for each pool x combo x generator, plus rho vs k, sensitivity in m,
    two-stage recall@k and the runtime split, all from the same stores."""
    from gmv_store.ingest.pipeline import ingest
    from gmv_store.query.value import value

    from .class_test import class_ratio
    from .recall_quality import two_stage_recall
    from .runtime import add_splits, ingest_split, scoring_seconds, value_split
    from .sensitivity import rho_vs_k, rho_vs_m

    cfg = r.cfg
    k, N = cfg.k_max, cfg.recall_factor * cfg.k_max
    c1: list[dict[str, Any]] = []
    curves: dict[str, dict[str, list[dict[str, Any]]]] = {}
    runtime: list[dict[str, Any]] = []
    recall_rows: list[dict[str, Any]] = []
    sens_m: dict[str, list[dict[str, Any]]] = {}
    sens_k: dict[str, list[dict[str, Any]]] = {}
    plan = [("full", c) for c in cfg.full_combos] + [("sub", c) for c in cfg.sub_combos]
    for pool, (emb, rr) in plan:
        name = f"{pool}-{emb}-{rr}"
        label = f"{pool} · {combo_name(cfg, emb, rr)}"
        r.echo(f"  store {name}: ingest {len(r.data[pool][0]):,} training images, value "
               f"{cfg.m} generated images per generator (k={k}, N={N}) ...")
        s = _new_store(r, name, backend_specs(cfg, emb, rr))
        try:
            ing = ingest(s, [str(r.work / "data" / f"{pool}.npz")], owner="mnist")
            splits = []
            for g in r.results["generators"]:
                set_name = f"c1-{g}"
                rep = value(s, [str(r.gens[g]["c1"])], set_name, k=k, recall=N, meta=r.gens[g]["meta"])
                splits.append(value_split(rep, scoring_seconds(s.ledger, set_name)))
                rho = {row["k"]: row["rho"] for row in class_ratio(s.ledger, set_name, list(cfg.ks))}
                c1.append({"generator": g, "pool": pool, "n_train": len(r.data[pool][0]), "recall": emb, "rerank": rr,
                           "store": name, **{f"rho@{kk}": rho[kk] for kk in cfg.ks}})
                curves.setdefault(g, {})[label] = rho_vs_k(s.ledger, set_name)
            if (pool, emb, rr) == ("full", "pixels", "l2") or (pool == "full" and len(cfg.full_combos) == 1):
                for g in r.results["generators"]:
                    set_name = f"sens-{g}"
                    rep = value(s, [str(r.gens[g]["sens"])], set_name, k=k, recall=N, meta=r.gens[g]["meta"])
                    splits.append(value_split(rep, scoring_seconds(s.ledger, set_name)))
                    sens_m[g] = rho_vs_m(s.ledger, set_name, cfg.sens_k, cfg.sens_ms, cfg.sens_repeats, seed=cfg.seed)
                    sens_k[g] = rho_vs_k(s.ledger, set_name)
                r.results["sensitivity_store"] = name
            if rr != "none":
                g0 = r.results["generators"][0]
                rows = two_stage_recall(s, f"c1-{g0}", k=k, limit=cfg.recall_queries,
                                        recalls=[f * k for f in (1, 2, 5, 10, 20)])
                recall_rows.extend({"store": name, "label": label, "generator": g0, **row} for row in rows)
            runtime.append({"store": name, "label": label, "n_train": len(r.data[pool][0]),
                            "ingest": ingest_split(ing), "value": add_splits(splits), "k": k, "recall_N": N})
        finally:
            s.close()
    r.results["c1"] = c1
    r.results["rho_vs_k"] = curves
    r.results["rho_vs_m"] = sens_m
    r.results["rho_vs_k_sensitivity"] = sens_k
    r.results["two_stage_recall"] = recall_rows
    r.results["runtime"] = runtime


def step_hnsw(r: _Run) -> None:
    from gmv_store.ingest.index import build_index
    from gmv_store.store import Store

    from .recall_quality import hnsw_recall

    name = r.results.get("sensitivity_store")
    if not name:
        return
    g0 = r.results["generators"][0]
    rows = []
    s = Store.open(r.stores / name)
    try:
        r.echo(f"  building {name}'s HNSW index ...")
        built = build_index(s)
        # k as valued, and N: what the recall stage asks the index for
        for k in (r.cfg.k_max, r.cfg.recall_factor * r.cfg.k_max):
            r.echo(f"  {name}'s HNSW index against exact search, k={k} ...")
            rows += [{"store": name, "generator": g0, "build_s": built.seconds, **row}
                     for row in hnsw_recall(s, f"sens-{g0}", k=k, efs=r.cfg.hnsw_efs)]
    finally:
        s.close()
    r.results["hnsw_recall"] = rows


def _train_and_sample(r: _Run, name: str, images: np.ndarray, labels: np.ndarray, role: str, m: int, seed: int,
                      path: Path, accuracy_at: tuple[str, str]) -> Path:
    """Train generator `name` (cached), sample m images of the classes 0..9 in turn into the
    .npz `path`, and record their sample accuracy at results[accuracy_at[0]][accuracy_at[1]]."""
    gen = train(r, name, images, labels, role)
    wanted = np.arange(m) % 10
    fake = gen.sample(wanted, seed=seed)
    out = _save_npz(path, fake, wanted)
    if r.classifier is not None:
        r.results.setdefault(accuracy_at[0], {})[accuracy_at[1]] = r.classifier.accuracy_on(fake, wanted)
    return out


def step_membership(r: _Run) -> None:
    from gmv_store.ingest.pipeline import ingest
    from gmv_store.query.value import value

    from .membership import membership_test

    cfg = r.cfg
    xt, yt = r.data["trained"]
    s = _new_store(r, "member-pixels-l2", backend_specs(cfg, "pixels", "l2"))
    rows = []
    try:
        ingest(s, [str(r.work / "data" / "trained.npz")], owner="trained")
        ingest(s, [str(r.work / "data" / "heldout.npz")], owner="heldout")
        for g in r.results["generators"]:
            r.echo(f"  trained vs held-out, {g}: training on {len(xt):,} images, valuing {cfg.member_m} samples ...")
            path = _train_and_sample(r, g, xt, yt, "trained vs held-out (one half)", cfg.member_m, cfg.seed + 3,
                                     r.work / "generated" / f"{g}-member.npz", ("member_sample_accuracy", g))
            value(s, [str(path)], f"member-{g}", k=cfg.member_k, meta=_meta(r, g, xt, yt, ["trained"]))
            rows.append({"generator": g, **membership_test(s.ledger, f"member-{g}", trained_owner="trained",
                                                           heldout_owner="heldout", curve=True)})
    finally:
        s.close()
    r.results["membership"] = rows


def step_ood(r: _Run) -> None:
    from gmv_store.ingest.pipeline import ingest
    from gmv_store.query.value import value

    from .foreign import foreign_images, n_foreign_for
    from .ood import ood_detection

    cfg = r.cfg
    xc, yc = r.data["ood_clean"]
    rows = []
    for src in cfg.ood_sources:
        n_f = n_foreign_for(len(xc), cfg.ood_fraction)
        xf, yf = foreign_images(src, n_f, seed=cfg.seed)
        fpath = _save_npz(r.work / "data" / f"foreign-{src}.npz", xf, yf)
        mix_x, mix_y = np.concatenate([xc, xf]), np.concatenate([yc, yf])
        gen_paths: dict[str, Path] = {}
        metas: dict[str, dict[str, Any]] = {}
        for g in r.results["generators"]:
            r.echo(f"  C3 {src}: {g} trained on {len(xc):,} MNIST + {n_f} foreign images ...")
            gen_paths[g] = _train_and_sample(r, g, mix_x, mix_y, f"C3 ({src}, {cfg.ood_fraction:.0%} foreign)",
                                             cfg.ood_m, cfg.seed + 4, r.work / "generated" / f"{g}-ood-{src}.npz",
                                             ("ood_sample_accuracy", f"{g}/{src}"))
            metas[g] = _meta(r, g, mix_x, mix_y, ["foreign", "mnist"])
        for quality in ("none", *[q for q in cfg.ood_qualities if q != "none"]):
            s = _new_store(r, f"ood-{src}-q-{quality}", backend_specs(cfg, "pixels", "l2", quality))
            try:
                ingest(s, [str(r.work / "data" / "ood_clean.npz")], owner="mnist")
                ingest(s, [str(fpath)], owner="foreign")
                for g in r.results["generators"]:
                    rep = value(s, [str(gen_paths[g])], f"ood-{g}", k=cfg.ood_k, meta=metas[g])
                    res = ood_detection(s.ledger, f"ood-{g}", foreign_owner="foreign", curve=True)
                    qs = ledger.qualities(s.ledger, f"ood-{g}")
                    rows.append({"generator": g, "source": src, "quality": quality, "fraction": cfg.ood_fraction,
                                 "quality_mean": float(np.mean(qs)), "value_s": rep.seconds, **res})
            finally:
                s.close()
    r.results["ood"] = rows


def step_grids(r: _Run) -> None:
    from gmv_store.ledger import open_ledger_readonly

    from .grid import contributor_grid

    name = r.results.get("sensitivity_store")
    if not name:
        return
    con = open_ledger_readonly(r.stores / name)
    try:
        grids = {}
        for g in r.results["generators"]:
            p = contributor_grid(con, f"c1-{g}", r.out / f"grid-{g}.png", rows=6 if not r.cfg.quick else 3, top=8,
                                 title=f"{g}: generated (left), top-8 contributors from {name} (label · credit)")
            grids[g] = p.name
        r.results["grids"] = grids
    finally:
        con.close()


def step_plots(r: _Run) -> None:
    from . import plots

    res = r.results
    files = {}
    files["rho_vs_k"] = plots.rho_vs_k(res["rho_vs_k"], r.out / "rho_vs_k.png",
                                       title=f"Identical-class ratio against k (m = {r.cfg.m}; full pool solid, "
                                             f"{r.cfg.n_sub:,}-image sub pool dashed)").name
    if res.get("rho_vs_m"):
        files["rho_vs_m"] = plots.rho_vs_m({g: rows for g, rows in res["rho_vs_m"].items()}, r.out / "rho_vs_m.png",
                                           title=f"rho@{r.cfg.sens_k} against m ({r.cfg.sens_repeats} repeats, mean ± std)").name
    if res.get("ood"):
        files["ood_ranks"] = plots.ood_ranks(
            [{"label": f"{o['generator']} · {o['source']} · quality {o['quality']}", **o} for o in res["ood"]],
            r.out / "ood_ranks.png").name
        files["ood_roc"] = plots.roc(
            {f"{o['generator']} · {o['source']} · q={o['quality']}": (o["roc_fpr"], o["roc_tpr"],
                                                                      o["auc_low_value_is_foreign"]) for o in res["ood"]},
            r.out / "ood_roc.png", "C3: low value => foreign").name
    if res.get("membership"):
        files["membership_roc"] = plots.roc(
            {m["generator"]: (m["roc_fpr"], m["roc_tpr"], m["auc_membership"]) for m in res["membership"]},
            r.out / "membership_roc.png", "Trained vs held-out: high value => trained").name
    if res.get("two_stage_recall"):
        series: dict[str, list[dict[str, Any]]] = {}
        for row in res["two_stage_recall"]:
            series.setdefault(row["label"], []).append(row)
        files["recall_vs_n"] = plots.recall_vs_n(series, r.out / "recall_vs_n.png",
                                                 title=f"two-stage recall@{r.cfg.k_max} against N").name
    res["plots"] = files
