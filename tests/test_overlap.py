"""The ingest write path on two threads (ingest/overlap.py): batches prepared ahead of the
writer, dedupe across batches still in flight, errors of the preparing thread raised in the
caller, and the disk's room checked once per journaled write."""
import sys

import numpy as np
import pytest
from cli_helpers import ledger_rows, tiny_store

from gmv_store import api, diskspace
from gmv_store.ingest.overlap import pipelined
from gmv_store.store import Store


def test_pipelined_keeps_order_and_raises_the_threads_error():
    assert list(pipelined(iter(range(20)), lambda x: x * x, depth=2)) == [x * x for x in range(20)]

    def stage(x):
        if x == 5:
            raise ValueError("bad batch 5")
        return x

    got = []
    with pytest.raises(ValueError, match="bad batch 5"):
        for x in pipelined(iter(range(20)), stage):
            got.append(x)
    assert got == [0, 1, 2, 3, 4]


def test_pipelined_stops_its_thread_when_the_consumer_stops():
    closed = []

    def source():
        try:
            yield from range(1000)
        finally:
            closed.append(True)

    it = pipelined(source(), lambda x: x, depth=1)
    assert next(it) == 0
    it.close()  # the consumer gives up: the thread ends and the source is closed
    assert closed == [True]


def test_the_same_content_in_consecutive_batches_is_stored_once(tmp_path, mnist_small):
    """Batches of 16 with each image three times, in batches that are in flight together:
    every content once in the ledger and the collection, the rest duplicates."""
    x = mnist_small[0][:40]
    arr = np.concatenate([x, x[::-1], x])  # 120 images, 40 distinct, repeats 24 to 80 rows apart
    np.save(tmp_path / "rep.npy", arr)
    store = tiny_store(tmp_path)
    rep = api.ingest(store, [str(tmp_path / "rep.npy")], batch_size=16, refresh=False, index=False, workers=0)
    assert (rep.added, rep.duplicates) == (40, 80)
    rows = ledger_rows(store, "SELECT count(*) AS n, count(DISTINCT sha256) AS d FROM training_images")
    assert rows == [{"n": 40, "d": 40}]
    with Store.open(store) as s:
        assert s.vectors.count("training") == 40
    again = api.ingest(store, [str(tmp_path / "rep.npy")], batch_size=16, refresh=False, index=False, workers=0)
    assert (again.added, again.duplicates) == (0, 120)


def test_room_is_checked_once_per_batch_and_payloads_not_serialised_for_it(tmp_path, mnist_small, monkeypatch):
    np.save(tmp_path / "a.npy", mnist_small[0][:50])
    store = tiny_store(tmp_path)
    checks = []
    real = diskspace.require_free

    def counting(path, need, what):
        checks.append(what)
        return real(path, need, what)

    dumped = []
    real_need = diskspace.vectors_need

    def need(vectors, payloads=(), slack=diskspace.SLACK, payload_bytes=None):
        dumped.append(payload_bytes is None)  # None: it would serialise the payloads
        return real_need(vectors, payloads, slack, payload_bytes)

    monkeypatch.setattr(diskspace, "require_free", counting)
    monkeypatch.setattr(diskspace, "vectors_need", need)
    rep = api.ingest(store, [str(tmp_path / "a.npy")], batch_size=20, refresh=False, index=False, workers=0)
    assert rep.added == 50
    writes = [w for w in checks if w.startswith("writing")]
    assert writes == ["writing 20 training images", "writing 20 training images", "writing 10 training images"]
    assert dumped == [False, False, False]


def test_a_failed_ledger_commit_stops_ingest_and_leaves_nothing_half_written(tmp_path, mnist_small, monkeypatch):
    """Each batch's ledger rows are committed on a third thread while the next batch's points
    are written (LedgerCommits). A commit that fails is raised in the caller; the points of
    that batch and of the one written meanwhile are journaled without rows, so the next open
    removes them: the store holds exactly the committed batches, and ingesting again adds
    the rest."""
    import threading

    import gmv_store.ingest.write as write

    np.save(tmp_path / "a.npy", mnist_small[0][:50])
    store = tiny_store(tmp_path)
    real, threads = write.insert_training, []

    def failing(con, columns, now):
        threads.append(threading.current_thread().name)
        if len(threads) == 2:
            raise OSError("disk gone while committing batch 2")
        return real(con, columns, now)

    monkeypatch.setattr(write, "insert_training", failing)
    with pytest.raises(OSError, match="batch 2"):
        api.ingest(store, [str(tmp_path / "a.npy")], batch_size=20, refresh=False, index=False, workers=0)
    assert threads and all(t.startswith("gmv-ingest-ledger") for t in threads)
    monkeypatch.setattr(write, "insert_training", real)
    assert api.verify(store).ok  # opening recovers: batch 2's (and 3's, if written) points are gone
    assert ledger_rows(store, "SELECT count(*) AS n FROM training_images") == [{"n": 20}]
    with Store.open(store) as s:
        assert s.vectors.count("training") == 20
    rep = api.ingest(store, [str(tmp_path / "a.npy")], batch_size=20, refresh=False, index=False, workers=0)
    assert (rep.added, rep.duplicates) == (30, 20)
    assert api.verify(store).ok


def test_a_reading_error_commits_the_batch_in_hand_before_it_is_raised(tmp_path, mnist_small, monkeypatch):
    """The writer takes the next batch (and journals it) before it starts the commit of the
    batch it has just written, so that the journal row's commit never waits behind a batch's.
    An error while taking it (a bad file, Ctrl-C) is raised only once the batch in hand is
    committed: nothing written is left to be undone, and ingesting again adds the rest."""
    import gmv_store.ingest.overlap as overlap

    np.save(tmp_path / "a.npy", mnist_small[0][:50])
    store = tiny_store(tmp_path)
    real, calls = overlap.prepare_training, []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user stops it while batch 3 is prepared
        return real(*args, **kwargs)

    monkeypatch.setattr(overlap, "prepare_training", failing)
    with pytest.raises(KeyboardInterrupt):
        api.ingest(store, [str(tmp_path / "a.npy")], batch_size=20, refresh=False, index=False, workers=0)
    monkeypatch.setattr(overlap, "prepare_training", real)
    # both written batches committed: no journal row left for the next open to undo
    assert ledger_rows(store, "SELECT count(*) AS n FROM journal") == [{"n": 0}]
    assert ledger_rows(store, "SELECT count(*) AS n FROM training_images") == [{"n": 40}]
    assert api.verify(store).ok
    rep = api.ingest(store, [str(tmp_path / "a.npy")], batch_size=20, refresh=False, index=False, workers=0)
    assert (rep.added, rep.duplicates) == (10, 40)
    assert api.verify(store).ok


def test_ingest_checkpoints_less_often_while_it_writes_and_restores_the_setting(tmp_path, mnist_small, monkeypatch):
    """LedgerCommits raises DuckDB's checkpoint threshold for the commits (a checkpoint rewrites
    the indexes and stopped the writer at 1M rows) and puts the database's own back after."""
    import gmv_store.ingest.write as write
    from gmv_store.ledger.connection import BULK_CHECKPOINT

    np.save(tmp_path / "a.npy", mnist_small[0][:30])
    store = tiny_store(tmp_path)
    seen, real = [], write.insert_training

    def spying(con, columns, now):
        seen.append(con.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0])
        return real(con, columns, now)

    monkeypatch.setattr(write, "insert_training", spying)
    with Store.open(store) as s:
        before = s.ledger.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0]
        from gmv_store.ingest.pipeline import ingest

        assert ingest(s, [str(tmp_path / "a.npy")], batch_size=10).added == 30
        after = s.ledger.execute("SELECT current_setting('checkpoint_threshold')").fetchone()[0]
    assert BULK_CHECKPOINT == "64MB" and seen == ["61.0 MiB"] * 3
    assert after == before == "16.0 MiB"


@pytest.mark.skipif(sys.platform != "linux", reason="a thread's own CPU priority is a Linux feature")
def test_the_ledger_commits_run_below_the_writers_priority(tmp_path, mnist_small, monkeypatch):
    """The ledger's commit thread yields the CPU to the writer, whose engine calls bound the
    rate (parallel.lower_priority); the writer's own priority is left as it was."""
    import os
    import threading

    import gmv_store.ingest.write as write
    from gmv_store.sources.parallel import HELPER_NICE

    np.save(tmp_path / "a.npy", mnist_small[0][:30])
    store = tiny_store(tmp_path)
    seen, real = [], write.insert_training

    def spying(con, columns, now):
        seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
        return real(con, columns, now)

    monkeypatch.setattr(write, "insert_training", spying)
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with Store.open(store) as s:
        from gmv_store.ingest.pipeline import ingest

        assert ingest(s, [str(tmp_path / "a.npy")], batch_size=10).added == 30
    assert HELPER_NICE > 0 and seen == [min(mine + HELPER_NICE, 19)] * 3
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine
