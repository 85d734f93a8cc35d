"""SIGKILL a writing command at random points: the store must open, hold no inconsistency
(at most recorded pending work), and the same command run again must complete with the
same values as an uninterrupted run."""
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from shard_files import write_parquet, write_tar
from sparse_copy import copy_store

from gmv_store.datasets import load_mnist
from gmv_store.ingest.pipeline import ingest
from gmv_store.query.value import value
from gmv_store.query.verify import verify
from gmv_store.store import Store

BACKENDS = dict(embedder=("pixels", {"size": 8}), rerank=("l2", {"size": 14}))
pytestmark = pytest.mark.slow


def gmv(*args):
    return [sys.executable, "-m", "gmv_store", *map(str, args)]


@pytest.fixture(scope="module")
def base(tmp_path_factory, mnist_small):
    x, y, xt, yt = mnist_small
    d = tmp_path_factory.mktemp("crash")
    np.savez(d / "train.npz", images=x[:300], labels=y[:300])
    np.savez(d / "extra.npz", images=x[300:], labels=y[300:])
    np.savez(d / "gen1.npz", images=xt[:20], labels=yt[:20])
    np.savez(d / "gen2.npz", images=xt[20:], labels=yt[20:])
    # shards past SERIAL_FIRST (1,024) images, so that decoding worker processes run too
    xs, ys = load_mnist("train")
    write_parquet(d / "extra.parquet", xs[30_000:31_500], ys[30_000:31_500], row_group_size=200)
    write_tar(d / "extra.tar", xs[40_000:41_500], ys[40_000:41_500])
    s = Store.init(d / "base", **BACKENDS)
    try:
        # the extra images' recall and re-rank vectors in clip-retrieval's layout, identified by key
        import pyarrow as pa
        import pyarrow.parquet as pq

        extra = [a[..., None] for a in x[300:]]
        for name, vecs in (("vec", s.embed(extra)["recall"]), ("rvec", s.embed(extra)["rerank"])):
            (d / name / "img_emb").mkdir(parents=True)
            (d / name / "metadata").mkdir()
            for n, idx in enumerate(np.array_split(np.arange(len(extra)), 3)):
                np.save(d / name / "img_emb" / f"img_emb_{n}.npy", vecs[idx].astype(np.float16))
                pq.write_table(pa.table({"key": [f"k{i}" for i in idx]}), d / name / "metadata" / f"metadata_{n}.parquet")
        ingest(s, [str(d / "train.npz")], owner="alice")
        value(s, [str(d / "gen1.npz")], "s1", k=5, recall=20)
    finally:
        s.close()
    return d


SCENARIOS = {
    "ingest": (lambda d: [], lambda d: ["ingest", d / "extra.npz", "--owner", "bob", "--batch-size", "8"]),
    "value": (lambda d: [], lambda d: ["value", d / "gen2.npz", "--set", "s1", "--k", "5", "--recall", "20", "--batch-size", "2"]),
    "forget": (lambda d: [["ingest", d / "extra.npz", "--owner", "bob"]], lambda d: ["forget", "--owner", "bob"]),
    "refresh": (lambda d: [["ingest", d / "extra.npz", "--owner", "bob", "--no-refresh"]], lambda d: ["refresh"]),
    "ingest-parquet": (lambda d: [], lambda d: ["ingest", d / "extra.parquet", "--owner", "bob", "--batch-size", "64",
                                                "--workers", "2"]),
    "ingest-tar": (lambda d: [], lambda d: ["ingest", d / "extra.tar", "--owner", "bob", "--batch-size", "64",
                                            "--workers", "2"]),
    "ingest-vectors": (lambda d: [], lambda d: ["ingest", "--vectors", d / "vec", "--id-column", "key", "--rerank-vectors",
                                                d / "rvec", "--owner", "bob", "--batch-size", "8"]),
}


def marked(mark: str) -> list[int]:
    """Our processes whose environment carries `mark` (a killed command and its workers)."""
    out = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and mark.encode() in (p / "environ").read_bytes():
                out.append(int(p.name))
        except OSError:
            continue
    return out


def values(store_dir):
    s = Store.open(store_dir)
    try:
        return {(a, b): v for a, b, v in s.ledger.execute(
            "SELECT set_name, contributor_id, value_sum FROM contributor_values").fetchall()}
    finally:
        s.close()


def prepared(base, tmp, name, setup):
    store = tmp / name
    copy_store(base / "base", store)
    for args in setup(base):
        subprocess.run(gmv(*args, "--store", store), check=True, capture_output=True)
    return store


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_sigkill_then_rerun(base, tmp_path, scenario):
    setup, command = SCENARIOS[scenario]
    ref = prepared(base, tmp_path, "ref", setup)
    t0 = time.monotonic()
    subprocess.run(gmv(*command(base), "--store", ref), check=True, capture_output=True)
    duration = time.monotonic() - t0  # kill anywhere within an uninterrupted run's span
    expected = values(ref)
    rng = random.Random(scenario)
    kills = 0
    for attempt in range(5):
        store = prepared(base, tmp_path, f"run{attempt}", setup)
        mark = f"GMV_CRASH_TEST_{uuid.uuid4().hex}"
        proc = subprocess.Popen(gmv(*command(base), "--store", store), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                env={**os.environ, mark: "1"})
        time.sleep(rng.uniform(0.3, 1.0) * duration)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait()
        deadline = time.monotonic() + 5  # decoding workers notice the kill and exit on their own
        while marked(mark) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not marked(mark), "worker processes outlived the killed command"
        s = Store.open(store)  # recovers the journal
        try:
            diffs = [d for d in verify(s, sample=None).differences if not d.startswith("refresh due")]
            assert diffs == [], diffs
        finally:
            s.close()
        subprocess.run(gmv(*command(base), "--store", store), check=True, capture_output=True)
        s = Store.open(store)
        try:
            rep = verify(s, sample=None)
            assert rep.ok, rep.differences
        finally:
            s.close()
        got = values(store)
        assert got.keys() == expected.keys()
        for key in got:
            assert got[key] == pytest.approx(expected[key], abs=1e-6)
    assert kills >= 1, "no run was interrupted; the kill window missed the command"
