"""`gmv export`: a set's values, scores and generated rows and the contributors as Parquet or
CSV files written by DuckDB, equal to what the views hold; nothing in the store changes."""
import json

import duckdb
import pytest
from cli_helpers import invoke
from ui_store import SLASH_SET, build, fingerprint

import gmv_store
from gmv_store import api
from gmv_store.lock import WriterLock


@pytest.fixture(scope="module")
def small(tmp_path_factory, mnist_small):
    return build(tmp_path_factory.mktemp("export"), mnist_small)


def view(store, sql, params=()):
    cols, rows = api.sql(store, sql, list(params))
    return [dict(zip(cols, r)) for r in rows]


def read_file(path):
    con = duckdb.connect()
    fn = "read_parquet" if path.suffix == ".parquet" else "read_csv_auto"
    cur = con.execute(f"SELECT * FROM {fn}(?)", [str(path)])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def test_parquet_export_equals_the_views(small, tmp_path):
    s, out = small["store"], tmp_path / "out"
    before = fingerprint(s)
    r = invoke("export", "--set", "s1", "--out", out, "--store", s)
    assert "values.parquet" in r.output and "manifest.json" in r.output
    values = read_file(out / "values.parquet")
    want = view(s, "SELECT contributor_id, value, value_sum, n_credits FROM contributor_values WHERE set_name = 's1'")
    assert sorted((v["contributor_id"], v["value"], v["value_sum"], v["n_credits"]) for v in values) == \
        sorted((w["contributor_id"], w["value"], w["value_sum"], w["n_credits"]) for w in want)
    assert [v["rank"] for v in values] == list(range(1, len(values) + 1))
    assert [v["contributor_id"] for v in values[:20]] == [w["contributor_id"] for w in api.values(s, "s1", limit=20)]
    scores = read_file(out / "scores.parquet")
    assert len(scores) == 40 * 10 and {x["set_name"] for x in scores} == {"s1"}
    assert sorted((x["generated_id"], x["rank"], x["contributor_id"], x["credit"]) for x in scores) == sorted(
        (x["generated_id"], x["rank"], x["contributor_id"], x["credit"]) for x in view(s, "SELECT * FROM scores WHERE set_name = 's1'"))
    gen = read_file(out / "generated.parquet")
    assert len(gen) == 40 and {g["label"] for g in gen} == set(small["labels"])
    contributors = read_file(out / "contributors.parquet")
    assert len(contributors) == 600 and {c["owner"] for c in contributors} == {"alice", "bob"}
    m = json.loads((out / "manifest.json").read_text())
    assert (m["set_name"], m["k"], m["recall"], m["m"]) == ("s1", 10, 100, 40)
    assert {k: v["rows"] for k, v in m["files"].items()} == {"values": len(values), "scores": 400, "generated": 40,
                                                             "contributors": 600}
    assert m["backends"]["embedder"].startswith("pixels") and m["read_from_snapshot"] is False
    assert fingerprint(s) == before


def test_csv_export_refuses_to_overwrite_without_force(small, tmp_path):
    s, out = small["store"], tmp_path / "csv"
    invoke("export", "--set", SLASH_SET, "--out", out, "--format", "csv", "--store", s)
    rows = read_file(out / "scores.csv")
    assert len(rows) == 12 * 5 and rows[0]["set_name"] == SLASH_SET
    r = invoke("export", "--set", SLASH_SET, "--out", out, "--format", "csv", "--store", s, code=1)
    assert r.output.startswith("Error: ") and "exists" in r.output and "--force" in r.output
    invoke("export", "--set", SLASH_SET, "--out", out, "--format", "csv", "--force", "--store", s)
    assert not list(out.glob("*.tmp"))


def test_export_unknown_set_and_bad_folder(small, tmp_path):
    r = invoke("export", "--set", "nope", "--out", tmp_path / "x", "--store", small["store"], code=1)
    assert "set 'nope' does not exist" in r.output and "s1" in r.output
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = invoke("export", "--set", "s1", "--out", blocker / "sub", "--store", small["store"], code=1)
    assert r.output.startswith("Error: --out")


def test_export_while_a_writer_runs_reads_the_snapshot(small, tmp_path):
    lock = WriterLock(small["store"])
    try:
        m = gmv_store.open(small["store"]).export("s1", tmp_path / "snap")
    finally:
        lock.release()
    assert m["read_from_snapshot"] is True and m["files"]["generated"]["rows"] == 40
