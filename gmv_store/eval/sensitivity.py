"""Sensitivity of the identical-class ratio rho: against k (the top-k for a smaller k is a
prefix of the stored one, so one set valued at k_max gives every k <= k_max), and against
the number of generated images m (the paper's Fig. 7): rho over random subsets of m
generated images of the set, repeated, as mean +- standard deviation."""
from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from gmv_store.errors import BadInput

from .ledger_read import per_generated_rho, set_info
from .metrics import mean_std

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection

DEFAULT_KS = (1, 5, 10, 20, 30, 50, 75, 100)
DEFAULT_MS = (1, 10, 30, 50)


def rho_vs_k(con: Connection, set_name: str, ks: Iterable[int] = DEFAULT_KS) -> list[dict[str, Any]]:
    """rho (mean over generated images) and its standard deviation across images, per k."""
    k_set = set_info(con, set_name)["k"]
    rows = []
    for k in sorted({k for k in ks if k <= k_set}):
        r = np.array(list(per_generated_rho(con, set_name, k).values()))
        rows.append({"set_name": set_name, "k": k, "rho": float(r.mean()), "std_over_images": mean_std(r)[1],
                     "generated": len(r)})
    if not rows:
        raise BadInput(f"no k in {list(ks)} is <= the set's k={k_set}")
    return rows


def rho_vs_m(con: Connection, set_name: str, k: int, ms: Iterable[int] = DEFAULT_MS, repeats: int = 10,
             seed: int = 0) -> list[dict[str, Any]]:
    """For each m: `repeats` subsets of m generated images drawn without replacement (seeded),
    rho of each subset; mean +- std over the repeats."""
    if repeats < 1:
        raise BadInput("repeats must be at least 1")
    per = per_generated_rho(con, set_name, k)
    ids = sorted(per)
    rho = np.array([per[g] for g in ids])
    rows = []
    for m in ms:
        if m < 1 or m > len(ids):
            raise BadInput(f"m={m}: must lie in 1..{len(ids)} (the set's labelled generated images)")
        rng = np.random.default_rng([seed, m])
        vals = [float(rho[rng.choice(len(ids), size=m, replace=False)].mean()) for _ in range(repeats)]
        mu, sd = mean_std(vals)
        rows.append({"set_name": set_name, "k": k, "m": m, "repeats": repeats, "rho_mean": mu, "rho_std": sd,
                     "pool": len(ids)})
    return rows


def sensitivity(con: Connection, set_name: str, ks: Iterable[int] | None = None, ms: Iterable[int] | None = None,
                m_k: int | None = None, repeats: int = 10, seed: int = 0) -> list[dict[str, Any]]:
    """`gmv eval sensitivity`: one row per k (rho against k) and per m (rho against m at m_k,
    default the set's k; default m values up to the set's m)."""
    info = set_info(con, set_name)
    by_k = rho_vs_k(con, set_name, ks or DEFAULT_KS)
    ms = ms or tuple(m for m in DEFAULT_MS if m <= info["m"])
    by_m = rho_vs_m(con, set_name, m_k or info["k"], ms, repeats=repeats, seed=seed)
    rows = [{"vary": "k", "k": r["k"], "m": r["generated"], "rho": r["rho"], "std": r["std_over_images"],
             "repeats": None} for r in by_k]
    rows += [{"vary": "m", "k": r["k"], "m": r["m"], "rho": r["rho_mean"], "std": r["rho_std"], "repeats": r["repeats"]}
             for r in by_m]
    return rows
