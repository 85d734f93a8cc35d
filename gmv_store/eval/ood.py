"""C3, out-of-distribution detection: foreign images mixed into the training set should
receive low values. The scalar is the ROC AUC of "low value => foreign" over every training
image of the store (uncredited images have value 0 and tie with each other), plus where the
foreign images rank (rank 1 = the highest value)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from gmv_store.errors import BadInput

from .ledger_read import all_values, select
from .metrics import descending_ranks, roc_auc, roc_curve

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


def ood_detection(con: Connection, set_name: str, *, foreign_owner: str | None = None, foreign_source: str | None = None,
                  foreign_label: str | None = None, curve: bool = False) -> dict[str, Any]:
    """AUC of -value as a detector of the foreign training images, and their value ranks.

    Foreign images are those matching every given selector (owner, source glob, label).
    With `curve`, the ROC curve (fpr, tpr) and the foreign images' rank fractions are added
    (lists, for plots)."""
    v = all_values(con, set_name)
    foreign = select(v, owner=foreign_owner, source_glob=foreign_source, label=foreign_label, what="foreign images",
                     hint="--foreign-owner, --foreign-source, --foreign-label")
    n_f, n = int(foreign.sum()), len(v)
    if n_f == 0 or n_f == n:
        raise BadInput(f"{n_f} of {n} training images match the foreign selector; fix: choose a selector that "
                       "matches some but not all (e.g. --foreign-owner foreign)")
    ranks = descending_ranks(v.value)
    frac = (ranks - 1) / max(n - 1, 1)  # 0 = highest value, 1 = lowest
    out = {
        "set_name": set_name,
        "n_training": n,
        "n_foreign": n_f,
        "auc_low_value_is_foreign": roc_auc(-v.value, foreign),
        "mean_value_foreign": float(v.value[foreign].mean()),
        "mean_value_rest": float(v.value[~foreign].mean()),
        "zero_value_foreign": float((v.value[foreign] == 0).mean()),
        "zero_value_rest": float((v.value[~foreign] == 0).mean()),
        "median_rank_fraction_foreign": float(np.median(frac[foreign])),
        "foreign_in_top_10pct": float((frac[foreign] < 0.10).mean()),
        "best_foreign_rank": int(np.ceil(ranks[foreign].min())),
    }
    if curve:
        fpr, tpr = roc_curve(-v.value, foreign)
        out["roc_fpr"], out["roc_tpr"] = fpr.tolist(), tpr.tolist()
        out["foreign_rank_fractions"] = np.sort(frac[foreign]).tolist()
        out["value_share_foreign"] = float(v.value[foreign].sum() / v.value.sum()) if v.value.sum() > 0 else 0.0
    return out
