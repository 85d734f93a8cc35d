"""`--ray`: the same store, values and matches as one process, computed on a real Ray
cluster on this machine's loopback (a head with 0 CPUs, so that the work must go to the
other node) and on `--ray local`; and the faults that must end in one line, nothing written.

One cluster (a head and two worker nodes of 1 CPU) serves the module (starting one takes
10-50 s here); it is stopped by its own PIDs afterwards, also after a failure, and the
fixture checks that nothing of it is left. The last two tests change it (a node killed, a
node added), so they stay last.
"""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shard_files import write_tar

# the test clusters run without token auth (loopback only), and so must their drivers;
# `--ray local` then writes no ~/.ray/auth_token either
os.environ["RAY_AUTH_MODE"] = "disabled"
pytest.importorskip("ray", reason="needs the ray extra: pip install 'gmv-store[ray]'")

from gmv_store import api  # noqa: E402
from gmv_store.distributed.loopback import free_port, loopback_cluster, ray_start  # noqa: E402
from gmv_store.store import GENERATED, TRAINING, Store  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
VARYING = {"ingested_at", "valued_at", "queued_at", "created_at", "applied_at", "seq", "ingest_seq", "at", "started_at"}


@pytest.fixture(scope="module")
def cluster():
    tmp = Path(tempfile.mkdtemp(prefix="gmvray", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    try:
        with loopback_cluster(tmp, worker_cpus=[1, 1], head_cpus=0, env=env) as c:
            yield c
        assert c.pids() == [], "processes of the test cluster outlived its stop"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, mnist_small):
    """An array file, a folder of PNGs with labels from their folders, a duplicate, a
    corrupt PNG and a non-image file, a WebDataset shard (its images read by offset
    locally, sent as bytes to the cluster): what the input stage names and skips."""
    x, y, xt, yt = mnist_small
    d = tmp_path_factory.mktemp("rayinputs")
    np.savez(d / "train.npz", images=x[:240], labels=y[:240])
    for i in range(24):
        (d / "photos" / str(y[300 + i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[300 + i]).save(d / "photos" / str(y[300 + i]) / f"p{i}.png")
    Image.fromarray(x[5]).save(d / "photos" / "dup.png")  # the same content as train.npz#5
    (d / "photos" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (d / "photos" / "notes.txt").write_text("not an image")
    np.savez(d / "gen.npz", images=xt[:12], labels=yt[:12])
    write_tar(d / "shard-000000.tar", x[400:416], y[400:416])
    return d


def ingest_args(d):
    return [str(d / "train.npz"), str(d / "photos"), str(d / "shard-000000.tar")]


def snapshot(store_dir) -> dict:
    """Every ledger table (write times left out), and every point's payload and named
    vectors (as bytes: bit for bit)."""
    out = {}
    with Store.open(store_dir) as s:
        tables = [r[0] for r in s.ledger.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
            "AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]
        for t in tables:
            cols = [c for c, ty in s.ledger.execute(
                "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = ? "
                "AND table_schema = 'main' ORDER BY ordinal_position", [t]).fetchall()
                if c not in VARYING and not ty.startswith("TIMESTAMP")]
            out[t] = s.ledger.execute(f"SELECT {', '.join(cols)} FROM {t} ORDER BY ALL").fetchall() if cols else []
        names = list(s.vector_spec())
        for coll in (TRAINING, GENERATED):
            ids = sorted(s.vectors.ids(coll))
            out[f"{coll} ids"] = ids
            for name in names:
                out[f"{coll} {name}"] = s.vectors.vectors(coll, ids, name).tobytes() if ids else b""
            payloads = {pid: {k: v for k, v in p.items() if k not in VARYING}
                        for batch in s.vectors.scroll(coll) for pid, p in batch}
            out[f"{coll} payloads"] = sorted(payloads.items())
    return out


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert a[key] == b[key], f"{key} differs"


def test_ray_cluster_gives_the_same_store_values_and_matches(cluster, inputs, tmp_path):
    one, many = tmp_path / "one", tmp_path / "many"
    for s in (one, many):
        api.init_store(s, "basic")
    r1 = api.ingest(one, ingest_args(inputs), owner="alice", workers=0, batch_size=64)
    r2 = api.ingest(many, ingest_args(inputs), owner="alice", batch_size=64, ray=cluster.address)
    assert (r2.added, r2.duplicates, r2.ignored_files) == (r1.added, r1.duplicates, r1.ignored_files) == (280, 1, 1)
    # a bad input decoded on a worker is named in the same words
    assert [(p.where, p.reason) for p in r2.problems] == [(p.where, p.reason) for p in r1.problems]
    assert len(r2.problems) == 1 and r2.problems[0].where.endswith("broken.png")
    v1 = api.value(one, [str(inputs / "gen.npz")], "g", k=5, recall=20, batch_size=5)
    v2 = api.value(many, [str(inputs / "gen.npz")], "g", k=5, recall=20, batch_size=5, ray=cluster.address)
    assert v1.valued == v2.valued == 12
    assert_same(snapshot(one), snapshot(many))
    assert api.verify(many, full=True).ok
    m1 = api.match(one, [str(inputs / "photos")], k=3, recall=12).results
    m2 = api.match(many, [str(inputs / "photos")], k=3, recall=12, ray=cluster.address).results
    assert m1 == m2 and len(m2) == 25


def test_torch_vectors_bit_for_bit_on_the_cluster(cluster, mnist_small, tmp_path):
    """The offline profile's EfficientNet-Lite0 (real weights, CPU, float32) on a worker.
    oneDNN's CPU kernels can change an image's last bits with the batch it is forwarded in
    and the thread count (docs/scale-out.md): the same batches (--batch-size, no duplicate
    or bad input shifting them) and the worker's one thread on both sides give the same bits."""
    import torch

    x, y, _, _ = mnist_small
    np.savez(tmp_path / "few.npz", images=x[:20], labels=y[:20])
    one, many = tmp_path / "one", tmp_path / "many"
    for s in (one, many):
        api.init_store(s, "basic", embedder="effnet-lite0", params={"embedder": {"size": 64, "device": "cpu"}})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a worker of 1 CPU runs torch on 1 thread (Ray sets OMP_NUM_THREADS)
    try:
        api.ingest(one, [str(tmp_path / "few.npz")], workers=0, batch_size=8)
    finally:
        torch.set_num_threads(threads)
    api.ingest(many, [str(tmp_path / "few.npz")], batch_size=8, ray=cluster.address)
    assert_same(snapshot(one), snapshot(many))


def gmv(*args, env=None, timeout=300, cwd=None):
    return subprocess.run([sys.executable, "-m", "gmv_store", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}, timeout=timeout, cwd=cwd)


def test_weights_that_differ_on_a_worker_stop_before_anything_is_written(cluster, mnist_small, tmp_path):
    from gmv_store.backends.effnet import packaged_checkpoint

    x, y, _, _ = mnist_small
    np.savez(tmp_path / "few.npz", images=x[:8], labels=y[:8])
    weights = tmp_path / "lite0.pth"
    shutil.copyfile(packaged_checkpoint(), weights)
    store = tmp_path / "s"
    api.init_store(store, "basic", embedder="effnet-lite0", params={"embedder": {"weights": str(weights)}})
    with open(weights, "ab") as f:
        f.write(b"changed")  # the file the store recorded is not the one the workers find
    r = gmv("ingest", tmp_path / "few.npz", "--store", store, "--ray", cluster.address)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert lines[0].startswith("Error: worker on node 127.0.0.1: embedder 'effnet-lite0' now loads weights"), lines
    assert api.status(store)["training_images"] == 0
    with Store.open(store) as s:
        assert s.vectors.count(TRAINING) == 0


def test_ray_version_mismatch_is_one_line(cluster, inputs, tmp_path):
    api.init_store(tmp_path / "s", "basic")
    code = ("import sys, ray; ray.__version__ = '2.0.0'; from gmv_store.cli import main; "
            f"sys.argv = ['gmv', 'ingest', {str(inputs / 'train.npz')!r}, '--store', {str(tmp_path / 's')!r}, "
            f"'--ray', {cluster.address!r}]; main()")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    assert "Ray/Python version mismatch" in lines[0] and "Ray: 2.0.0" in lines[0], lines
    assert api.status(tmp_path / "s")["training_images"] == 0


def test_unreachable_cluster_is_one_line_at_once(inputs, tmp_path):
    api.init_store(tmp_path / "s", "basic")
    t = time.monotonic()
    r = gmv("ingest", inputs / "gen.npz", "--store", tmp_path / "s", "--ray", f"127.0.0.1:{free_port()}")
    assert time.monotonic() - t < 60
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1 and "unreachable" in lines[0], r.stderr
    assert api.status(tmp_path / "s")["training_images"] == 0
    r = gmv("ingest", inputs / "gen.npz", "--store", tmp_path / "s", "--ray", "no-port")
    assert r.returncode == 1 and "expected host:port" in r.stderr
    r = gmv("ingest", inputs / "gen.npz", "--store", tmp_path / "s", env={"GMV_RAY_ADDRESS": f"127.0.0.1:{free_port()}"})
    assert r.returncode == 1 and "unreachable" in r.stderr, r.stderr  # the environment's address is used


def test_worker_layout_defaults():
    from gmv_store.distributed.cluster import Cluster
    from gmv_store.distributed.pipeline import worker_layout
    from gmv_store.distributed.settings import ClusterError, RaySettings

    cpus_only, with_gpus = Cluster([], cpus=6, gpus=0), Cluster([], cpus=32, gpus=4)
    assert worker_layout(RaySettings("a:1"), cpus_only) == (6, 0.0)      # one actor per CPU, no GPU
    assert worker_layout(RaySettings("a:1"), with_gpus) == (4, 1.0)      # one actor per GPU
    assert worker_layout(RaySettings("a:1", gpus_per_worker=0.5), with_gpus) == (8, 0.5)
    assert worker_layout(RaySettings("a:1", workers=2, gpus_per_worker=0), with_gpus) == (2, 0.0)
    with pytest.raises(ClusterError, match="the cluster has 0 GPUs"):
        worker_layout(RaySettings("a:1", gpus_per_worker=1), cpus_only)


def test_driver_killed_mid_run_resumes_to_the_same_store(cluster, mnist_small, tmp_path):
    x, y, _, _ = mnist_small
    np.savez(tmp_path / "train.npz", images=x, labels=y)
    ref, store = tmp_path / "ref", tmp_path / "killed"
    for s in (ref, store):
        api.init_store(s, "basic")
    api.ingest(ref, [str(tmp_path / "train.npz")], workers=0, batch_size=16)
    args = ["ingest", tmp_path / "train.npz", "--store", store, "--ray", cluster.address, "--batch-size", "16"]
    proc = subprocess.Popen([sys.executable, "-m", "gmv_store", *map(str, args)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not _wrote_some(store):
        time.sleep(0.05)
    time.sleep(0.5)  # a few batches in: the kill lands mid-run
    assert proc.poll() is None, "the run ended before the kill: nothing here tested a resume"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    r = gmv(*args)
    assert r.returncode == 0, r.stderr
    assert_same(snapshot(ref), snapshot(store))
    assert api.verify(store, full=True).ok


def _wrote_some(store) -> bool:
    """The writer has begun writing: its first journal row made the ledger's write-ahead log."""
    return (store / "ledger.duckdb.wal").exists()


def test_ray_local_cli(inputs, tmp_path, monkeypatch):
    """`--ray local`: a private cluster for the command, on 127.0.0.1, gone afterwards."""
    from click.testing import CliRunner

    from gmv_store.cli import cli

    raytmp = Path(tempfile.mkdtemp(prefix="gmvrayl", dir="/tmp"))
    monkeypatch.setenv("RAY_TMPDIR", str(raytmp))
    one, many = tmp_path / "one", tmp_path / "many"
    for s in (one, many):
        api.init_store(s, "basic")
    api.ingest(one, ingest_args(inputs), workers=0, batch_size=32)
    r = CliRunner().invoke(cli, ["ingest", *ingest_args(inputs), "--store", str(many), "--batch-size", "32",
                                 "--ray", "local", "--ray-workers", "2"])
    assert r.exit_code == 3, r.output  # the broken PNG: skipped and named
    assert "ingested 280 new training images (1 already stored, 1 skipped" in r.output
    assert_same(snapshot(one), snapshot(many))
    deadline = time.monotonic() + 10
    while (left := [p for p in Path("/proc").iterdir() if p.name.isdigit() and _mentions(p, str(raytmp))]) \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    shutil.rmtree(raytmp, ignore_errors=True)
    assert not left, "the private cluster outlived the command"


def _mentions(proc: Path, text: str) -> bool:
    try:
        return text.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_worker_node_lost_mid_run_finishes_with_the_same_store(cluster, tmp_path):
    """One of the two worker nodes killed (its raylet and workers, SIGKILL) while an ingest
    runs: Ray Data restarts the actor on the other node and retries its batch."""
    xs, ys = __import__("gmv_store.datasets", fromlist=["load_mnist"]).load_mnist("train")
    np.savez(tmp_path / "d.npz", images=xs[:6000], labels=ys[:6000])
    ref, store = tmp_path / "ref", tmp_path / "lost"
    for s in (ref, store):
        api.init_store(s, "basic")
    api.ingest(ref, [str(tmp_path / "d.npz")], workers=0, batch_size=128, index=False, refresh=False)
    raylets = sorted(pid for pid in cluster.pids() if b"raylet/raylet" in _cmdline(pid))
    assert len(raylets) == 3, raylets  # head, two worker nodes
    args = ["ingest", tmp_path / "d.npz", "--store", store, "--ray", cluster.address, "--ray-workers", "2",
            "--batch-size", "128", "--no-index", "--no-refresh"]
    proc = subprocess.Popen([sys.executable, "-m", "gmv_store", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not _wrote_some(store):
        time.sleep(0.05)
    time.sleep(1.0)
    assert proc.poll() is None, "the run ended before the node was lost"
    victim = raylets[-1]  # the last node started
    for pid in [victim, *_children(victim)]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert out.startswith("ingested 6,000 new training images"), out
    assert_same(snapshot(ref), snapshot(store))


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _children(pid: int) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        try:
            if p.name.isdigit() and int((p / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(p.name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def test_node_without_this_gmv_store_is_named(cluster, inputs, tmp_path):
    """Last of the module: adds a node whose Python finds another gmv_store (no Ray stages)."""
    shadow = tmp_path / "shadow" / "gmv_store"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('"""an older gmv-store without the Ray stages"""\n')
    ray_start(["--address", cluster.address, "--num-cpus", "1", "--num-gpus", "0", "--node-ip-address", "127.0.0.1",
               "--disable-usage-stats", "--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port",
               str(free_port())], {**cluster.env, "PYTHONPATH": f"{shadow.parent}:{ROOT}"})
    api.init_store(tmp_path / "s", "basic")
    # from another folder: Ray puts the driver's working folder on its workers' import path
    r = gmv("ingest", inputs / "gen.npz", "--store", tmp_path / "s", "--ray", cluster.address, cwd=tmp_path)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(lines) == 1, r.stderr
    # which check names it depends on how the node's Python resolves the shadow package (an
    # editable install's finder may still supply the submodules): both are that node's line
    assert lines[0].startswith("Error: node 127.0.0.1 "), lines
    assert (("cannot run gmv-store's stages" in lines[0] and "No module named 'gmv_store.distributed'" in lines[0])
            or "runs other gmv-store code" in lines[0]), lines
    assert api.status(tmp_path / "s")["training_images"] == 0


# ---------------------------------------------------------------------- without a cluster
def test_settings_and_windows():
    from gmv_store.distributed.pipeline import _windows
    from gmv_store.distributed.settings import RaySettings, ray_settings
    from gmv_store.errors import BadInput
    from gmv_store.sources.items import Item

    assert ray_settings(None) is None
    assert ray_settings("10.0.0.5:6379", 4, 0.5) == RaySettings("10.0.0.5:6379", 4, 0.5)
    assert ray_settings("local").loopback and ray_settings("127.0.0.1:1234").loopback
    assert not ray_settings("auto").loopback
    for bad in (("head",), (None, 2), ("local", 0), ("local", None, -1)):
        with pytest.raises(BadInput):
            ray_settings(*bad)
    items = [Item(f"x#{i}", np.zeros, None) for i in range(25)]
    by_count = list(_windows(iter(items), 4, RaySettings("local", window=8)))
    assert [len(w) for w in by_count] == [2, 2, 2, 1]  # batches of 4: two per window of 8 items
    by_bytes = list(_windows(iter(items), 4, RaySettings("local", window_bytes=1)))
    assert [len(w) for w in by_bytes] == [1] * 7


def test_worker_failure_found_in_ray_text():
    from gmv_store.distributed.pipeline import worker_failure

    text = ("ray::MapWorker(MapBatches(decode_rows)->MapBatches(Forwards)).submit() (pid=1, ip=127.0.0.1)\n"
            "  File \"stages.py\", line 90, in __call__\n"
            "gmv_store.distributed.stages.WorkerFailure: worker on node 127.0.0.1: weights differ; fix: restore them")
    outer = RuntimeError("wrapped")
    outer.__cause__ = RuntimeError(text)
    assert worker_failure(outer) == "worker on node 127.0.0.1: weights differ; fix: restore them"
    assert worker_failure(RuntimeError("something else")) is None


def test_ray_core_lines_dropped_from_stderr_only():
    code = ("import os; from gmv_store.distributed.quiet import ray_core_logs_dropped\n"
            "with ray_core_logs_dropped():\n"
            "    os.write(2, b'[2026-12-06 08:00:17,364 E 22225 22225] core_worker.cc:2465: Actor with class name\\n')\n"
            "    os.write(2, b'skipped: a.png: not an image\\n')\n"
            "os.write(2, b'Error: after\\n')\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.stderr == "skipped: a.png: not an image\nError: after\n", r.stderr
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "GMV_DEBUG": "1"})
    assert "core_worker.cc" in r.stderr
