"""Counterfactual checks (gmv eval lds / remove): the statistics by hand, the likelihoods
against an independent computation, and the --quick commands end to end on a small store
whose set records the generator that drew it (fits in worker processes)."""
import json

import numpy as np
import pytest
from cli_helpers import invoke

from gmv_store.errors import BadInput
from gmv_store.eval import lds_math
from gmv_store.generators import load_or_train
from gmv_store.generators.likelihood import gmm_log_likelihood, gmm_residual_variance, likelihood_kind
from gmv_store.generators.spec import contributor_ids, generator_meta, generator_spec

LDS_KEYS = {"lds", "lds_ci", "subsets", "baselines"}
REMOVE_KEYS = {"drop_top", "drop_random", "p_value", "removed"}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """300 MNIST images (30 per class) in a pixels/l2 store; a quick GMM trained on them drew 20
    images, valued at k = 10 with the generator's spec (set `gmm`); 10 MNIST test images valued
    without one (set `outside`)."""
    from gmv_store.datasets import load_mnist
    from gmv_store.ingest.pipeline import ingest
    from gmv_store.query.value import value
    from gmv_store.store import Store

    root = tmp_path_factory.mktemp("cf")
    x, y = load_mnist("train")
    idx = np.concatenate([np.flatnonzero(y == c)[:30] for c in range(10)])
    x, y = x[idx], y[idx]
    np.savez(root / "train.npz", images=x, labels=y)
    gen = load_or_train("gmm", x, y, root / "gens", seed=0, quick=True)
    gy = np.arange(20) % 10
    np.savez(root / "gen.npz", images=gen.sample(gy, seed=1), labels=gy)
    xt, yt = load_mnist("test")
    np.savez(root / "outside.npz", images=xt[:10], labels=yt[:10])
    store = root / "store"
    s = Store.init(store, embedder=("pixels", {"size": 16, "color": "gray"}), rerank=("l2", {"size": 28, "color": "gray"}),
                   quality=("none", {}))
    try:
        ingest(s, [str(root / "train.npz")], owner="mnist")
        meta = generator_meta("gmm", x, y, seed=0, quick=True, owners=["mnist"])
        value(s, [str(root / "gen.npz")], "gmm", k=10, meta=meta)
        value(s, [str(root / "outside.npz")], "outside", k=10)
        wrong = generator_meta("gmm", x, y, seed=0, quick=True, owners=["someone-else"])
        value(s, [str(root / "gen.npz")], "wrong-data", k=10, meta=wrong)
        ids = [r[0] for r in s.ledger.execute("SELECT contributor_id FROM training_images").fetchall()]
    finally:
        s.close()
    return {"root": root, "store": store, "x": x, "y": y, "gen": gen, "ids": ids, "cache": root / "fits"}


# ----------------------------------------------------------------------------- statistics


def test_row_spearman_matches_scipy_and_flags_constant_rows():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a = np.round(rng.normal(size=(5, 12)), 1)  # rounding makes ties
    b = rng.normal(size=(5, 12)) + a
    got = lds_math.row_spearman(a, b)
    for i in range(5):
        assert got[i] == pytest.approx(spearmanr(a[i], b[i]).statistic)
    assert lds_math.row_spearman([[1, 2, 3]], [[3, 2, 1]])[0] == pytest.approx(-1.0)
    assert np.isnan(lds_math.row_spearman([[1, 1, 1]], [[1, 2, 3]])[0])


def test_lds_of_a_true_datamodel_is_one_and_of_random_scores_near_zero():
    rng = np.random.default_rng(1)
    n, m, s = 200, 30, 40
    tau = rng.normal(size=(m, n))
    masks = lds_math.subset_masks(n, s, 0.5, seed=0)
    assert masks.sum(1).tolist() == [100] * s
    actual = (tau @ masks.T).T * 3.0 + 7.0  # outputs exactly linear in the subset
    assert lds_math.lds_scores(tau, masks, actual) == pytest.approx(np.ones(m))
    noise = lds_math.lds_scores(rng.normal(size=(m, n)), masks, actual)
    assert abs(noise.mean()) < 0.15
    lo, hi = lds_math.bootstrap_ci(noise, seed=0)
    assert lo < noise.mean() < hi
    with pytest.raises(BadInput):
        lds_math.subset_masks(10, 4, 1.0, seed=0)


def test_paired_greater_one_sided():
    from scipy.stats import ttest_rel

    a = np.array([5.0, 6.0, 7.5, 9.0, 4.0])
    b = np.array([4.0, 5.5, 6.0, 7.0, 4.5])
    r = lds_math.paired_greater(a, b)
    assert r["p_value"] == pytest.approx(ttest_rel(a, b).pvalue / 2)  # t > 0: half the two-sided p
    assert lds_math.paired_greater(b, a)["p_value"] == pytest.approx(1 - r["p_value"])
    assert 0 < r["p_wilcoxon"] < 0.5


# ----------------------------------------------------------------------------- likelihoods


def test_gmm_log_likelihood_equals_direct_density(small):
    """The closed form against scipy's densities: the class mixture over the PCA coordinates
    plus an isotropic Gaussian over the 784 - d residual coordinates."""
    from scipy.special import logsumexp
    from scipy.stats import multivariate_normal

    gen, x, y = small["gen"], small["x"], small["y"]
    s2 = gmm_residual_variance(gen, x)
    xs, ys = x[:12], y[:12]
    got = gmm_log_likelihood(gen, xs, ys, s2)
    c = gen.pca_components.astype(np.float64)
    for i in range(len(xs)):
        v = xs[i].reshape(-1) / 255.0 - gen.pca_mean
        z = c @ v
        r = v - c.T @ z
        cls = ys[i]
        comps = [np.log(w) + multivariate_normal(gen.means[cls, j], gen.chols[cls, j] @ gen.chols[cls, j].T).logpdf(z)
                 for j, w in enumerate(gen.weights[cls]) if w > 0]
        resid = -0.5 * (784 - len(z)) * np.log(2 * np.pi * s2) - 0.5 * (r @ r) / s2
        assert got[i] == pytest.approx(logsumexp(comps) + resid, rel=1e-8)
    # the model prefers its own class: an image scored under the right label beats a wrong one
    wrong = gmm_log_likelihood(gen, xs, (ys + 1) % 10, s2)
    assert (got > wrong).mean() >= 0.75


def test_vae_elbo_is_a_finite_deterministic_bound(small):
    pytest.importorskip("torch")
    from gmv_store.generators.likelihood import vae_elbo

    x, y = small["x"], small["y"]
    vae = load_or_train("vae", x, y, small["root"] / "gens", seed=0, quick=True)
    e1, e2 = vae_elbo(vae, x[:10], y[:10], seed=3), vae_elbo(vae, x[:10], y[:10], seed=3)
    assert e1.shape == (10,) and np.isfinite(e1).all() and (e1 < 0).all()
    assert np.array_equal(e1, e2)


def test_spec_names_the_store_training_images_and_kinds_without_likelihood(small):
    spec = generator_spec("gmm", small["x"], small["y"], seed=0, quick=True, owners=["mnist"])
    assert (spec["kind"], spec["seed"], spec["quick"], spec["train"]["owners"], spec["train"]["n"]) == (
        "gmm", 0, True, ["mnist"], 300)
    assert spec["hparams"]["n_components"] == 3
    assert set(contributor_ids(small["x"])) == set(small["ids"])  # the same ids the store gave them
    with pytest.raises(BadInput, match="no likelihood"):
        likelihood_kind("gan")


# ----------------------------------------------------------------------------- the commands


def test_lds_and_remove_quick_json_and_cached_rerun(small):
    store, cache = small["store"], small["cache"]
    out = json.loads(invoke("eval", "lds", "--store", store, "--set", "gmm", "--quick", "--subsets", "6",
                         "--workers", "2", "--cache", cache, "--json").stdout)
    assert LDS_KEYS <= set(out) and set(out["baselines"]) == {"random", "no_quality", "no_rerank"}
    assert out["subsets"] == 6 and out["fits"]["fits"] == 6 and out["fits"]["workers"] == 2
    assert -1 <= out["lds"] <= 1 and out["lds_ci"][0] <= out["lds"] <= out["lds_ci"][1]
    assert all(-1 <= v <= 1 for v in out["baselines"].values())
    # quality "none" gives q = 1: the no-quality ablation is the same scores
    assert out["baselines"]["no_quality"] == pytest.approx(out["lds"])
    assert out["likelihood"].startswith("exact") and out["m"] == 20 and out["n_train"] == 300
    assert set(out["per_class"]) == {str(c) for c in range(10)}
    again = json.loads(invoke("eval", "lds", "--store", store, "--set", "gmm", "--quick", "--subsets", "6",
                           "--cache", cache, "--json").stdout)
    assert again["fits"]["fits"] == 0 and again["fits"]["cached"] == 6 and again["lds"] == out["lds"]
    # a damaged cache entry (a disk fault, a kill mid-write elsewhere) is refit, not trusted
    min(cache.glob("*.npy")).write_bytes(b"not an array")
    fixed = json.loads(invoke("eval", "lds", "--store", store, "--set", "gmm", "--quick", "--subsets", "6",
                           "--workers", "1", "--cache", cache, "--json").stdout)
    assert fixed["fits"]["fits"] == 1 and fixed["lds"] == pytest.approx(out["lds"])

    rem = json.loads(invoke("eval", "remove", "--store", store, "--set", "gmm", "--quick", "--fraction", "0.1",
                         "--cache", cache, "--json").stdout)
    assert REMOVE_KEYS <= set(rem) and rem["removed"] == 30 and rem["seeds"] == 2
    assert 0 <= rem["p_value"] <= 1 and np.isfinite(rem["drop_top"]) and np.isfinite(rem["drop_random"])
    assert rem["fits"]["fits"] == 4  # all, without the top 30, two random removals
    # 20 images x top-10 credit at most 200 images: the top 30 by value are all credited
    assert rem["removed_credited"] == 30 and 0 < rem["value_share_removed"] <= 1
    table = invoke("eval", "remove", "--store", store, "--set", "gmm", "--quick", "--fraction", "0.1", "--cache", cache)
    assert "drop_top" in table.stdout


def test_sets_without_a_usable_generator_are_refused_in_one_line(small):
    store = small["store"]
    r = invoke("eval", "lds", "--store", store, "--set", "outside", "--quick", code=1)
    assert "records no generator" in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
    r = invoke("eval", "remove", "--store", store, "--set", "outside", code=1)
    assert "records no generator" in r.output and len(r.output.strip().splitlines()) == 1
    r = invoke("eval", "lds", "--store", store, "--set", "wrong-data", "--quick", code=1)
    assert "not those images" in r.output and len(r.output.strip().splitlines()) == 1
    r = invoke("eval", "lds", "--store", store, "--set", "nope", code=1)
    assert "does not exist" in r.output


def test_set_spec_refuses_empty_and_mixed_sets():
    import duckdb

    from gmv_store.eval.counterfactual import set_spec

    con = duckdb.connect()
    con.execute("CREATE TABLE generated_sets (set_name VARCHAR, k INTEGER, recall INTEGER)")
    con.execute("CREATE TABLE generated (set_name VARCHAR, meta JSON)")
    con.execute("CREATE VIEW sets AS SELECT s.set_name, s.k, s.recall, (SELECT count(*) FROM generated g "
                "WHERE g.set_name = s.set_name) AS m FROM generated_sets s")
    con.execute("INSERT INTO generated_sets VALUES ('empty', 5, 50), ('mixed', 5, 50), ('one', 5, 50)")
    con.execute("""INSERT INTO generated VALUES ('mixed', '{"generator": {"kind": "gmm"}}'),
                   ('mixed', '{"generator": {"kind": "vae"}}'), ('mixed', '{}'),
                   ('one', '{"generator": {"kind": "vae", "seed": 3}}'), ('one', '{"generator": {"kind": "vae", "seed": 3}}')""")
    with pytest.raises(BadInput, match="holds no generated images"):
        set_spec(con, "empty")
    with pytest.raises(BadInput, match="mixes images of 2 generators and outside images"):
        set_spec(con, "mixed")
    assert set_spec(con, "one") == {"kind": "vae", "seed": 3}
