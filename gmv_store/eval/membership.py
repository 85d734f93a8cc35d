"""Trained vs held-out (paper Fig. 1 / Table 6): a generator trained on one half of the data,
both halves ingested; values of the trained half should be significantly higher. Reported:
the mean values, Welch's one-sided t-test (trained > held-out) and the ROC AUC of the value
as a membership-inference score ("higher value => was in the training set")."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gmv_store.errors import BadInput

from .ledger_read import all_values, select
from .metrics import one_sided_ttest, roc_auc, roc_curve

if TYPE_CHECKING:
    from duckdb import DuckDBPyConnection as Connection


def membership_test(con: Connection, set_name: str, *, trained_owner: str, heldout_owner: str,
                    curve: bool = False) -> dict[str, Any]:
    v = all_values(con, set_name)
    tr = select(v, owner=trained_owner, what="trained half")
    ho = select(v, owner=heldout_owner, what="held-out half")
    if tr.sum() < 2 or ho.sum() < 2:
        owners = sorted({str(o) for o in v.owner})
        raise BadInput(f"owner '{trained_owner}' has {int(tr.sum())} and owner '{heldout_owner}' {int(ho.sum())} training "
                       f"images (need 2 or more each); owners in the store: {', '.join(owners)}; "
                       "fix: pass --trained-owner and --heldout-owner")
    a, b = v.value[tr], v.value[ho]
    n = len(v)
    both = tr | ho
    t = one_sided_ttest(a, b)
    out: dict[str, Any] = {
        "set_name": set_name,
        "n_trained": int(tr.sum()),
        "n_heldout": int(ho.sum()),
        # phi * n: 1 = an equal share of the set's total value among the store's n images
        "mean_value_trained_x_n": float(a.mean() * n),
        "mean_value_heldout_x_n": float(b.mean() * n),
        "mean_value_trained": float(a.mean()),
        "mean_value_heldout": float(b.mean()),
        "t": t["t"],
        "p_one_sided": t["p"],
        "dof": t["dof"],
        "auc_membership": roc_auc(v.value[both], tr[both]),
        "credited_trained": float((a > 0).mean()),
        "credited_heldout": float((b > 0).mean()),
    }
    if curve:
        fpr, tpr = roc_curve(v.value[both], tr[both])
        out["roc_fpr"], out["roc_tpr"] = fpr.tolist(), tpr.tolist()
    return out
