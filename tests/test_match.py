"""`gmv match` and `GmvStore.match`: attribution of images in no set, by the same search as
valuation, with nothing written."""
import csv
import io
import json

import numpy as np
import pytest
from cli_helpers import invoke
from ui_store import build, fingerprint

import gmv_store
from gmv_store import api
from gmv_store.lock import WriterLock


@pytest.fixture(scope="module")
def small(tmp_path_factory, mnist_small):
    return build(tmp_path_factory.mktemp("match"), mnist_small)


def test_match_of_a_valued_image_equals_its_stored_top_k(small):
    """The same embedding, quality and two-stage search as `gmv value`: for an image valued in
    s1 (k=10, N=100) the match is its stored top-k, distances and credits included."""
    f = small["gen_files"][5]
    got = json.loads(invoke("match", f, "--k", 10, "--recall", 100, "--json", "--store", small["store"]).output)
    assert len(got) == 1
    m = got[0]
    stored = api.top(small["store"], [m["generated_id"]], set_name="s1")[0]
    assert m["valued_in"] == ["runs/a b", "s1"]  # the first 12 files are in both sets
    assert [c["contributor_id"] for c in m["contributors"]] == [c["contributor_id"] for c in stored["contributors"]]
    assert [c["distance"] for c in m["contributors"]] == pytest.approx([c["distance"] for c in stored["contributors"]],
                                                                       abs=1e-9)
    assert [c["credit"] for c in m["contributors"]] == pytest.approx([c["credit"] for c in stored["contributors"]],
                                                                     abs=1e-9)
    assert m["quality"] == stored["quality"] and (m["k"], m["recall"], m["exact"]) == (10, 100, False)
    assert set(m["contributors"][0]) == {"rank", "contributor_id", "distance", "credit", "label", "owner", "source"}


def test_match_writes_nothing(small):
    before = fingerprint(small["store"])
    counts = api.sql(small["store"], "SELECT (SELECT count(*) FROM generated), (SELECT count(*) FROM scores), "
                                     "(SELECT sum(value_sum) FROM contributor_values)")[1]
    invoke("match", small["root"] / "gen", "--k", 5, "--store", small["store"])
    gmv_store.open(small["store"]).match(small["gen_files"][:3], k=4)
    assert fingerprint(small["store"]) == before
    assert api.sql(small["store"], "SELECT (SELECT count(*) FROM generated), (SELECT count(*) FROM scores), "
                                   "(SELECT sum(value_sum) FROM contributor_values)")[1] == counts


def test_match_formats_and_skipped_inputs(small, tmp_path):
    files = small["gen_files"][:2]
    table = invoke("match", *files, "--k", 3, "--store", small["store"]).output
    assert table.count("image ") == 2 and "contributor_id" in table
    rows = list(csv.DictReader(io.StringIO(invoke("match", *files, "--k", 3, "--csv", "--store", small["store"]).output)))
    assert len(rows) == 6 and {r["image_source"] for r in rows} == {str(f) for f in files}
    assert [r["rank"] for r in rows] == ["1", "2", "3"] * 2
    junk = tmp_path / "notes.png"
    junk.write_text("not an image")
    r = invoke("match", junk, files[0], "--k", 2, "--json", "--store", small["store"], code=3)
    assert len(json.loads(r.stdout)) == 1 and f"skipped: {junk}" in r.stderr


def test_match_labels_and_arrays(small):
    r = json.loads(invoke("match", small["root"] / "gen", "--label-from", "parent", "--k", 1, "--json",
                       "--store", small["store"]).output)
    assert [m["label"] for m in r] == [f.parent.name for f in sorted(small["gen_files"])]
    arr = json.loads(invoke("match", f"{small['root'] / 'bob.npz'}#7", "--k", 1, "--json", "--store", small["store"]).output)
    # a training image finds itself at distance 0, with all the credit
    assert arr[0]["contributors"][0]["distance"] == pytest.approx(0, abs=1e-6) and arr[0]["contributors"][0]["owner"] == "bob"


def test_exact_reaches_every_query(small, monkeypatch):
    """--exact makes every search exhaustive; without it the recall search goes through the
    store's index (mode auto: HNSW with an ef) and only the re-rank among given ids is exact."""
    from gmv_store.vectors.edge import EdgeVectorStore

    seen = []
    real = EdgeVectorStore.query

    def spy(self, name, queries):
        seen.extend((q.using, q.exact, q.ef) for q in queries)
        return real(self, name, queries)

    monkeypatch.setattr(EdgeVectorStore, "query", spy)
    exact = api.match(small["store"], small["gen_files"][:2], k=5, exact=True).results
    assert seen and all(e for _, e, _ in seen)
    seen.clear()
    plain = api.match(small["store"], small["gen_files"][:2], k=5).results
    recall = [(e, ef) for using, e, ef in seen if using == "recall"]
    assert recall and all(not e and ef for e, ef in recall)
    assert all(e for using, e, _ in seen if using == "rerank")
    assert [r["contributors"] for r in exact] == [r["contributors"] for r in plain]  # 600 points: no graph yet


def test_exact_on_the_client_engine(tmp_path, mnist_small):
    x, y, xt, _ = mnist_small
    np.savez(tmp_path / "t.npz", images=x[:120], labels=y[:120])
    np.savez(tmp_path / "g.npz", images=xt[:2])
    s = tmp_path / "s"
    invoke("init", "--store", s, "--engine", "local")
    invoke("ingest", tmp_path / "t.npz", "--store", s)
    out = json.loads(invoke("match", f"{tmp_path / 'g.npz'}#1", "--k", 3, "--exact", "--json", "--store", s).output)
    assert len(out[0]["contributors"]) == 3 and out[0]["exact"] is True


def test_match_refusals(small, tmp_path):
    lock = WriterLock(small["store"])
    try:
        r = invoke("match", small["gen_files"][0], "--store", small["store"], code=1)
        assert r.output.startswith("Error: store") and "in use by pid" in r.output and "--wait" in r.output
    finally:
        lock.release()
    r = invoke("match", small["gen_files"][0], "--k", 10, "--recall", 5, "--store", small["store"], code=1)
    assert "Error: --recall 5: must be at least --k (10)" in r.output
    empty = tmp_path / "empty"
    invoke("init", "--store", empty)
    assert "no training images" in invoke("match", small["gen_files"][0], "--store", empty, code=1).output


def test_python_api_match_frame(small):
    df = gmv_store.open(small["store"]).match(small["gen_files"][:2], k=3)
    assert len(df) == 6 and list(df.columns[:4]) == ["source", "generated_id", "generated_label", "quality"]
    assert {"rank", "contributor_id", "distance", "credit", "owner"} <= set(df.columns)
