"""The same calls on both embedded engines give the same results (qdrant-client's local
mode runs the client code path a Qdrant server uses), and a live server when one is given."""
import os

import numpy as np
import pytest

from gmv_store.errors import StoreMismatch
from gmv_store.vectors import Query, VectorSpec, point_id
from gmv_store.vectors.client import ClientVectorStore
from gmv_store.vectors.edge import EdgeVectorStore

SPEC = {"recall": VectorSpec(16, "cosine"), "rerank": VectorSpec(32, "euclid")}


def fill(vs, n=300, seed=0):
    rng = np.random.default_rng(seed)
    ids = [point_id(f"{i:016x}") for i in range(1, n + 1)]
    vecs = {"recall": rng.normal(size=(n, 16)).astype(np.float32), "rerank": rng.random((n, 32), dtype=np.float32)}
    vs.ensure_collection("training", SPEC)
    vs.upsert("training", ids, vecs, [{"i": i} for i in range(n)])
    return ids, vecs


def engines(tmp_path):
    out = [EdgeVectorStore(tmp_path / "edge"), ClientVectorStore(path=tmp_path / "local")]
    url = os.environ.get("GMV_TEST_QDRANT_URL")
    if url:
        out.append(ClientVectorStore(url=url, prefix=f"gmvtest{os.getpid()}"))
    return out


def test_engines_agree(tmp_path):
    results = []
    for vs in engines(tmp_path):
        ids, vecs = fill(vs)
        qs = [Query({"recall": vecs["recall"][i] + 0.01}, using="recall", limit=7) for i in range(5)]
        two = [Query({"rerank": vecs["rerank"][i]}, using="rerank", limit=3, only_ids=tuple(ids[:50])) for i in range(5)]
        excl = [Query({"recall": vecs["recall"][0]}, using="recall", limit=3, exclude_ids=(ids[0],))]
        thr = [Query({"rerank": vecs["rerank"][0]}, using="rerank", limit=300, score_threshold=1.2)]
        vs.delete("training", ids[-10:])
        results.append({
            "q": vs.query("training", qs), "two": vs.query("training", two), 
            "excl": vs.query("training", excl), "thr": vs.query("training", thr),
            "count": vs.count("training"), "ids": vs.ids("training"),
            "vec": vs.vectors("training", ids[:3], "rerank"),
        })
        vs.close()
    first = results[0]
    assert len(results) >= 2
    # only_ids restricts the search: every hit is among the first 50 ids
    assert all(p in set(ids[:50]) for h in first["two"] for p, _ in h)
    for other in results[1:]:
        for key in ("q", "two", "excl", "thr"):
            assert [[p for p, _ in h] for h in first[key]] == [[p for p, _ in h] for h in other[key]], key
            for a, b in zip(first[key], other[key]):
                assert np.allclose([s for _, s in a], [s for _, s in b], atol=1e-4), key
        assert first["count"] == other["count"] == 290 and first["ids"] == other["ids"]
        assert np.allclose(first["vec"], other["vec"])


def test_payload_range_and_stored_vectors_as_queries(tmp_path):
    """Picking points by a range on an indexed integer payload finds exactly those points,
    with the scores a filter on their ids gives, on both engines; stored vectors handed back
    as lists query exactly like the arrays."""
    for vs in engines(tmp_path)[:2]:
        ids, vecs = fill(vs)
        late = ids[-40:]
        vs.upsert("training", late, {k: v[-40:] for k, v in vecs.items()}, [{"seq": 1_700_000_000_000_000 + i} for i in range(40)])
        vs.ensure_payload_index("training", "seq")
        vs.ensure_payload_index("training", "seq")  # idempotent
        assert vs.count("training", payload_from=("seq", 1_700_000_000_000_000)) == 40
        assert vs.count("training", payload_from=("seq", 1_700_000_000_000_030)) == 10
        q = vs.vector_lists("training", ids[:5], "recall")
        assert isinstance(q[0], list) and np.allclose(q, vs.vectors("training", ids[:5], "recall"))
        by_range = vs.query("training", [Query({"recall": v}, using="recall", limit=40, exact=True,
                                               payload_from=("seq", 1_700_000_000_000_000)) for v in q])
        by_ids = vs.query("training", [Query({"recall": v}, using="recall", limit=40, exact=True,
                                             only_ids=tuple(late)) for v in vs.vectors("training", ids[:5], "recall")])
        assert [[p for p, _ in h] for h in by_range] == [[p for p, _ in h] for h in by_ids]
        assert all(len(h) == 40 for h in by_range)
        if vs.engine == "edge":  # Qdrant's engine scores a pair the same whatever picked it
            assert by_range == by_ids
        else:  # local mode scores in numpy batches: the last bits depend on the batch
            assert np.allclose([s for h in by_range for _, s in h], [s for h in by_ids for _, s in h], atol=1e-6)
        vs.close()


def test_threshold_and_exclusion_semantics(tmp_path):
    vs = EdgeVectorStore(tmp_path / "edge")
    ids, vecs = fill(vs)
    hits = vs.query("training", [Query({"rerank": vecs["rerank"][0]}, using="rerank", limit=300, score_threshold=1.2)])[0]
    assert hits and all(s <= 1.2 for _, s in hits)  # euclid: a maximum distance
    hits = vs.query("training", [Query({"recall": vecs["recall"][0]}, using="recall", limit=5, exclude_ids=(ids[0],))])[0]
    assert ids[0] not in [p for p, _ in hits]
    vs.close()


def test_dimension_mismatch_is_refused(tmp_path):
    for vs in engines(tmp_path)[:2]:
        fill(vs)
        with pytest.raises(StoreMismatch, match="holds vectors"):
            vs.ensure_collection("training", {"recall": VectorSpec(8, "cosine")})
        vs.close()


@pytest.mark.server
@pytest.mark.skipif(not os.environ.get("GMV_TEST_QDRANT_URL"), reason="needs a live Qdrant server: set GMV_TEST_QDRANT_URL (docker compose up)")
def test_live_server_round_trip(tmp_path):
    vs = ClientVectorStore(url=os.environ["GMV_TEST_QDRANT_URL"], prefix=f"gmvtest{os.getpid()}")
    ids, vecs = fill(vs, n=20)
    assert vs.count("training") == 20
    vs.client.delete_collection(f"gmvtest{os.getpid()}_training")


def test_server_layout_carries_index_and_cluster_settings(tmp_path):
    """What a server or cluster is asked to create: a graph on "recall" only, int8 there,
    and the shard/replica/consistency/on-disk layout from store.json."""
    from gmv_store.config import IndexConfig

    vs = ClientVectorStore(path=tmp_path / "local")
    try:
        index = IndexConfig(mode="hnsw", hnsw_m=32, quantization="int8", shard_number=6, replication_factor=2,
                            write_consistency_factor=1, on_disk_vectors=True)
        out = vs._layout(SPEC, index)
        assert (out["shard_number"], out["replication_factor"], out["write_consistency_factor"]) == (6, 2, 1)
        assert out["hnsw_config"].m == 32 and out["on_disk_payload"] is True
        recall, rerank = out["vectors_config"]["recall"], out["vectors_config"]["rerank"]
        assert recall.hnsw_config is None and rerank.hnsw_config.m == 0  # only recall gets a graph
        assert recall.quantization_config.scalar.type == vs.models.ScalarType.INT8 and rerank.quantization_config is None
        assert recall.on_disk and rerank.on_disk
        exact = vs._layout(SPEC, index.model_copy(update={"mode": "exact"}))
        assert exact["vectors_config"]["recall"].hnsw_config.m == 0 and "hnsw_config" not in exact
    finally:
        vs.close()


@pytest.mark.server
@pytest.mark.skipif(not os.environ.get("GMV_TEST_QDRANT_URL"), reason="needs a live Qdrant server: set GMV_TEST_QDRANT_URL (docker compose up)")
def test_pipeline_on_a_live_server(tmp_path, mnist_small):
    """The whole pipeline against a server: indexed collections, refresh, forget, verify."""
    from click.testing import CliRunner

    from gmv_store.cli import cli

    def run(*args):
        r = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return r.output

    x, y, xt, yt = mnist_small
    np.savez(tmp_path / "a.npz", images=x[:300], labels=y[:300])
    np.savez(tmp_path / "b.npz", images=x[300:], labels=y[300:])
    np.savez(tmp_path / "g.npz", images=xt, labels=yt)
    s, prefix = tmp_path / "s", f"gmvtest{os.getpid()}"
    run("init", "--store", s, "--qdrant-url", os.environ["GMV_TEST_QDRANT_URL"], "--collection-prefix", prefix,
        "--index", "hnsw", "--shards", "2", "-p", "embedder.size=8", "-p", "rerank.size=14")
    try:
        run("ingest", tmp_path / "a.npz", "--owner", "a", "--store", s)
        run("value", tmp_path / "g.npz", "--set", "s1", "--k", "5", "--recall", "20", "--store", s)
        run("ingest", tmp_path / "b.npz", "--owner", "b", "--store", s)
        assert run("verify", "--full", "--store", s).startswith("ok: ")
        run("forget", "--owner", "a", "--store", s)
        assert run("verify", "--full", "--store", s).startswith("ok: ")
    finally:
        vs = ClientVectorStore(url=os.environ["GMV_TEST_QDRANT_URL"], prefix=prefix)
        for c in ("training", "generated"):
            vs.client.delete_collection(f"{prefix}_{c}")
        vs.close()


def test_edge_keeps_vectors_bit_for_bit(tmp_path):
    """The edge facade hands the engine float32 rows as arrays: what comes back is the same
    bits (extreme and tiny values included), each row its own, none shifted."""
    vs = EdgeVectorStore(tmp_path / "edge")
    ids, vecs = fill(vs, n=50, seed=3)
    vecs["rerank"][7, :4] = [3.4e38, -1.2e-38, 1e-45, -0.0]
    vs.upsert("training", ids[7:8], {k: v[7:8] for k, v in vecs.items()}, [{"i": 7}])
    for name in SPEC:
        got = vs.vectors("training", ids, name)
        want = vecs[name]
        if name == "recall":  # cosine vectors are stored normalised
            want = want / np.linalg.norm(want, axis=1, keepdims=True)
            assert np.allclose(got, want, atol=1e-6)
        else:
            assert got.dtype == np.float32 and got.tobytes() == want.tobytes()
    vs.close()


def test_query_arrays_are_the_hits_laid_end_to_end(tmp_path):
    """Each engine's `query_arrays` (edge fills them straight from the engine's results, the
    client through `query`) equals its `query`, hit for hit, queries with no hit included."""
    for vs in engines(tmp_path):
        ids, vecs = fill(vs)
        qs = [Query({"rerank": vecs["rerank"][i]}, using="rerank", limit=4, only_ids=tuple(ids[10 * i:10 * i + 6]),
                    exact=True) for i in range(6)]
        qs.append(Query({"rerank": vecs["rerank"][0]}, using="rerank", limit=5, score_threshold=-1.0))  # no distance below 0
        hits = vs.query("training", qs)
        got_ids, got_scores, count = vs.query_arrays("training", qs)
        assert count.tolist() == [len(h) for h in hits] and count[-1] == 0 and count[:-1].min() == 4
        assert got_ids.dtype == np.uint64 and got_ids.tolist() == [p for h in hits for p, _ in h]
        assert got_scores.tolist() == [s for h in hits for _, s in h]
        empty = vs.query_arrays("training", [])
        assert [len(a) for a in empty] == [0, 0, 0]
        vs.close()
