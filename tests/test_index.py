"""The training collection's HNSW index: built at the end of ingest and by `gmv index`,
searched with an ef derived from N, reported by `gmv status`, bypassed by `--exact`; refresh,
forget and verify keep stored matches equal to what the store's own search returns; a killed
build leaves a store that answers, and the next run finishes it."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from cli_helpers import run
from click.testing import CliRunner

from gmv_store.cli import cli
from tests.test_incremental import tie_variants


def collections(store):
    return json.loads(run("status", "--store", store, "--json"))[0]["collections"]


def tops(store, set_name):
    rows = json.loads(run("sql", "SELECT generated_id, list(contributor_id ORDER BY rank) AS c FROM scores "
                                 "WHERE set_name = ? GROUP BY 1", "-p", set_name, "--store", store, "--json"))
    return {r["generated_id"]: r["c"] for r in rows}


def test_hnsw_store_end_to_end(tmp_path, mnist_small):
    x, y, xt, yt = mnist_small
    np.savez(tmp_path / "train.npz", images=x, labels=y)
    np.savez(tmp_path / "gen.npz", images=xt, labels=yt)
    gray, _ = tie_variants(xt[:10], seed=3)
    np.savez(tmp_path / "ties.npz", images=gray)
    s = tmp_path / "s"
    out = run("init", "--store", s, "--index", "hnsw", "-p", "embedder.size=8", "-p", "rerank.size=14")
    assert "index hnsw (m 16, ef_construct 100, quantization none)" in out
    out = run("ingest", tmp_path / "train.npz", "--owner", "a", "--store", s)
    assert "index: built in" in out and "(600 of 600 points indexed)" in out
    c = collections(s)
    assert c["training"] == {"points": 600, "indexed_points": 600, "index": "hnsw", "quantization": "none"}
    assert c["generated"]["index"] == "none"
    run("value", tmp_path / "gen.npz", "--set", "hnsw", "--k", "5", "--recall", "50", "--store", s)
    run("value", tmp_path / "gen.npz", "--set", "exact", "--k", "5", "--recall", "50", "--exact", "--store", s)
    out = run("value", tmp_path / "gen.npz", "--set", "exact", "--k", "5", "--recall", "50", "--store", s, code=1)
    assert "--exact" in out  # a set keeps its search like its k and N
    a, b = tops(s, "hnsw"), tops(s, "exact")
    overlap = np.mean([len(set(a[g]) & set(b[g])) / 5 for g in a])
    assert overlap >= 0.95, overlap
    assert run("verify", "--full", "--store", s).startswith("ok: ")
    # new images that tie with generated ones: the index is rebuilt and every match re-checked
    out = run("ingest", tmp_path / "ties.npz", "--owner", "b", "--store", s)
    assert "stored matches queued to be checked" in out and "re-scored 80 of 80" in out
    assert run("verify", "--full", "--store", s).startswith("ok: ")
    run("forget", "--owner", "b", "--store", s)
    assert run("verify", "--full", "--store", s).startswith("ok: ")
    assert "index: up to date" in run("index", "--store", s)
    # other settings: recorded, the segments rebuilt, every match re-checked
    out = run("index", "--quantization", "int8", "--hnsw-m", "8", "--store", s)
    assert "index: built in" in out and "queued to be checked" in out
    assert collections(s)["training"]["quantization"] == "int8"
    assert json.loads((s / "store.json").read_text())["index"]["hnsw_m"] == 8
    assert run("verify", "--full", "--store", s).startswith("ok: ")


def test_auto_indexes_a_segment_past_the_threshold(tmp_path, mnist_small):
    import gmv_store.api as api

    x, y, *_ = mnist_small
    np.savez(tmp_path / "a.npz", images=x[:200])
    np.savez(tmp_path / "b.npz", images=x[200:])
    s = tmp_path / "s"
    api.init_store(s, params={"embedder": {"size": 8}, "rerank": {"size": 14}}, index={"mode": "auto", "auto_points": 300})
    r = api.ingest(s, [tmp_path / "a.npz"])
    assert not r.index.changed and r.index.indexed_points == 0  # 200 points: below the threshold, searched exactly
    r = api.ingest(s, [tmp_path / "b.npz"])
    assert r.index.changed and r.index.indexed_points >= 300
    assert collections(s)["training"]["indexed_points"] == r.index.indexed_points


def test_search_ef_factor_is_chosen_at_init(tmp_path):
    from gmv_store.store import Store

    out = run("init", "--store", tmp_path / "s", "--hnsw-ef-factor", "1.5")
    assert "search ef 1.5x" in out
    assert json.loads((tmp_path / "s" / "store.json").read_text())["index"]["ef_factor"] == 1.5
    with Store.open(tmp_path / "s") as s:
        assert s.search_options(559) == {"ef": 838}
    assert "--hnsw-ef-factor" in run("init", "--store", tmp_path / "t", "--hnsw-ef-factor", "0.5", code=2)


def test_exact_store_builds_nothing(tmp_path, mnist_small):
    np.savez(tmp_path / "t.npz", images=mnist_small[0][:50])
    run("init", "--store", tmp_path / "s", "--index", "exact")
    out = run("ingest", tmp_path / "t.npz", "--store", tmp_path / "s")
    assert "index:" not in out
    assert "index: none" in run("index", "--store", tmp_path / "s")
    assert collections(tmp_path / "s")["training"]["indexed_points"] == 0


@pytest.mark.slow
def test_killed_index_build_still_answers_then_finishes(tmp_path):
    from gmv_store.datasets import load_mnist

    x, y = load_mnist("train")
    np.savez(tmp_path / "t.npz", images=x[:20000], labels=y[:20000])
    np.savez(tmp_path / "g.npz", images=x[20000:20030], labels=y[20000:20030])
    s = tmp_path / "s"
    run("init", "--store", s, "--index", "hnsw")
    run("ingest", tmp_path / "t.npz", "--no-index", "--store", s)
    run("value", tmp_path / "g.npz", "--set", "g", "--k", "10", "--store", s)
    gmv = [sys.executable, "-m", "gmv_store", "index", "--store", str(s)]
    t0 = time.monotonic()
    base = s.parent / "base"
    subprocess.run(["cp", "-a", str(s), str(base)], check=True)
    subprocess.run(gmv, check=True, capture_output=True)
    duration = time.monotonic() - t0
    rng = random.Random(0)
    kills = 0
    for attempt in range(3):
        store = tmp_path / f"k{attempt}"
        subprocess.run(["cp", "-a", str(base), str(store)], check=True)
        proc = subprocess.Popen([*gmv[:-1], str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 0.8) * duration)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        # answers as before the build, or (killed after the build queued its re-check) holds
        # only that recorded work, which the next `gmv index` finishes
        r = CliRunner().invoke(cli, ["verify", "--full", "--store", str(store)])
        diffs = [line for line in r.output.splitlines() if line.startswith("difference: ")]
        assert (r.exit_code == 0 and r.output.startswith("ok: ")) or (
            r.exit_code == 1 and diffs and all(d.startswith("difference: refresh due") for d in diffs)), r.output
        run("index", "--store", store)
        c = collections(store)["training"]
        assert c["indexed_points"] == c["points"] == 20000
        assert run("verify", "--full", "--store", store).startswith("ok: ")
    assert kills >= 1


def test_index_finishes_a_recheck_left_queued(tmp_path, mnist_small):
    """A run stopped after its build queued the re-check of stored matches (as a kill at that
    point leaves it; here `--no-refresh`): the next `gmv index` has nothing to build and
    finishes the re-check, so the store verifies again."""
    x, y, xt, yt = mnist_small
    np.savez(tmp_path / "t.npz", images=x, labels=y)
    np.savez(tmp_path / "g.npz", images=xt[:10], labels=yt[:10])
    s = tmp_path / "s"
    run("init", "--store", s, "--index", "hnsw", "-p", "embedder.size=8", "-p", "rerank.size=14")
    run("ingest", tmp_path / "t.npz", "--no-index", "--store", s)
    run("value", tmp_path / "g.npz", "--set", "g", "--k", "5", "--recall", "20", "--store", s)
    out = run("index", "--no-refresh", "--store", s)
    assert "10 stored matches queued" in out, out
    assert "refresh due" in run("verify", "--full", "--store", s, code=1)
    out = run("index", "--store", s)
    assert "index: up to date" in out and "re-scored 10 of 10 generated images" in out, out
    assert run("verify", "--full", "--store", s).startswith("ok: ")
