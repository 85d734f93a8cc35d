"""The CLI end to end on real MNIST data in a temporary store (basic backends, no torch)."""
import csv
import io
import json

import numpy as np
import pytest
from cli_helpers import run
from PIL import Image

from gmv_store.lock import WriterLock


@pytest.fixture
def valued(store_path, data_files):
    train, gen = data_files
    run("init", "--store", store_path, "-p", "embedder.size=16", "-p", "rerank.size=28")
    run("ingest", train, "--store", store_path, "--owner", "alice", "--meta", "licence=cc-by")
    run("value", gen, "--set", "s1", "--k", "10", "--store", store_path)
    return store_path


def sql(store, q):
    return json.loads(run("sql", q, "--store", store, "--json"))


def test_ingest_value_lookup_end_to_end(valued, data_files, mnist_small):
    s = valued
    x, y, xt, yt = mnist_small
    assert sql(s, "SELECT count(*) AS n FROM contributors")[0]["n"] == len(x)
    assert sql(s, "SELECT count(*) AS n FROM generated")[0]["n"] == len(xt)
    # Sum of credits per generated image is q_j = 1; values sum to 1 over the set (mean of q).
    per = sql(s, "SELECT generated_id, sum(credit) AS c, count(*) AS n FROM scores GROUP BY 1")
    assert all(abs(r["c"] - 1.0) < 1e-9 and r["n"] == 10 for r in per)
    tot = sql(s, "SELECT sum(value) AS v, sum(value_sum) AS vs FROM contributor_values WHERE set_name = 's1'")[0]
    assert tot["v"] == pytest.approx(1.0) and tot["vs"] == pytest.approx(len(xt))
    # values equal the mean of credits over the m generated images
    check = sql(s, "SELECT max(abs(v.value - c.total / 40.0)) AS err FROM contributor_values v "
                   "JOIN (SELECT contributor_id, sum(credit) AS total FROM scores GROUP BY 1) c USING (contributor_id)")
    assert check[0]["err"] < 1e-12
    # labels flow from the npz; real MNIST gives a high identical-class ratio even with pixels
    rho = sql(s, "SELECT avg((c.label = g.label)::INT) AS rho FROM scores JOIN generated g USING (set_name, generated_id) "
                 "JOIN contributors c USING (contributor_id)")[0]["rho"]
    assert rho > 0.7
    # metadata and owner recorded
    row = sql(s, "SELECT owner, meta FROM contributors LIMIT 1")[0]
    assert row["owner"] == "alice" and json.loads(row["meta"]) == {"licence": "cc-by"}


def test_reingest_and_revalue_add_nothing(valued, data_files):
    train, gen = data_files
    out = run("ingest", train, "--store", valued)
    assert "ingested 0 new" in out and "600 already stored" in out
    out = run("value", gen, "--set", "s1", "--k", "10", "--store", valued)
    assert "valued 0 generated" in out and "40 already in it" in out
    assert sql(valued, "SELECT m FROM sets")[0]["m"] == 40
    assert sql(valued, "SELECT sum(value_sum) AS v FROM contributor_values")[0]["v"] == pytest.approx(40)


def test_set_parameters_are_fixed(valued, data_files):
    _, gen = data_files
    out = run("value", gen, "--set", "s1", "--k", "20", "--store", valued, code=1)
    assert "Error: set 's1' was valued with --k 10" in out


def test_top_formats(valued, data_files):
    _, gen = data_files
    data = json.loads(run("top", f"{gen}#0", "--store", valued, "--json"))
    assert len(data) == 1 and len(data[0]["contributors"]) == 10
    c = data[0]["contributors"]
    assert [r["rank"] for r in c] == list(range(1, 11))
    assert all(a["distance"] <= b["distance"] for a, b in zip(c, c[1:]))
    gid = data[0]["generated_id"]
    by_id = json.loads(run("top", gid, "--store", valued, "--json", "--limit", "3"))
    assert [r["contributor_id"] for r in by_id[0]["contributors"]] == [r["contributor_id"] for r in c[:3]]
    rows = list(csv.DictReader(io.StringIO(run("top", gid, "--store", valued, "--csv"))))
    assert len(rows) == 10 and rows[0]["generated_id"] == gid
    table = run("top", gid, "--store", valued)
    assert f"generated {gid}" in table and "contributor_id" in table


def test_contributor_values_status(valued):
    lb = json.loads(run("values", "--set", "s1", "--store", valued, "--json", "--limit", "5"))
    assert len(lb) == 5 and lb[0]["rank"] == 1 and lb[0]["value"] >= lb[-1]["value"]
    info = json.loads(run("contributor", lb[0]["contributor_id"], "--store", valued, "--json"))[0]
    assert info["sets"][0]["rank"] == 1 and info["sets"][0]["value"] == pytest.approx(lb[0]["value"])
    assert info["top_generated"]
    owners = json.loads(run("values", "--set", "s1", "--by", "owner", "--store", valued, "--json"))
    assert owners == [pytest.approx({**owners[0], "value": 1.0})] and owners[0]["owner"] == "alice"
    st = json.loads(run("status", "--store", valued, "--json"))[0]
    assert st["training_images"] == 600 and st["sets"][0]["generated"] == 40 and st["pending_journal"] == 0
    assert "pixels" in st["embedder"]
    assert run("values", "--set", "s1", "--store", valued, "--csv").startswith("rank,contributor_id,value")


@pytest.mark.parametrize(
    "q",
    [
        "INSERT INTO credits VALUES ('a','b','c',1,0,0)",
        "DELETE FROM credits",
        "COPY credits TO 'x.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_text('/etc/hostname')",
        "ATTACH 'other.duckdb'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "SET enable_external_access = true",
        "SELECT 1; DROP VIEW scores",
        "PRAGMA database_list",
        "CREATE TABLE t AS SELECT 1",
    ],
)
def test_sql_refusals(valued, q):
    out = run("sql", q, "--store", valued, code=1)
    assert out.startswith("Error: ") and out.count("\n") == 1
    assert sql(valued, "SELECT count(*) AS n FROM scores")[0]["n"] == 400  # nothing changed


def test_sql_stdin_and_params(valued):
    out = run("sql", "--store", valued, "--json", "-p", "s1", input="SELECT m FROM sets WHERE set_name = ?")
    assert json.loads(out) == [{"m": 40}]


def test_bad_inputs_reported_good_ones_kept(tmp_path, store_path, mnist_small):
    x, y, *_ = mnist_small
    d = tmp_path / "mixed" / "7"
    d.mkdir(parents=True)
    for i in range(5):
        Image.fromarray(x[i]).save(d / f"ok{i}.png")
    (d / "empty.png").write_bytes(b"")
    (d / "text.png").write_text("not an image")
    (d / "trunc.png").write_bytes((d / "ok0.png").read_bytes()[:60])
    Image.new("L", (1, 1)).save(d / "tiny.png")
    (d / "notes.txt").write_text("ignored")
    np.save(tmp_path / "wrong.npy", np.zeros((3, 5), np.float32))
    np.savez(tmp_path / "nokey.npz", pictures=x[:2])
    run("init", "--store", store_path)
    out = run("ingest", tmp_path / "mixed", tmp_path / "wrong.npy", tmp_path / "nokey.npz", "mnist:nope",
              tmp_path / "missing.png", "--label-from", "parent", "--store", store_path, code=3)
    skipped = [line for line in out.splitlines() if line.startswith("skipped: ")]
    assert len(skipped) == 8, out
    for name in ("empty.png", "text.png", "trunc.png", "tiny.png", "wrong.npy", "nokey.npz", "mnist:nope", "missing.png"):
        assert sum(name in line for line in skipped) == 1, name
    assert "ingested 5 new" in out and "1 non-image files ignored" in out
    rows = sql(store_path, "SELECT label FROM contributors")
    assert [r["label"] for r in rows] == ["7"] * 5


def test_locked_store_one_line_error(valued, data_files):
    lock = WriterLock(valued)
    try:
        out = run("ingest", data_files[0], "--store", valued, code=1)
        assert out.startswith("Error: store ") and "in use by pid" in out and "--wait" in out
    finally:
        lock.release()


def test_missing_store_and_unknown_backend(tmp_path):
    out = run("ingest", "mnist:test", "--store", tmp_path / "nope", code=1)
    assert "no gmv store here" in out and "gmv init" in out
    out = run("init", "--store", tmp_path / "s", "--embedder", "nosuch", code=1)
    assert "unknown embedder 'nosuch'" in out and "pixels" in out
    assert not (tmp_path / "s").exists()


def test_init_mismatch_refused(store_path):
    run("init", "--store", store_path)
    run("init", "--store", store_path)  # same backends: fine
    out = run("init", "--store", store_path, "-p", "rerank.size=16", code=1)
    assert "already holds a store" in out


def test_value_before_ingest(store_path, data_files):
    run("init", "--store", store_path)
    out = run("value", data_files[1], "--set", "x", "--store", store_path, code=1)
    assert "no training images" in out


def test_migrate_list(valued):
    rows = json.loads(run("migrate", "--list", "--store", valued, "--json"))
    assert rows and all(r["state"] == "applied" for r in rows)
    assert "all" in run("migrate", "--store", valued)


def test_incremental_commands(valued, tmp_path, mnist_small):
    x, y, xt, yt = mnist_small
    extra = tmp_path / "extra.npz"
    np.savez(extra, images=np.ascontiguousarray(x[:, ::-1]), labels=y)  # mirrored digits: new content
    out = run("ingest", extra, "--owner", "bob", "--no-refresh", "--store", valued)
    assert "refresh deferred" in out
    assert "refresh due: yes" in run("status", "--store", valued)
    out = run("verify", "--store", valued, code=1)
    assert "difference: refresh due" in out
    out = run("refresh", "--store", valued)
    assert out.startswith("re-scored ") and "of 40 generated images in 1 set" in out
    assert "refresh due: no" in run("status", "--store", valued)
    assert run("verify", "--full", "--store", valued).startswith("ok: ")
    out = run("forget", "--owner", "bob", "--store", valued)
    assert "forgot 600 training images" in out
    assert run("verify", "--full", "--store", valued).startswith("ok: ")
    gone = sql(valued, "SELECT kind, selector, n_images FROM forgotten")
    assert gone == [{"kind": "training", "selector": "--owner bob", "n_images": 600}]
    assert sql(valued, "SELECT count(*) AS n FROM contributors WHERE owner = 'bob'")[0]["n"] == 0
    gid = sql(valued, "SELECT generated_id FROM generated ORDER BY 1 LIMIT 1")[0]["generated_id"]
    run("forget-generated", gid, "--set", "s1", "--store", valued)
    assert sql(valued, "SELECT m FROM sets")[0]["m"] == 39
    assert sql(valued, "SELECT sum(value) AS v FROM contributor_values")[0]["v"] == pytest.approx(1.0)
    out = run("forget", "deadbeefdeadbeef", "--store", valued, code=1)
    assert "not in the store" in out and "nothing was removed" in out
    run("forget-set", "s1", "--store", valued)
    assert sql(valued, "SELECT count(*) AS n FROM sets")[0]["n"] == 0
    assert run("verify", "--full", "--store", valued).startswith("ok: ")


@pytest.mark.parametrize("name", ["a\nb", "tab\there", "bell\x07", ""])
def test_set_names_must_be_one_printable_line(valued, data_files, name):
    out = run("value", data_files[1], "--set", name, "--store", valued, code=1)
    assert out.startswith("Error: --set") and out.count("\n") == 1
    assert sql(valued, "SELECT count(*) AS n FROM sets")[0]["n"] == 1  # nothing made


def test_verify_names_the_first_differing_rank(valued):
    """A credit row changed behind gmv's back: verify says where the lists part, with both ids."""
    import duckdb

    gid, first, second = sql(valued, "SELECT generated_id, list(contributor_id ORDER BY rank)[1] AS a, "
                                     "list(contributor_id ORDER BY rank)[2] AS b FROM scores GROUP BY 1 LIMIT 1")[0].values()
    con = duckdb.connect(str(valued / "ledger.duckdb"))
    con.execute("UPDATE credits SET contributor_id = CASE rank WHEN 1 THEN ? ELSE ? END "
                "WHERE generated_id = ? AND rank <= 2", [second, first, gid])
    con.close()
    out = run("verify", "--full", "--store", valued, code=1)
    assert f"generated {gid} differs from a recompute at rank 1: stored {second}, recomputed {first}" in out
