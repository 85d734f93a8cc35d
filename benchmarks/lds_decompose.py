"""Where a GMM set's LDS comes from: each subset model's log-likelihood of the generated images
split into the part inside the PCA subspace (the mixture) and the residual part (the isotropic
Gaussian off it), for the default `gmv eval lds` (32 subsets of half, seed 0) whose fits are
already cached; each subset's PCA is recomputed (as the GMM fit does), no mixture is refit.

    python benchmarks/lds_decompose.py STORE SET [FIT_CACHE]     # after `gmv eval lds --set SET`
"""
import json
import sys
import time
from types import SimpleNamespace

import numpy as np


def sp(a, b) -> float:
    from gmv_store.eval.lds_math import row_spearman

    return float(row_spearman(a[None], b[None])[0])


def main():
    from sklearn.decomposition import PCA
    from threadpoolctl import threadpool_limits

    from gmv_store.eval.counterfactual import load_setup
    from gmv_store.eval.lds_math import lds_scores, nanmean, subset_masks
    from gmv_store.eval.retrain import run_fits
    from gmv_store.generators.likelihood import gmm_residual_variance

    store, set_name = sys.argv[1], sys.argv[2]
    su = load_setup(store, set_name)
    n, m = len(su.train_ids), len(su.gen_x)
    masks = subset_masks(n, 32, 0.5, 0)
    ll, cost = run_fits(su.spec, su.train_x, su.train_y, su.gen_x, su.gen_y, [np.flatnonzero(r) for r in masks],
                        cache=sys.argv[3] if len(sys.argv) > 3 else None)
    if cost["fits"]:
        print(f"note: {cost['fits']} fits were not cached and ran now", file=sys.stderr)
    res = np.zeros_like(ll)
    s2s = []
    gx = su.gen_x.reshape(m, -1).astype(np.float64) / 255.0
    t = time.time()
    with threadpool_limits(1):
        for s, mask in enumerate(masks):
            x = su.train_x[np.flatnonzero(mask)].reshape(-1, 784).astype(np.float32) / 255.0
            pca = PCA(n_components=50, svd_solver="randomized", random_state=su.spec["seed"]).fit(x)
            g = SimpleNamespace(pca_mean=pca.mean_.astype(np.float32), pca_components=pca.components_.astype(np.float32))
            s2 = gmm_residual_variance(g, su.train_x[np.flatnonzero(mask)])
            c = g.pca_components.astype(np.float64)
            v = gx - g.pca_mean
            r = v - (v @ c.T) @ c
            res[s] = -0.5 * (784 - 50) * np.log(2 * np.pi * s2) - 0.5 * (r * r).sum(1) / s2
            s2s.append(s2)
    sub = ll - res
    phi_sum = masks @ su.values
    out = {"set": set_name, "pca_s": round(time.time() - t, 1),
           "set_level": {"total": sp(phi_sum, ll.mean(1)), "residual_part": sp(phi_sum, res.mean(1)),
                         "subspace_part": sp(phi_sum, sub.mean(1)), "sigma2": sp(phi_sum, np.array(s2s))},
           "per_image_lds": {"total": nanmean(lds_scores(su.credits, masks, ll)),
                             "residual_part": nanmean(lds_scores(su.credits, masks, res)),
                             "subspace_part": nanmean(lds_scores(su.credits, masks, sub))},
           "std_over_subsets": {"total": float(ll.std(0).mean()), "residual_part": float(res.std(0).mean()),
                                "subspace_part": float(sub.std(0).mean())},
           "mean": {"residual_part": float(res.mean()), "subspace_part": float(sub.mean())}}
    print(json.dumps(out, indent=1))

if __name__ == "__main__":
    main()
