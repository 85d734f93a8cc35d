"""Repair you can trust (issue 17): damage is found by counting, a killed repair is finished,
sources read back are checked by hash, every damaged part ends in one line with the fix, and
`gmv verify --full` passes afterwards with the values as before."""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import duckdb
import numpy as np
import pytest
from cli_helpers import run
from click.testing import CliRunner
from PIL import Image
from sparse_copy import copy_store

from gmv_store.cli import cli
from gmv_store.errors import SourceChanged
from gmv_store.images import content_sha256
from gmv_store.sources.checked import load_checked

PARAMS = ("-p", "embedder.size=8", "-p", "rerank.size=14")


def one_line(*args, code=1):
    out = run(*args, code=code)
    assert out.startswith("Error: ") and out.count("\n") == 1 and "unexpected" not in out, out
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory, mnist_small):
    """A store of 600 npz training images with 40 generated images valued in set s1, and 30
    PNG files for stores whose sources are files."""
    x, y, xt, yt = mnist_small
    d = tmp_path_factory.mktemp("trust")
    np.savez(d / "train.npz", images=x, labels=y)
    np.savez(d / "gen.npz", images=xt, labels=yt)
    np.savez(d / "small.npz", images=x[::4], labels=y[::4])
    np.savez(d / "gen20.npz", images=xt[:20], labels=yt[:20])
    run("init", "--store", d / "npz", *PARAMS)
    run("ingest", d / "train.npz", "--store", d / "npz")
    run("value", d / "gen.npz", "--set", "s1", "--k", "5", "--recall", "20", "--store", d / "npz")
    (d / "png").mkdir()
    for i in range(30):
        Image.fromarray(x[i * 20]).save(d / "png" / f"{i:02d}.png")
    return d


def copy(base, tmp_path):
    return copy_store(base / "npz", tmp_path / "s")


def png_store(base, tmp_path):
    """A store whose 30 training images are PNG files of its own (tmp_path/png)."""
    shutil.copytree(base / "png", tmp_path / "png")
    store = tmp_path / "p"
    run("init", "--store", store, *PARAMS)
    run("ingest", tmp_path / "png", "--store", store)
    run("value", base / "gen.npz", "--set", "s1", "--k", "3", "--recall", "10", "--store", store)
    return store


def values(store):
    rows = json.loads(run("sql", "SELECT set_name, contributor_id, value_sum FROM contributor_values", "--store",
                          store, "--json"))
    return {(r["set_name"], r["contributor_id"]): r["value_sum"] for r in rows}


def assert_whole(store, before):
    assert run("verify", "--full", "--store", store).startswith("ok: ")
    after = values(store)
    assert after.keys() == before.keys()
    assert all(after[k] == pytest.approx(before[k], abs=1e-9) for k in before)
    assert not (store / "repair.json").exists()


def status(store):
    r = CliRunner().invoke(cli, ["status", "--store", str(store)])
    assert r.exit_code == 0, r.output
    return r.stdout, r.stderr


def die_during(store, patch: str):
    """`gmv repair` in a process that dies like a SIGKILL (os._exit: nothing cleaned up) where
    `patch` says."""
    script = textwrap.dedent("""
        import os, sys
        import gmv_store.store, gmv_store.query.refresh
        calls = [0]
        def dying(orig, at):
            def f(*a, **k):
                calls[0] += 1
                if calls[0] == at:
                    os._exit(9)
                return orig(*a, **k)
            return f
        """) + patch + "\nfrom gmv_store.cli import cli\ncli(['repair', '--store', sys.argv[1]])\n"
    r = subprocess.run([sys.executable, "-c", script, str(store)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert r.returncode == 9, (r.returncode, r.stdout, r.stderr)


# ----------------------------------------------------------------------------- 1: killed repairs


@pytest.mark.parametrize("finisher", ["value", "repair"])
def test_killed_collection_repair_is_finished(base, tmp_path, finisher):
    store = copy(base, tmp_path)
    before = values(store)
    shutil.rmtree(store / "qdrant-edge" / "training")
    # dies embedding the second batch: 256 of 600 points are back
    die_during(store, "gmv_store.store.Store.embed = dying(gmv_store.store.Store.embed, 2)")
    assert json.loads((store / "repair.json").read_text())["repairing"] == "vector collection training"
    out, err = status(store)
    assert "collection training: 256 points," in out
    assert "did not finish" in err and "holds 256 points but the ledger 600" in err
    for args in (("values", "--set", "s1"), ("sql", "SELECT 1"), ("top", "0" * 16)):
        assert "gmv repair" in one_line(*args, "--store", store)
    if finisher == "repair":
        assert run("repair", "--store", store).startswith("finishing the repair of the vector collection training")
    else:  # any writer finishes it first
        run("value", base / "gen.npz", "--set", "s1", "--k", "5", "--recall", "20", "--store", store)
    assert_whole(store, before)


def test_killed_ledger_rebuild_is_finished(base, tmp_path):
    store = copy(base, tmp_path)
    before = values(store)
    (store / "ledger.duckdb").unlink()
    (store / "ledger.snapshot.duckdb").unlink()
    # dies re-matching: rows rebuilt from payloads, credits and sums not yet
    die_during(store, "gmv_store.query.refresh.rescore = dying(gmv_store.query.refresh.rescore, 1)")
    assert "gmv repair" in one_line("values", "--set", "s1", "--store", store)
    out = run("repair", "--store", store)
    assert "finishing the repair of the ledger" in out and "deleted the part of a ledger" in out
    assert "vector payloads" in out
    assert_whole(store, before)


# ----------------------------------------------------------------------------- 2: lost points


@pytest.mark.parametrize("damage", ["segments", "id-mappings"])
def test_lost_points_are_counted(base, tmp_path, damage):
    store = copy(base, tmp_path)
    before = values(store)
    training = store / "qdrant-edge" / "training"
    if damage == "segments":
        shutil.rmtree(training / "segments")
    else:
        for f in training.rglob("*id_tracker.mappings"):
            f.unlink()
    out, err = status(store)
    assert "collection training: 0 points," in out and "holds 0 points but the ledger 600 training images" in err
    msg = one_line("value", base / "gen.npz", "--set", "s2", "--k", "5", "--recall", "20", "--store", store)
    assert "holds 0 points but the ledger 600" in msg and "gmv repair" in msg
    assert "re-embedded 600 missing training points" in run("repair", "--store", store)
    assert_whole(store, before)


# ----------------------------------------------------------------------------- 3, 4: sources


def test_source_overwritten_is_named_not_used(base, tmp_path):
    store = png_store(base, tmp_path)
    before = values(store)
    png = tmp_path / "png" / "03.png"
    other = np.array(Image.open(tmp_path / "png" / "04.png"))
    old_sha = content_sha256(np.array(Image.open(png))[:, :, None])
    Image.fromarray(other).save(png)  # another digit under the recorded path
    with pytest.raises(SourceChanged, match="03.png now holds another image"):
        load_checked(str(png), old_sha)
    assert load_checked(str(tmp_path / "png" / "04.png"), content_sha256(other[:, :, None])[:16]).shape == (28, 28, 1)
    shutil.rmtree(store / "qdrant-edge" / "training")
    msg = run("repair", "--store", store, code=1)
    assert "re-embedded 29 missing training points" in msg
    assert "Error: the repair cannot finish: 1 now hold another image than the one stored" in msg and "03.png" in msg
    assert "--drop-unreadable" in msg
    out = run("repair", "--drop-unreadable", "--store", store)
    assert "forgot 1 training images whose sources cannot be read (1 of them now hold another image)" in out
    assert run("verify", "--full", "--store", store).startswith("ok: ")
    n = json.loads(run("sql", "SELECT count(*) AS n FROM contributors", "--store", store, "--json"))[0]["n"]
    assert n == 29 and len(values(store)) <= len(before)


def test_drop_unreadable_does_what_it_says(base, tmp_path):
    store = png_store(base, tmp_path)
    for i in range(6):
        (tmp_path / "png" / f"{i:02d}.png").unlink()
    shutil.rmtree(store / "qdrant-edge" / "training")
    msg = run("repair", "--store", store, code=1)
    assert "6 recorded sources cannot be read" in msg and "pass --drop-unreadable" in msg
    assert "did not finish" in status(store)[1]
    out = run("repair", "--drop-unreadable", "--store", store)
    assert "forgot 6 training images whose sources cannot be read" in out
    assert run("verify", "--full", "--store", store).startswith("ok: ")
    assert "collection training: 24 points," in status(store)[0]


# ----------------------------------------------------------------------------- 10: damaged files


def _garbage_segment_json(store):
    for f in (store / "qdrant-edge" / "training").rglob("segment.json"):
        f.write_text("garbage")


def _truncated_vectors(store):
    for f in (store / "qdrant-edge" / "training").rglob("vector_storage-recall/vectors/chunk_0.mmap"):
        f.write_bytes(f.read_bytes()[:100])


def _sql(statement):
    def damage(store):
        con = duckdb.connect(str(store / "ledger.duckdb"))
        con.execute(statement)
        con.close()
    return damage


DAMAGE = {
    "segment.json": (_garbage_segment_json, "vector collection 'training'", "kept the damaged vector collection"),
    "vector file": (_truncated_vectors, "vector collection 'training'", "kept the damaged vector collection"),
    "missing view": (_sql("DROP VIEW contributor_values"), "lacks view contributor_values", "made the missing view"),
    "missing table": (_sql("DROP TABLE refresh_queue"), "lacks table refresh_queue", "kept the lacking table"),
    "rows deleted": (_sql("DELETE FROM training_images WHERE hash(contributor_id) % 10 = 0"),
                     "points have no ledger rows", "their rows back from their payloads"),
    "half the credits": (_sql("DELETE FROM credits WHERE hash(generated_id) % 2 = 0"), "running value sums",
                         "re-matched every generated image from scratch"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_part_named_then_mended(base, tmp_path, damage):
    store = copy(base, tmp_path)
    before = values(store)
    (store / "ledger.snapshot.duckdb").unlink()  # repair must not lean on the snapshot
    make, named, mended = DAMAGE[damage]
    make(store)
    msg = one_line("value", base / "gen.npz", "--set", "s2", "--k", "5", "--recall", "20", "--store", store)
    assert named in msg and f"gmv repair --store {store}" in msg
    assert mended in run("repair", "--store", store)
    assert_whole(store, before)


def test_edited_backend_sizes_named_and_not_repairable(base, tmp_path):
    store = copy(base, tmp_path)
    cfg = json.loads((store / "store.json").read_text())
    cfg["embedder"]["params"]["size"] = 10
    (store / "store.json").write_text(json.dumps(cfg))
    for args in (("value", base / "gen.npz", "--set", "s2", "--k", "5", "--recall", "20"), ("repair",)):
        msg = one_line(*args, "--store", store)
        assert "holds vectors {recall: 64-d" in msg and "make {recall: 100-d" in msg
        assert "store.json records embedder pixels(color=gray,size=10)" in msg and "restore those parameters" in msg


def test_expected_schema_read_from_the_migrations_is_what_they_make():
    from gmv_store.ledger.checks import expected_schema, ledger_objects
    from gmv_store.migrate import load_migrations

    con = duckdb.connect(":memory:")
    con.execute("CREATE TABLE schema_migrations (version INTEGER)")
    for mig in load_migrations():
        con.execute(mig.sql)
        assert expected_schema(mig.version) == ledger_objects(con), mig.name
    assert expected_schema() == ledger_objects(con)


# ----------------------------------------------------------------------------- 7, 13: verify, versions


def test_verify_on_local_engine_and_counts_images(base, tmp_path):
    store = tmp_path / "local"
    run("init", "--store", store, "--engine", "local", *PARAMS)
    run("ingest", base / "small.npz", "--store", store)
    run("value", base / "gen20.npz", "--set", "s1", "--k", "5", "--recall", "20", "--store", store)
    assert run("verify", "--full", "--store", store).startswith("ok: ")  # scores to float32 precision
    con = duckdb.connect(str(store / "ledger.duckdb"))
    gids = [r[0] for r in con.execute("SELECT DISTINCT generated_id FROM credits ORDER BY 1 LIMIT 12").fetchall()]
    con.execute("UPDATE credits SET distance = distance + 0.5 WHERE generated_id IN (SELECT unnest(?))", [gids])
    con.close()
    r = CliRunner().invoke(cli, ["verify", "--full", "--store", str(store)])
    assert r.exit_code == 1
    assert "Error: 12 of 20 generated images recomputed differ from their stored matches" in r.stderr
    assert r.stdout.count("difference: ") == 11  # ten shown, then the count


def test_newer_store_format_and_migrations_refused(base, tmp_path):
    store = copy(base, tmp_path)
    con = duckdb.connect(str(store / "ledger.duckdb"))
    con.execute("INSERT INTO schema_migrations (version, name) VALUES (99, '0099_future.sql')")
    con.close()
    assert "migration(s) 99 applied, which this gmv-store does not know" in one_line("refresh", "--store", store)
    cfg = json.loads((store / "store.json").read_text())
    (store / "store.json").write_text(json.dumps({**cfg, "format": 99}))
    assert "has format 99" in one_line("status", "--store", store)


# ----------------------------------------------------------------------------- 12, 17, 18, 20


def test_value_that_values_nothing_makes_no_set(base, tmp_path):
    store = copy(base, tmp_path)
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    run("value", bad, "--set", "empty", "--k", "3", "--recall", "9", "--store", store, code=3)
    sets = json.loads(run("sql", "SELECT set_name FROM sets", "--store", store, "--json"))
    assert [s["set_name"] for s in sets] == ["s1"]
    run("value", base / "gen.npz", "--set", "empty", "--k", "4", "--recall", "8", "--store", store)  # k is not fixed


def test_status_after_forget_says_removed(base, tmp_path):
    store = copy(base, tmp_path)
    run("forget", "--source", "*train.npz#1??", "--no-refresh", "--store", store)
    out, _ = status(store)
    assert "refresh due: yes (0 training images added and 100 removed, not yet matched" in out


def test_closed_output_pipe_ends_quietly(base, tmp_path):
    store = copy(base, tmp_path)
    p = subprocess.Popen([sys.executable, "-m", "gmv_store", "status", "--store", str(store)], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    p.stdout.close()  # the reader goes away before the first line (`gmv status | head -0`)
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 1 and err == "", err


def test_writer_blocked_by_a_reader_names_it_and_waits(base, tmp_path, monkeypatch):
    store = copy(base, tmp_path)
    reader = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], "
                               "read_only=True); print('open', flush=True); time.sleep(4)",
                               str(store / "ledger.duckdb")], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        monkeypatch.setattr("gmv_store.store.READER_WAIT_S", 0.5)
        msg = one_line("refresh", "--store", store)
        assert f"held by pid {reader.pid} (" in msg and f"pid {os.getpid()}" not in msg
        run("refresh", "--wait", "30", "--store", store)  # waits out the reader
    finally:
        reader.kill()
        reader.wait()


# ----------------------------------------------------------------------------- 1: real SIGKILLs


@pytest.mark.slow
@pytest.mark.parametrize("lost", ["collection", "ledger"])
def test_sigkilled_repair_never_leaves_a_store_taken_for_whole(base, tmp_path, lost):
    """SIGKILL `gmv repair` at random points: afterwards a writer either finishes the repair
    or refuses in one line, and the store ends with the values it had."""
    import random
    import signal
    import time

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    rng = random.Random(lost)
    kills = 0
    for attempt in range(3):
        store = copy_store(base / "npz", tmp_path / f"s{attempt}")
        if attempt == 0:
            before = values(store)
        if lost == "collection":
            shutil.rmtree(store / "qdrant-edge" / "training")
        else:
            (store / "ledger.duckdb").unlink()
            (store / "ledger.snapshot.duckdb").unlink()
        cmd = [sys.executable, "-m", "gmv_store", "repair", "--store", str(store)]
        if attempt == 0:  # an uninterrupted run's length: the kills land within it
            t0 = time.monotonic()
            subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=300)
            duration = time.monotonic() - t0
            assert_whole(store, before)
            continue
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 0.95) * duration)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        r = CliRunner().invoke(cli, ["value", str(base / "gen.npz"), "--set", "s1", "--k", "5", "--recall", "20",
                                     "--store", str(store)])
        if r.exit_code != 0:  # else it finished the repair first
            assert r.exit_code == 1 and r.output.count("\n") == 1 and "gmv repair" in r.output, r.output
            run("repair", "--store", store)
        assert_whole(store, before)
    assert kills >= 1, "no run was interrupted; the kill window missed the repair"
