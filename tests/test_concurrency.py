"""One writer per store; readers keep working (from the writer's snapshot) while it runs."""
import json
import subprocess
import sys
import textwrap
import time

import pytest
from cli_helpers import invoke


@pytest.fixture
def held_store(store_path, data_files):
    """A store with values, and a separate process holding it as writer for 60 s."""
    train, gen = data_files
    invoke("init", "--store", store_path, "-p", "embedder.size=8", "-p", "rerank.size=14")
    invoke("ingest", train, "--store", store_path)
    invoke("value", gen, "--set", "s1", "--k", "5", "--store", store_path)
    code = textwrap.dedent(f"""
        import sys, time
        from gmv_store.store import Store
        s = Store.open({str(store_path)!r})
        # a checkpoint, as a long writer makes every minute: DuckDB's own file lock then no
        # longer guards the database file, so readers must check the store's writer lock
        s.snapshot()
        print("ready", flush=True)
        time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    yield store_path, proc
    proc.kill()
    proc.wait()


def test_second_writer_refused_with_pid(held_store, data_files):
    store, proc = held_store
    r = invoke("ingest", data_files[0], "--store", store, code=1)
    assert f"in use by pid {proc.pid}" in r.output


def test_wait_gives_up_after_timeout(held_store, data_files):
    store, proc = held_store
    t = time.monotonic()
    r = invoke("ingest", data_files[0], "--store", store, "--wait", "1", code=1)
    assert time.monotonic() - t >= 1.0 and "in use by pid" in r.output


def test_readers_use_snapshot_while_writer_runs(held_store):
    store, proc = held_store
    r = invoke("values", "--set", "s1", "--store", store, "--json")
    rows = json.loads(r.stdout)
    assert "reading its snapshot" in r.stderr
    assert rows and rows[0]["rank"] == 1
    r = invoke("sql", "SELECT m FROM sets", "--store", store, "--json")
    assert json.loads(r.stdout) == [{"m": 40}]
    assert "reading its snapshot" in r.stderr
