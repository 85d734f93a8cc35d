"""C1, the identical-class test: rho = share of a generated image's top-k contributors that
carry its label, averaged over the set's labelled generated images (method.md)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .ledger_read import per_generated_rho, set_info

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection

DEFAULT_KS = (30, 50, 100)


def class_ratio(con: Connection, set_name: str, ks: list[int] | None = None) -> list[dict[str, Any]]:
    """rho for each k <= the set's k (the top-k for a smaller k is a prefix of the stored one).
    Default: 30, 50 and 100 where the set's k allows, else the set's k."""
    if not ks:
        k_set = set_info(con, set_name)["k"]
        ks = [k for k in DEFAULT_KS if k <= k_set] or [k_set]
    out = []
    for k in ks:
        rho = per_generated_rho(con, set_name, k)
        out.append({"set_name": set_name, "k": k, "rho": float(np.mean(list(rho.values()))), "generated": len(rho)})
    return out
