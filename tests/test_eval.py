"""Evaluation suite: the statistics on hand-checkable inputs, the criteria on a tiny real store,
and the --quick MNIST recipe end to end (pipeline check, not the numbers)."""
import json
import math

import numpy as np
import pytest
from cli_helpers import run

from gmv_store.errors import BadInput
from gmv_store.eval import metrics
from gmv_store.eval.foreign import SOURCES, foreign_images, n_foreign_for
from gmv_store.eval.recall_quality import exact_topk

# ----------------------------------------------------------------------------- metrics


def test_auc_of_known_rankings():
    # perfect, reversed, and the textbook example (3 of 4 positive/negative pairs ordered right)
    assert metrics.roc_auc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert metrics.roc_auc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    assert metrics.roc_auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)
    # ties count one half: positive 1 vs negatives {1, 0} -> (0.5 + 1) / 2
    assert metrics.roc_auc([1, 1, 0], [1, 0, 0]) == pytest.approx(0.75)
    # all values equal (e.g. nobody credited): chance
    assert metrics.roc_auc([0, 0, 0, 0], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert math.isnan(metrics.roc_auc([1, 2], [1, 1]))


def test_auc_and_curve_agree_with_sklearn_and_trapezoid():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.random(300) < 0.2
    s = np.round(rng.normal(size=300) + y, 1)  # rounding makes ties
    auc = metrics.roc_auc(s, y)
    assert auc == pytest.approx(roc_auc_score(y, s))
    fpr, tpr = metrics.roc_curve(s, y)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.trapezoid(tpr, fpr) == pytest.approx(auc)


def test_one_sided_welch_ttest_by_hand():
    from scipy.stats import t as student_t

    a = np.array([3.0, 4.0, 5.0, 6.0, 9.0])
    b = np.array([1.0, 2.0, 2.0, 3.0])
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    t = (a.mean() - b.mean()) / math.sqrt(va + vb)
    dof = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    r = metrics.one_sided_ttest(a, b)
    assert r["t"] == pytest.approx(t) and r["dof"] == pytest.approx(dof)
    assert r["p"] == pytest.approx(student_t.sf(t, dof))
    assert metrics.one_sided_ttest(b, a)["p"] == pytest.approx(1 - r["p"])
    with pytest.raises(BadInput):
        metrics.one_sided_ttest([1.0], b)


def test_ranks_and_mean_std():
    assert metrics.descending_ranks([5, 1, 5, 0]).tolist() == [1.5, 3.0, 1.5, 4.0]
    assert metrics.mean_std([1, 2, 3]) == (2.0, 1.0)
    assert metrics.mean_std([4]) == (4.0, 0.0)


def test_exact_topk_by_hand():
    base = np.array([[0, 0], [1, 0], [0, 2], [3, 3]], dtype=np.float32)
    q = np.array([[0.9, 0.1], [0, 1.8]], dtype=np.float32)
    assert exact_topk(q, base, 2, "euclid").tolist() == [[1, 0], [2, 0]]
    # cosine: direction only; [3, 3] is closest to (1, 1)
    assert exact_topk(np.array([[1.0, 1.0]]), base[1:], 1, "cosine").tolist() == [[2]]


def test_foreign_sources():
    assert n_foreign_for(10_000, 0.05) == 526  # 526 / 10,526 = 5.0 %
    with pytest.raises(BadInput):
        n_foreign_for(100, 1.5)
    for src in SOURCES:
        x, y = foreign_images(src, 12, seed=1)
        assert x.shape == (12, 28, 28) and x.dtype == np.uint8 and y.shape == (12,)
        assert y.min() >= 0 and y.max() <= 9
        assert np.array_equal(x, foreign_images(src, 12, seed=1)[0])  # seeded
    with pytest.raises(BadInput):
        foreign_images("cifar", 3)


# ----------------------------------------------------------------------------- criteria on a tiny store


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory, mnist_small):
    """60 MNIST images (owner mnist, 6 per class) + 6 noise images (owner foreign) + 6 other
    MNIST (owner heldout); 20 MNIST test digits valued at k = 5."""
    from gmv_store.config import IndexConfig
    from gmv_store.ingest.index import build_index
    from gmv_store.ingest.pipeline import ingest
    from gmv_store.query.value import value
    from gmv_store.store import Store

    x, y, xt, yt = mnist_small
    tmp = tmp_path_factory.mktemp("tiny")
    idx = np.concatenate([np.flatnonzero(y == c)[:6] for c in range(10)])
    held = np.concatenate([np.flatnonzero(y == c)[6:7] for c in range(6)])
    np.savez(tmp / "mnist.npz", images=x[idx], labels=y[idx])
    np.savez(tmp / "held.npz", images=x[held], labels=y[held])
    np.savez(tmp / "noise.npz", images=foreign_images("noise", 6)[0], labels=np.arange(6))
    np.savez(tmp / "gen.npz", images=xt[:20], labels=yt[:20])
    s = Store.init(tmp / "store", embedder=("pixels", {"size": 16}), rerank=("l2", {"size": 28}),
                   index=IndexConfig(mode="hnsw"))
    try:
        ingest(s, [str(tmp / "mnist.npz")], owner="mnist")
        ingest(s, [str(tmp / "held.npz")], owner="heldout")
        ingest(s, [str(tmp / "noise.npz")], owner="foreign")
        assert build_index(s).changed
        value(s, [str(tmp / "gen.npz")], "g", k=5, recall=50)
    finally:
        s.close()
    return tmp / "store"


def _values(store):
    from gmv_store.ledger import open_ledger_readonly

    con = open_ledger_readonly(store)
    try:
        return con.execute("""SELECT c.owner, coalesce(v.value, 0) FROM contributors c
                              LEFT JOIN contributor_values v ON v.contributor_id = c.contributor_id""").fetchall()
    finally:
        con.close()


def _pairwise_auc(pos, neg):
    return sum((p > n) + 0.5 * (p == n) for p in pos for n in neg) / (len(pos) * len(neg))


def test_ood_matches_pairwise_count(tiny_store):
    vals = _values(tiny_store)
    foreign = [v for o, v in vals if o == "foreign"]
    rest = [v for o, v in vals if o != "foreign"]
    out = json.loads(run("eval", "ood", "--store", tiny_store, "--set", "g", "--foreign-owner", "foreign", "--json"))[0]
    assert out["n_training"] == 72 and out["n_foreign"] == 6
    # low value => foreign: a foreign image "wins" a pair when its value is lower
    assert out["auc_low_value_is_foreign"] == pytest.approx(_pairwise_auc([-v for v in foreign], [-v for v in rest]))
    # white noise is never among a digit's 5 nearest training digits
    assert out["zero_value_foreign"] == 1.0 and out["auc_low_value_is_foreign"] > 0.5
    run("eval", "ood", "--store", tiny_store, "--set", "g", code=1)  # no selector


def test_membership_matches_scipy(tiny_store):
    from scipy.stats import ttest_ind

    vals = _values(tiny_store)
    a = [v for o, v in vals if o == "mnist"]
    b = [v for o, v in vals if o == "heldout"]
    out = json.loads(run("eval", "membership", "--store", tiny_store, "--set", "g", "--trained-owner", "mnist",
                         "--heldout-owner", "heldout", "--json"))[0]
    ref = ttest_ind(a, b, equal_var=False, alternative="greater")
    assert out["t"] == pytest.approx(ref.statistic) and out["p_one_sided"] == pytest.approx(ref.pvalue)
    assert out["auc_membership"] == pytest.approx(_pairwise_auc(a, b))
    assert out["mean_value_trained_x_n"] == pytest.approx(np.mean(a) * 72)


def test_class_test_and_sensitivity(tiny_store):
    from gmv_store.eval.sensitivity import rho_vs_k, rho_vs_m
    from gmv_store.ledger import open_ledger_readonly

    rows = json.loads(run("eval", "class-test", "--store", tiny_store, "--set", "g", "--json"))
    assert [r["k"] for r in rows] == [5]  # default ks capped at the set's k
    con = open_ledger_readonly(tiny_store)
    try:
        by_k = rho_vs_k(con, "g", (1, 3, 5))
        assert by_k[-1]["rho"] == pytest.approx(rows[0]["rho"])
        assert all(0 <= r["rho"] <= 1 for r in by_k)
        # m = the whole set: every repeat is the full mean, std 0
        full = rho_vs_m(con, "g", 5, ms=(20,), repeats=4)[0]
        assert full["rho_mean"] == pytest.approx(rows[0]["rho"]) and full["rho_std"] == pytest.approx(0.0)
        with pytest.raises(BadInput):
            rho_vs_m(con, "g", 5, ms=(21,))
    finally:
        con.close()
    out = run("eval", "sensitivity", "--store", tiny_store, "--set", "g", "--k", "1", "--k", "5", "--m", "1",
              "--m", "10", "--repeats", "3", "--csv")
    assert out.splitlines()[0] == "vary,k,m,rho,std,repeats" and len(out.splitlines()) == 5


def test_recall_quality_full_recall_is_exact(tiny_store):
    rows = json.loads(run("eval", "recall-quality", "--store", tiny_store, "--set", "g", "--recall", "5",
                          "--recall", "72", "--json"))
    by_n = {r["recall_N"]: r for r in rows}
    assert by_n[72]["recall_at_k"] == 1.0  # every training image recalled: the re-rank is exact
    assert 0 <= by_n[5]["recall_at_k"] <= 1
    h = json.loads(run("eval", "recall-quality", "--store", tiny_store, "--set", "g", "--hnsw", "--ef", "64", "--json"))
    assert 0.9 <= h[0]["recall_at_k"] <= 1.0 and h[0]["training"] == 72 and h[0]["indexed_points"] == 72


def test_every_eval_command_has_help_with_an_example():
    from gmv_store.cli.eval import eval_group

    for name in eval_group.commands:
        out = run("eval", name, "--help")
        assert "Example" in out, name


# ----------------------------------------------------------------------------- the quick recipe


def test_quick_recipe_end_to_end(tmp_path):
    out = tmp_path / "report"
    run("eval", "recipe", "--quick", "--out", out, "--cache", tmp_path / "cache")
    report = (out / "report.md").read_text()
    res = json.loads((out / "results.json").read_text())
    for png in ("rho_vs_k.png", "rho_vs_m.png", "ood_ranks.png", "ood_roc.png", "membership_roc.png",
                "recall_vs_n.png", "grid-gmm.png"):
        assert (out / png).stat().st_size > 1000, png
        assert png in report
    assert "## Headline" in report and "ρ@30" in report
    for row in res["c1"]:
        assert all(0 <= row[f"rho@{k}"] <= 1 for k in (30, 50, 100))
    assert {(c["pool"], c["recall"], c["rerank"]) for c in res["c1"]} == {
        ("full", "pixels", "none"), ("full", "pixels", "l2"), ("sub", "pixels", "l2"), ("sub", "pixels", "embedding")}
    for o in res["ood"]:
        assert 0 <= o["auc_low_value_is_foreign"] <= 1 and o["n_foreign"] == n_foreign_for(300, 0.05)
    assert {o["quality"] for o in res["ood"]} == {"none", "piqe"}
    m = res["membership"][0]
    assert 0 <= m["p_one_sided"] <= 1 and 0 <= m["auc_membership"] <= 1
    assert all(0 <= r["recall_at_k"] <= 1 for r in res["two_stage_recall"] + res["hnsw_recall"])
    for r in res["runtime"]:
        v = r["value"]
        parts = sum(v[f"{p}_s"] for p in ("forwards", "search", "scoring", "write", "other"))
        assert parts == pytest.approx(v["total_s"], rel=1e-6, abs=1e-6) or v["other_s"] == 0
    # the stores stay usable by the other commands
    rows = json.loads(run("eval", "class-test", "--store", out / "stores" / "full-pixels-l2", "--set", "c1-gmm", "--json"))
    assert [r["k"] for r in rows] == [30, 50, 100]
    # its sets record their generator; lds refuses a store that does not hold its training data
    from gmv_store.eval.counterfactual import set_spec
    from gmv_store.ledger import open_ledger_readonly

    con = open_ledger_readonly(out / "stores" / "full-pixels-l2")
    spec = set_spec(con, "c1-gmm")
    con.close()
    assert (spec["kind"], spec["quick"], spec["train"]["owners"], spec["train"]["n"]) == ("gmm", True, ["mnist"],
                                                                                          res["data"]["full"])
    assert "not those images" in run("eval", "lds", "--store", out / "stores" / "sub-pixels-l2", "--set", "c1-gmm",
                                     "--quick", code=1)
    assert "ρ@50" in run("eval", "recipe", "--out", out, "--headline")
    run("eval", "recipe", "--out", out, "--report-only")
    assert (out / "report.md").read_text() == report
    # a re-run replaces the folder; a foreign folder is refused
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "x.txt").write_text("mine")
    run("eval", "recipe", "--quick", "--out", tmp_path / "other", code=1)
