"""The invariant of incremental upkeep: after any sequence of ingest / value / forget /
refresh, stored scores and values equal a from-scratch valuation of the current data."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gmv_store.store import Store
from ingest.pipeline import ingest
from query.forget import forget_generated, forget_set, forget_training
from query.value import value
from query.refresh import refresh
from query.verify import verify

BACKENDS = dict(embedder=("pixels", {"size": 8}), rerank=("l2", {"size": 14}))
K, RECALL = 4, 12


@pytest.fixture(scope="module")
def pools(tmp_path_factory, mnist_small):
    """6 training batches of 25 images (owners a/b/c) and 3 generated batches of 8, as .npz files."""
    x, y, xt, yt = mnist_small
    d = tmp_path_factory.mktemp("pools")
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(x))
    train = []
    for b in range(6):
        f = d / f"t{b}.npz"
        sel = idx[b * 25:(b + 1) * 25]
        np.savez(f, images=x[sel], labels=y[sel])
        train.append(f)
    gen = []
    for b in range(3):
        f = d / f"g{b}.npz"
        np.savez(f, images=xt[b * 8:(b + 1) * 8], labels=yt[b * 8:(b + 1) * 8])
        gen.append(f)
    return train, gen


def values_of(con):
    return {(s, c): v for s, c, v in con.execute(
        "SELECT set_name, contributor_id, value_sum FROM contributor_values").fetchall()}


def from_scratch(tmp, con):
    """A new store built from the current training set and generated sets."""
    fresh = Store.init(tmp, **BACKENDS)
    try:
        train = con.execute("SELECT source, owner FROM training_images ORDER BY source").fetchall()
        for owner in sorted({o for _, o in train}, key=str):
            ingest(fresh, [s for s, o in train if o == owner], owner=owner)
        for (set_name,) in con.execute("SELECT set_name FROM generated_sets ORDER BY 1").fetchall():
            srcs = [r[0] for r in con.execute("SELECT source FROM generated_images WHERE set_name = ?", [set_name]).fetchall()]
            if srcs and train:
                value(fresh, srcs, set_name, k=K, recall=RECALL)
        return values_of(fresh.ledger)
    finally:
        fresh.close()


op = st.one_of(
    st.tuples(st.just("ingest"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("value"), st.integers(0, 2), st.sampled_from(["s1", "s2"])),
    st.tuples(st.just("forget_ids"), st.integers(0, 10_000), st.booleans()),
    st.tuples(st.just("forget_owner"), st.sampled_from(["a", "b", "c"]), st.booleans()),
    st.tuples(st.just("forget_generated"), st.integers(0, 10_000), st.sampled_from(["s1", "s2"])),
    st.tuples(st.just("forget_set"), st.sampled_from(["s1", "s2"]), st.just(None)),
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=st.lists(op, min_size=2, max_size=7))
def test_invariant_under_random_operations(tmp_path_factory, pools, ops):
    train, gen = pools
    root = tmp_path_factory.mktemp("inv")
    store = Store.init(root / "store", **BACKENDS)
    try:
        ingest(store, [str(train[0])], owner="a")
        for kind, a, b in ops:
            con = store.ledger
            if kind == "ingest":
                ingest(store, [str(train[a])], owner="abc"[a % 3])
                if b:
                    refresh(store)
            elif kind == "value":
                if con.execute("SELECT count(*) FROM training_images").fetchone()[0]:
                    value(store, [str(gen[a])], b, k=K, recall=RECALL)
            elif kind == "forget_ids":
                ids = [r[0] for r in con.execute("SELECT contributor_id FROM training_images ORDER BY 1").fetchall()]
                if len(ids) > 3:
                    forget_training(store, [ids[a % len(ids)], ids[(a * 7 + 1) % len(ids)]])
                    if b:
                        refresh(store)
            elif kind == "forget_owner":
                if con.execute("SELECT count(*) FROM training_images WHERE owner = ?", [a]).fetchone()[0]:
                    forget_training(store, owner=a)
                    if b:
                        refresh(store)
            elif kind == "forget_generated":
                ids = [r[0] for r in con.execute("SELECT generated_id FROM generated_images WHERE set_name = ? ORDER BY 1",
                                                 [b]).fetchall()]
                if ids:
                    forget_generated(store, b, [ids[a % len(ids)]])
            elif kind == "forget_set":
                if con.execute("SELECT count(*) FROM generated_sets WHERE set_name = ?", [a]).fetchone()[0]:
                    forget_set(store, a)
            refresh(store)
            report = verify(store, sample=None)
            assert report.ok, (kind, a, b, report.differences)
        expected = from_scratch(root / "scratch", store.ledger)
        got = values_of(store.ledger)
        assert got.keys() == expected.keys()
        for key in got:
            assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    finally:
        store.close()


def test_refresh_touches_only_affected(tmp_path, pools):
    train, gen = pools
    store = Store.init(tmp_path / "s", **BACKENDS)
    try:
        ingest(store, [str(t) for t in train[:5]], owner="a")
        value(store, [str(g) for g in gen], "s1", k=K, recall=RECALL)
        before = {r[0]: r[1] for r in store.ledger.execute("SELECT generated_id, valued_at FROM generated_images").fetchall()}
        r = ingest(store, [str(train[5])], owner="b")
        assert r.refresh is None
        assert verify(store, sample=None).differences[0].startswith("refresh due")
        rep = refresh(store)
        touched = len(rep.touched)
        assert 0 < touched <= len(before) and rep.changed <= touched and rep.merged + rep.rescored >= touched
        assert verify(store, sample=None).ok
    finally:
        store.close()
