"""A store missing its ledger or a vector collection is refused by every command with one
line naming the part and the fix; only `gmv init` creates a ledger; `gmv repair` brings the
part back and `gmv verify --full` passes with the values as before."""
import json
import shutil

import numpy as np
import pytest
from cli_helpers import run
from click.testing import CliRunner
from sparse_copy import copy_store

from gmv_store.cli import cli


@pytest.fixture(scope="module")
def base(tmp_path_factory, mnist_small):
    x, y, xt, yt = mnist_small
    d = tmp_path_factory.mktemp("damaged")
    np.savez(d / "train.npz", images=x, labels=y)
    np.savez(d / "gen.npz", images=xt, labels=yt)
    store = d / "base"
    run("init", "--store", store, "-p", "embedder.size=8", "-p", "rerank.size=14")
    run("ingest", d / "train.npz", "--store", store, "--owner", "alice")
    run("value", d / "gen.npz", "--set", "s1", "--k", "5", "--recall", "20", "--store", store)
    run("forget", json.loads(run("values", "--set", "s1", "--store", store, "--json"))[0]["contributor_id"],
        "--store", store)
    return d


def copy(base, tmp_path):
    return copy_store(base / "base", tmp_path / "s")


def values(store):
    rows = json.loads(run("sql", "SELECT set_name, contributor_id, value_sum FROM contributor_values", "--store",
                          store, "--json"))
    return {(r["set_name"], r["contributor_id"]): r["value_sum"] for r in rows}


def every_command(store, base):
    return [
        ("init", "--store", store, "-p", "embedder.size=8", "-p", "rerank.size=14"),
        ("ingest", base / "train.npz", "--store", store),
        ("value", base / "gen.npz", "--set", "s1", "--k", "5", "--recall", "20", "--store", store),
        ("refresh", "--store", store), ("verify", "--store", store), ("status", "--store", store),
        ("values", "--set", "s1", "--store", store), ("sql", "SELECT 1", "--store", store),
        ("forget", "--owner", "alice", "--store", store), ("forget-set", "s1", "--store", store),
        ("migrate", "--store", store), ("migrate", "--list", "--store", store),
    ]


def assert_refused(store, base, *words):
    for args in every_command(store, base):
        out = run(*args, code=1)
        assert out.startswith("Error: ") and out.count("\n") == 1, (args, out)
        assert all(w in out for w in words), (args, out)


@pytest.mark.parametrize("snapshot", [True, False], ids=["from-snapshot", "from-payloads"])
def test_deleted_ledger_refused_then_repaired(base, tmp_path, snapshot):
    store = copy(base, tmp_path)
    before = values(store)
    (store / "ledger.duckdb").unlink()
    if not snapshot:
        (store / "ledger.snapshot.duckdb").unlink()
    assert_refused(store, base, "ledger", "is missing", "gmv repair")
    assert not (store / "ledger.duckdb").exists()  # nothing recreated it
    out = run("repair", "--store", store)
    assert ("read snapshot" in out) == snapshot and ("vector payloads" in out) != snapshot
    assert run("verify", "--full", "--store", store).startswith("ok: ")
    after = values(store)
    assert after.keys() == before.keys()
    assert all(after[k] == pytest.approx(before[k], abs=1e-9) for k in before)
    n_forgotten = json.loads(run("sql", "SELECT count(*) AS n FROM forgotten", "--store", store, "--json"))[0]["n"]
    assert n_forgotten == (1 if snapshot else 0)  # the audit log lives only in the ledger


def test_truncated_ledger_refused_then_repaired(base, tmp_path):
    store = copy(base, tmp_path)
    before = values(store)
    led = store / "ledger.duckdb"
    led.write_bytes(led.read_bytes()[:4096])
    assert_refused(store, base, "ledger", "gmv repair")
    out = run("repair", "--store", store)
    assert "kept the damaged ledger aside" in out
    assert list(store.glob("ledger.duckdb.damaged-*"))
    assert run("verify", "--full", "--store", store).startswith("ok: ")
    assert values(store).keys() == before.keys()


@pytest.mark.parametrize("collection", ["training", "generated"])
def test_deleted_collection_refused_then_reembedded(base, tmp_path, collection):
    store = copy(base, tmp_path)
    before = values(store)
    shutil.rmtree(store / "qdrant-edge" / collection)
    r = CliRunner().invoke(cli, ["status", "--store", str(store)])
    assert r.exit_code == 0 and f"warning: vector collection '{collection}' is missing" in r.output
    for args in every_command(store, base):
        if args[0] in ("status", "values", "sql") or args[:2] == ("migrate", "--list"):
            continue  # readers read the ledger; status warns (above)
        out = run(*args, code=1)
        assert out.count("\n") == 1 and f"vector collection '{collection}' is missing" in out and "gmv repair" in out
    out = run("repair", "--store", store)
    assert "re-embedded" in out and "re-matched" in out
    assert run("verify", "--full", "--store", store).startswith("ok: ")
    after = values(store)
    assert after.keys() == before.keys() and all(after[k] == pytest.approx(before[k], abs=1e-9) for k in before)


def test_repair_of_a_whole_store_changes_nothing(base, tmp_path):
    store = copy(base, tmp_path)
    assert run("repair", "--store", store).startswith("nothing to repair")


def test_store_copy_keeps_holes_and_bytes(base, tmp_path):
    """The helper the tests copy stores with: the same bytes, without writing Qdrant's holes out."""
    src = base / "base"
    dst = copy_store(src, tmp_path / "c")
    files = [p for p in src.rglob("*") if p.is_file()]
    assert files and all((dst / p.relative_to(src)).read_bytes() == p.read_bytes() for p in files)
    used = sum(p.stat().st_blocks * 512 for p in dst.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in files)
    assert used < size / 4, (used, size)
