"""`gmv demo`'s time for one or more code trees, and proof that they give the same results.

Each tree runs the demo (`run_demo`, the code `gmv demo` runs) into its own temporary store in
a fresh process, from a neutral working directory (`python -c` and `-m` put the working
directory first on sys.path: run from a checkout, every tree would import that checkout).
Prints each run's wall seconds (total and per step, as the demo counts them), the CPU seconds
of the run and every process it started, the load average, rho at k = 30/50/100, and whether
the generated images are byte for byte those of the first tree.

    PYTHONPATH=. .venv/bin/python benchmarks/demo_time.py --trees /path/to/main .   # one after the other
    ... --rounds 2            # again, in the reverse order
    ... --together            # all trees at once (same load for each)
    ... --quick               # the demo's --quick (5,000 training images)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from md_table import markdown_table  # benchmarks/, the script's own folder

CHILD = """
import json, sys
import gmv_store
from gmv_store.demo import run_demo
r = run_demo(sys.argv[1], m=int(sys.argv[2]), quick=sys.argv[3] == "1", echo=lambda *a, **k: None)
print(json.dumps({"timings": r["timings"], "rho": [x["rho"] for x in r["rho"]], "code": gmv_store.__file__}))
"""


def generated_digest(store: Path) -> str:
    """sha256 over the generated PNGs (relative path and bytes), in path order."""
    h = hashlib.sha256()
    for p in sorted((store / "demo-generated").rglob("*.png")):
        h.update(str(p.relative_to(store)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def start(tree: str, store: Path, work: Path, m: int, quick: bool) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve()), "HF_HUB_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(store), str(m), "1" if quick else "0"], env=env,
                            cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(tree: str, p: subprocess.Popen, store: Path, t0: float, cpu0: float) -> dict:
    out, err = p.communicate()
    if p.returncode:
        raise SystemExit(f"{tree}: the demo failed: {err.strip().splitlines()[-1] if err.strip() else p.returncode}")
    row = json.loads(out.strip().splitlines()[-1])
    if not Path(row["code"]).resolve().is_relative_to(Path(tree).resolve()):
        raise SystemExit(f"{tree}: the demo ran {row['code']}, not this tree's code")
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"tree": tree, **row, "wall": time.perf_counter() - t0, "cpu": u.ru_utime + u.ru_stime - cpu0,
            "digest": generated_digest(store), "load": os.getloadavg()[0]}


def children_cpu() -> float:
    u = resource.getrusage(resource.RUSAGE_CHILDREN)
    return u.ru_utime + u.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", nargs="+", default=["."], help="code trees (PYTHONPATH of each run)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds; every other one in the reverse order")
    ap.add_argument("--together", action="store_true", help="run the trees of a round at once")
    ap.add_argument("--m", type=int, default=100, help="generated images (the demo's --m)")
    ap.add_argument("--quick", action="store_true", help="the demo's --quick")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gmv-demo-time-") as tmp:
        work = Path(tmp)
        for rnd in range(a.rounds):
            order = list(enumerate(a.trees))[:: -1 if rnd % 2 else 1]
            load0 = os.getloadavg()[0]
            if a.together:  # CPU of children all at once: one figure for the round
                t0, cpu0 = time.perf_counter(), children_cpu()
                procs = [(i, tree, start(tree, work / f"r{rnd}-{i}", work, a.m, a.quick)) for i, tree in order]
                got = [finish(tree, p, work / f"r{rnd}-{i}", t0, cpu0) for i, tree, p in procs]
                for r in got:
                    r["cpu"] = float("nan")  # not separable per tree when they run at once
            else:
                got = []
                for i, tree in order:
                    t0, cpu0 = time.perf_counter(), children_cpu()
                    got.append(finish(tree, start(tree, work / f"r{rnd}-{i}", work, a.m, a.quick),
                                      work / f"r{rnd}-{i}", t0, cpu0))
            for r in got:
                rows.append({**r, "round": rnd + 1, "load_start": load0})
    print(json.dumps(rows))
    first = rows[0]["digest"]
    print(markdown_table(
        ["round", "tree", "load (start→end)", "wall (s)", "demo total (s)", "ingest / generate / value (s)",
         "CPU (s)", "rho k30/50/100 %", "same images"],
        [[str(r["round"]), r["tree"], f"{r['load_start']:.1f}→{r['load']:.1f}", f"{r['wall']:.1f}",
          f"{r['timings']['total']:.1f}",
          f"{r['timings']['ingest']:.1f} / {r['timings']['generate']:.1f}"
          f"{' (+' + format(r['timings']['generate_wait'], '.1f') + ' waited)' if 'generate_wait' in r['timings'] else ''}"
          f" / {r['timings']['value']:.1f}",
          f"{r['cpu']:.1f}", " / ".join(f"{100 * x:.2f}" for x in r["rho"]), "yes" if r["digest"] == first else "NO"]
         for r in rows]))


if __name__ == "__main__":
    main()
