"""`gmv sql` cannot run away: a time limit, a memory cap and Ctrl-C each stop a query with one
`Error:` line and exit status 1; writes hidden in a SELECT, several statements and INSTALL are
refused up front with a message naming what was refused."""
import signal
import subprocess
import sys
import time

import pytest
from cli_helpers import run

from gmv_store.errors import BadInput, QueryInterrupted, QueryMemoryLimit, QueryTimeout, ReadOnlyViolation, SqlError
from gmv_store.query.sql import run_sql
from gmv_store.store import Store

# ~1e10 rows to count: runs for minutes, keeps only 100,000 rows in memory
SLOW = "SELECT sum((a.range * b.range) % 7) FROM range(100000) a, range(100000) b"  # 1e10 products: minutes
# one list of 100 million integers: needs ~800 MB in one piece, cannot spill
BIG = "SELECT list(range) FROM range(100000000)"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("sql") / "store"
    Store.init(path, embedder=("pixels", {"size": 8}), rerank=("l2", {"size": 8})).close()
    return path


def one_error_line(out: str) -> str:
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out
    assert "Traceback" not in out
    return lines[0]


def test_timeout_stops_query(store):
    t0 = time.monotonic()
    with pytest.raises(QueryTimeout, match="time limit of 1 s"):
        run_sql(store, SLOW, timeout=1, memory_limit="500MB")
    assert time.monotonic() - t0 < 5
    line = one_error_line(run("sql", SLOW, "--timeout", "1", "--memory-limit", "500MB", "--store", store, code=1))
    assert "--timeout" in line


def test_no_timeout_with_zero(store):
    assert run_sql(store, "SELECT 42 AS x", timeout=0) == (["x"], [(42,)])


def test_memory_cap_stops_query(store):
    with pytest.raises(QueryMemoryLimit, match="50MB"):
        run_sql(store, BIG, memory_limit="50MB")
    line = one_error_line(run("sql", BIG, "--memory-limit", "50MB", "--store", store, code=1))
    assert "memory" in line and "--memory-limit" in line
    assert not (store / "ledger.duckdb.tmp").exists()  # nothing spilled into the store


def test_bad_memory_limit(store):
    with pytest.raises(BadInput):
        run_sql(store, "SELECT 1", memory_limit="lots")
    assert "--memory-limit 'lots'" in one_error_line(run("sql", "SELECT 1", "--memory-limit", "lots", "--store", store, code=1))


def test_ctrl_c_interrupts_within_a_second(store):
    p = subprocess.Popen([sys.executable, "-m", "gmv_store", "sql", SLOW, "--memory-limit", "500MB", "--store", str(store)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.0)  # interpreter start-up and imports, then the query is running
        assert p.poll() is None, p.communicate()
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=2)
        took = time.monotonic() - t0
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 1, (p.returncode, out, err)
    assert took < 2
    assert "interrupted" in one_error_line(err) and out == ""


def test_interrupt_from_another_thread_is_query_interrupted(store, monkeypatch):
    """What the CLI's SIGINT does, in-process: a KeyboardInterrupt while waiting."""
    import threading

    import gmv_store.query.sql as sqlmod

    calls = {"n": 0}
    real_wait = threading.Event.wait

    def wait(self, timeout=None):
        calls["n"] += 1
        if calls["n"] == 10:
            raise KeyboardInterrupt
        return real_wait(self, timeout)

    monkeypatch.setattr(sqlmod.threading.Event, "wait", wait)
    with pytest.raises(QueryInterrupted):
        run_sql(store, SLOW, memory_limit="500MB")


@pytest.mark.parametrize("q,kind", [
    ("WITH x AS (INSERT INTO journal VALUES (1, 'a', 'b', [1], '{}', now()) RETURNING *) SELECT * FROM x", "INSERT"),
    ("WITH x AS (DELETE FROM training_images RETURNING *) SELECT count(*) FROM x", "DELETE"),
    ("SELECT (WITH d AS (UPDATE generated_sets SET k = 1 RETURNING k) SELECT max(k) FROM d)", "UPDATE"),
])
def test_write_hidden_in_select_refused_up_front(store, q, kind):
    with pytest.raises(ReadOnlyViolation, match=f"^{kind} statements are refused"):
        run_sql(store, q)
    line = one_error_line(run("sql", q, "--store", store, code=1))
    assert line.startswith(f"Error: {kind} statements are refused") and "read-only" in line


def test_keywords_in_strings_and_names_are_not_writes(store):
    cols, rows = run_sql(store, "SELECT 'WITH x AS (DELETE FROM t)' AS \"insert\" -- UPDATE\n")
    assert cols == ["insert"] and rows == [("WITH x AS (DELETE FROM t)",)]


@pytest.mark.parametrize("q,name", [("INSTALL httpfs", "INSTALL"), ("FORCE INSTALL httpfs", "FORCE INSTALL"),
                                    ("LOAD httpfs", "LOAD"), ("CHECKPOINT", "CHECKPOINT"),
                                    ("/* note */ ATTACH 'x.duckdb'", "ATTACH")])
def test_refusal_names_the_statement(store, q, name):
    line = one_error_line(run("sql", q, "--store", store, code=1))
    assert line.startswith(f"Error: {name} statements are refused"), line


def test_several_statements_refused(store):
    line = one_error_line(run("sql", "SELECT 1; SELECT 2", "--store", store, code=1))
    assert "one statement at a time" in line
    assert run_sql(store, "SELECT 1 AS x;") == (["x"], [(1,)])  # a trailing semicolon is one statement


def test_sql_errors_are_not_read_only_violations(store):
    with pytest.raises(SqlError, match="nosuch") as e:
        run_sql(store, "SELECT nosuch FROM contributors")
    assert not isinstance(e.value, ReadOnlyViolation)
    with pytest.raises(SqlError, match="does not parse"):
        run_sql(store, "SELEC 1")
