"""A full disk: commands stop with one `Error:` line naming the filesystem and the space
needed (exit status 1), never with SIGBUS; nothing is half-written; once space is freed the
same command completes with the values of an uninterrupted run.

The disk is a small tmpfs mounted in a temporary folder, so these tests need root (they
skip otherwise). They drive the writes in subprocesses: on a build without the checks the
embedded Qdrant engine dies of SIGBUS, which must fail the test, not kill pytest."""
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import run  # in-process, for commands that cannot reach a memory-mapped write

from gmv_store import diskspace
from gmv_store.datasets import load_mnist
from gmv_store.errors import DiskFull
from gmv_store.ingest.pipeline import ingest
from gmv_store.query.refresh import refresh
from gmv_store.query.value import value
from gmv_store.store import Store

BATCH = "100"


def gmv(*args, check_rc=None):
    r = subprocess.run([sys.executable, "-m", "gmv_store", *map(str, args)], capture_output=True, text=True,
                       timeout=300)
    if check_rc is not None:
        assert r.returncode == check_rc, (r.returncode, r.stdout, r.stderr)
    return r


def one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "Fatal Python error" not in stderr, stderr
    lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith("note: ")]
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    return lines[0]


@pytest.fixture
def tmpfs(tmp_path):
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("needs root on Linux to mount a small tmpfs (a full disk)")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(mnt, leave: int):
    """Write a filler file so that `leave` bytes stay free on the tmpfs."""
    filler = mnt / "filler"
    size = diskspace.free_bytes(mnt) - leave
    with open(filler, "wb") as f:
        chunk = b"\0" * (1 << 20)
        while size > 0:
            f.write(chunk[: min(size, len(chunk))])
            size -= len(chunk)
    return filler


@pytest.fixture
def data(tmp_path, mnist_small):
    x, y, xt, yt = mnist_small
    xe, ye = load_mnist("test")
    d = tmp_path / "data"
    d.mkdir()
    np.savez(d / "train.npz", images=x, labels=y)
    np.savez(d / "gen.npz", images=xt, labels=yt)
    np.savez(d / "extra.npz", images=xe[100:2100], labels=ye[100:2100])  # 2,000 more: 10 MB of vectors
    return d


def build(root, data):
    """A store with training images and a valued set (default basic backends: 256 + 1024-d)."""
    s = Store.init(root)
    try:
        ingest(s, [str(data / "train.npz")], owner="alice")
        value(s, [str(data / "gen.npz")], "s1", k=10)
    finally:
        s.close()


def values(root):
    s = Store.open(root)
    try:
        return dict(((a, b), v) for a, b, v in s.ledger.execute(
            "SELECT set_name, contributor_id, value_sum FROM contributor_values").fetchall())
    finally:
        s.close()


def open_collections(root):
    """Open both Qdrant collections once (on tmpfs this backs their vector chunks in full)."""
    s = Store.open(root)
    try:
        s.vectors.count("training"), s.vectors.count("generated")
    finally:
        s.close()


def test_disk_full_ingest_stops_cleanly_then_resumes(tmpfs, data, tmp_path):
    ref = tmp_path / "ref"
    build(ref, data)
    s = Store.open(ref)
    try:
        ingest(s, [str(data / "extra.npz")], owner="bob", batch_size=int(BATCH))
        refresh(s)  # as `gmv ingest` does after ingesting
    finally:
        s.close()
    expected = values(ref)

    store = tmpfs / "store"
    build(store, data)
    open_collections(store)
    filler = fill(tmpfs, leave=8 * 10**6)  # the Qdrant WAL alone grows by 10 MB: some batches fit, then none

    r = gmv("ingest", data / "extra.npz", "--owner", "bob", "--batch-size", BATCH, "--store", store)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)  # not -7 (SIGBUS)
    line = one_error_line(r.stderr)
    assert str(tmpfs) in line and "tmpfs" in line and "free" in line and "needed" in line, line
    assert not list(tmpfs.rglob("*.tmp")), "a half-written file was left behind"
    out = run("sql", "SELECT (SELECT count(*) FROM journal) AS journal, (SELECT count(*) FROM training_images) AS n",
              "--json", "--store", store)
    got = json.loads(out)[0]
    assert got["journal"] == 0  # no half-done write: every journaled batch committed
    assert 600 < got["n"] < 2600  # some batches went in before the disk filled

    filler.unlink()
    run("ingest", data / "extra.npz", "--owner", "bob", "--batch-size", BATCH, "--store", store)
    assert run("verify", "--full", "--store", store).startswith("ok:")
    got = values(store)
    assert got.keys() == expected.keys()
    assert max(abs(got[k] - expected[k]) for k in expected) < 1e-9


def test_full_disk_reads_and_writes_end_with_one_line(tmpfs, data):
    store = tmpfs / "store"
    build(store, data)
    open_collections(store)
    filler = fill(tmpfs, leave=0)

    assert "training_images: 600" in run("status", "--store", store)  # reads need no space
    run("sql", "SELECT count(*) FROM scores", "--store", store)
    for args in (["verify", "--full"], ["ingest", data / "extra.npz"]):
        r = gmv(*args, "--store", store)
        assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
        assert str(tmpfs) in one_error_line(r.stderr)
    r = gmv("init", "--store", tmpfs / "other")
    assert r.returncode == 1 and "a new store" in one_error_line(r.stderr)
    assert not (tmpfs / "other").exists()
    gmv("refresh", "--store", store, check_rc=0)  # closing publishes no snapshot without room, and says nothing
    assert not list(tmpfs.rglob("*.tmp"))

    filler.unlink()
    assert run("verify", "--full", "--store", store).startswith("ok:")


def test_engine_disk_full_error_becomes_disk_full(tmpfs, data):
    """When a write is not pre-checked (a ledger-only transaction), DuckDB's own ENOSPC error
    ends the command as DiskFull, and the transaction leaves nothing behind."""
    store = tmpfs / "store"
    build(store, data)
    fill(tmpfs, leave=2 * 10**6)
    with pytest.raises(DiskFull, match=str(tmpfs)):
        with Store.open(store) as s:
            s.ledger.execute("BEGIN TRANSACTION")
            s.ledger.execute("INSERT INTO journal SELECT range + 1000, 'x', 'training', [range], "
                             "'{\"pad\": \"' || repeat('x', 1000) || '\"}', now() FROM range(20000)")
            s.ledger.execute("COMMIT")
    (tmpfs / "filler").unlink()
    s = Store.open(store)
    try:
        assert s.ledger.execute("SELECT count(*) FROM journal").fetchone()[0] == 0
    finally:
        s.close()


# ----------------------------------------------------------------------------- without root


def test_require_free_names_filesystem_and_need(tmp_path):
    mount = diskspace.mount_of(tmp_path)
    with pytest.raises(DiskFull) as e:
        diskspace.require_free(tmp_path, 10**15, "a test write")
    msg = str(e.value)
    assert f"on {mount.point} ({mount.fstype}" in msg and "a test write" in msg and "1000000.0 GB needed" in msg
    diskspace.require_free(tmp_path, 1, "a test write")  # enough room: nothing raised


def test_disk_full_recognised_from_each_engine():
    import duckdb

    assert diskspace.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert diskspace.is_disk_full(duckdb.TransactionException(
        'TransactionContext Error: Failed to commit: Could not write file "x.wal": No space left on device'))
    assert diskspace.is_disk_full(Exception("Service runtime error: failed to write segment: No space left on device (os error 28)"))
    # an index build Qdrant refuses up front (seen building a 1M-point index on a 7.8 GB-free disk)
    assert diskspace.is_disk_full(Exception("Service runtime error: Not enough space available for optimization, "
                                            "needed: 10.85 GiB, available: 7.75 GiB"))
    assert not diskspace.is_disk_full(Exception("Service runtime error: cannot load edge shard"))
    assert not diskspace.is_disk_full(KeyboardInterrupt())


def test_store_exit_turns_enospc_into_disk_full(tmp_path):
    root = tmp_path / "store"
    Store.init(root, embedder=("pixels", {"size": 8}), rerank=("l2", {"size": 8})).close()
    with pytest.raises(DiskFull, match="disk is full"):
        with Store.open(root):
            raise OSError(errno.ENOSPC, "No space left on device")
    Store.open(root).close()  # the lock was released
