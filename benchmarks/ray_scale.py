"""`--ray` against one process, side by side in one run, on a loopback Ray cluster of this
machine (a head with 0 CPUs and two worker nodes of 1 CPU each):

  1. offline profile (EfficientNet-Lite0, real weights, embed-bound): `gmv ingest` of the
     same images in one process (torch on the machine's cores), with --ray and 1 forward
     actor (one node used), with --ray and 2 actors (both nodes)
  2. basic profile (pixels, no torch: Ray's own overhead shows): one process against --ray
     with 2 actors
  3. the driver's peak RSS with --ray (basic profile): --rss-big images against --rss-small

Every figure is the whole command's wall clock (connect, actor start, writes, index), as a
user sees it. The machine has 2 cores: the writer (the gmv process) shares them with the two
worker nodes, so the 2-node figure is bounded by that (reported, not hidden). GPU forwards
are not measured here (no GPU on this machine); `--gpu` is for a machine with one.

    .venv/bin/python benchmarks/ray_scale.py [--offline 4000] [--basic 60000] [--quick] [--gpu]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]
os.environ["RAY_AUTH_MODE"] = "disabled"  # as the loopback cluster: its drivers must say so too

from gmv_store import api  # noqa: E402
from gmv_store.datasets import load_mnist  # noqa: E402
from gmv_store.distributed.loopback import loopback_cluster  # noqa: E402


def gmv_ingest(store: Path, data: Path, *extra: str) -> tuple[float, int, float]:
    """(seconds, images added, peak RSS MiB of the gmv process) of one `gmv ingest`."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "gmv_store", "ingest", str(data), "--store", str(store),
                             "--no-index", "--no-refresh", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, text=True)
    _, _, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    out, err = proc.stdout.read(), proc.stderr.read()
    if not out.startswith("ingested"):
        raise SystemExit(f"gmv ingest {' '.join(extra)} failed: {err[-2000:]}")
    added = int(out.split()[1].replace(",", ""))
    return seconds, added, usage.ru_maxrss / 1024


def fresh(work: Path, name: str, profile: str, **kw) -> Path:
    store = work / name
    shutil.rmtree(store, ignore_errors=True)
    api.init_store(store, profile, **kw)
    return store


def images(work: Path, n: int, name: str) -> Path:
    x, y = load_mnist("train")
    path = work / f"{name}.npz"
    np.savez(path, images=x[:n], labels=y[:n])
    return path


def run(args) -> dict:
    work = Path(args.work or tempfile.mkdtemp(prefix="gmvbench"))
    res: dict = {"cores": len(os.sched_getaffinity(0)), "nodes": args.nodes, "offline_n": args.offline, "basic_n": args.basic,
                 "rss_small": args.rss_small, "rss_big": args.rss_big, "gpu": "not measured (no GPU here)"}
    ray_tmp = Path(tempfile.mkdtemp(prefix="gmvrb", dir="/tmp"))  # short: Ray's socket paths
    env = {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    try:
        t = time.perf_counter()
        with loopback_cluster(ray_tmp, worker_cpus=[1] * args.nodes, head_cpus=0, env=env) as c:
            res["cluster_start_s"] = time.perf_counter() - t
            bs = str(args.batch)
            off = images(work, args.offline, "offline")
            runs = [] if "offline" not in args.parts else [("offline_one_process", ["--workers", "0"]),
                    ("offline_ray_1", ["--ray", c.address, "--ray-workers", "1"])]
            if args.nodes > 1 and runs:
                runs.append(("offline_ray_2", ["--ray", c.address, "--ray-workers", "2"]))
            for label, extra in runs:
                s, added, _ = gmv_ingest(fresh(work, label, "offline"), off, "--batch-size", bs, *extra)
                assert added == args.offline, (label, added)
                res[f"{label}_s"] = s
                res[f"{label}_rate"] = added / s
            basic = images(work, args.basic, "basic")
            for label, extra in (("basic_one_process", ["--workers", "0"]),
                                 ("basic_ray", ["--ray", c.address, "--ray-workers", str(args.nodes)])
                                 ) if "basic" in args.parts else ():
                s, added, _ = gmv_ingest(fresh(work, label, "basic"), basic, "--batch-size", "512", *extra)
                res[f"{label}_s"] = s
                res[f"{label}_rate"] = added / s
            for label, n in ((("small", args.rss_small), ("big", args.rss_big))
                             if args.rss_big and "rss" in args.parts else ()):
                data = images(work, n, f"rss_{label}")
                _, _, rss = gmv_ingest(fresh(work, f"rss_{label}", "basic"), data, "--batch-size", "512",
                                       "--ray", c.address, "--ray-workers", str(args.nodes))
                res[f"driver_rss_{label}_mib"] = rss
        res["left_processes"] = len(c.pids())
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    g = res.get
    ray_all = g("offline_ray_2_rate", g("offline_ray_1_rate"))
    res["scaling_2_vs_1"] = g("offline_ray_2_rate") / g("offline_ray_1_rate") if g("offline_ray_2_rate") else None
    res["ray_vs_one_process_offline"] = ray_all / g("offline_one_process_rate") if ray_all else None
    res["ray_vs_one_process_basic"] = g("basic_ray_rate") / g("basic_one_process_rate") if g("basic_ray_rate") else None
    res["driver_rss_ratio"] = g("driver_rss_big_mib") / g("driver_rss_small_mib") if g("driver_rss_big_mib") else None
    return res


def _f(x, fmt: str) -> str:
    return "not run" if x is None else format(x, fmt)


def table(r: dict) -> str:
    g = r.get
    rows = [
        ("offline, one process (torch on all cores)", _f(g("offline_one_process_rate"), ".1f"), _f(g("offline_one_process_s"), ".1f")),
        ("offline, --ray, 1 actor (1 node)", _f(g("offline_ray_1_rate"), ".1f"), _f(g("offline_ray_1_s"), ".1f")),
        ("offline, --ray, 2 actors (2 nodes)", _f(g("offline_ray_2_rate"), ".1f"), _f(g("offline_ray_2_s"), ".1f")),
        ("basic, one process", _f(g("basic_one_process_rate"), ".0f"), _f(g("basic_one_process_s"), ".1f")),
        ("basic, --ray, one actor per node", _f(g("basic_ray_rate"), ".0f"), _f(g("basic_ray_s"), ".1f")),
        (f"driver peak RSS MiB, {r['rss_small']:,} images", _f(g("driver_rss_small_mib"), ".0f"), ""),
        (f"driver peak RSS MiB, {r['rss_big']:,} images", _f(g("driver_rss_big_mib"), ".0f"), ""),
    ]
    lines = [f"| run ({r['cores']} cores, {r['nodes']} worker nodes; offline {r['offline_n']:,} images, basic "
             f"{r['basic_n']:,}) | img/s | wall s |",
             "|---|---|---|", *[f"| {a} | {b} | {c} |" for a, b, c in rows],
             f"| 2 nodes / 1 node (offline) | {_f(g('scaling_2_vs_1'), '.2f')} | |",
             f"| --ray / one process (offline, equal cores) | {_f(g('ray_vs_one_process_offline'), '.2f')} | |",
             f"| --ray / one process (basic) | {_f(g('ray_vs_one_process_basic'), '.2f')} | |",
             f"| driver RSS big / small | {_f(g('driver_rss_ratio'), '.2f')} | |",
             f"| cluster start | | {r['cluster_start_s']:.1f} |",
             f"| GPU | {r['gpu']} | |"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--offline", type=int, default=4000, help="images for the offline-profile runs")
    p.add_argument("--basic", type=int, default=60_000, help="images for the basic-profile runs")
    p.add_argument("--rss-small", type=int, default=6_000)
    p.add_argument("--rss-big", type=int, default=60_000)
    p.add_argument("--batch", type=int, default=64, help="--batch-size of the offline runs")
    p.add_argument("--nodes", type=int, default=2, choices=(1, 2), help="worker nodes of 1 CPU")
    p.add_argument("--quick", action="store_true", help="a small run for the test suite")
    p.add_argument("--gpu", action="store_true", help="on a GPU machine: not supported by this run yet")
    p.add_argument("--parts", type=lambda v: set(v.split(",")), default={"offline", "basic", "rss"},
                   help="which runs: offline,basic,rss [default: all]")
    p.add_argument("--work", default=None)
    args = p.parse_args()
    if args.gpu:
        raise SystemExit("--gpu: not measured; this benchmark has run on CPU machines only (see docs/scale-out.md)")
    if args.quick:
        # the suite's budget: one worker node, tiny inputs, no RSS pair (ratios are the full run's business)
        args.offline, args.basic, args.rss_small, args.rss_big, args.batch, args.nodes = 8, 500, 0, 0, 8, 1
        args.parts = {"offline", "basic"}
    r = run(args)
    print(json.dumps(r, sort_keys=True))
    print(table(r))


if __name__ == "__main__":
    main()
