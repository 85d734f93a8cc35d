"""The scale benchmark (issue 10): a training set as it ships, ingested, indexed and valued
on this machine, every figure beside its floor from the same run.

    .venv/bin/python benchmarks/scale.py                    # rows 60k (valuation vs numpy floor), 100k, 1M
    .venv/bin/python benchmarks/scale.py --sizes 100000     # one row
    .venv/bin/python benchmarks/scale.py --quick            # 10k, seconds: what the test suite runs

Per size n: n distinct images made from MNIST by seeded augmentation (shifts, small rotations,
noise; benchmarks/make_shards.py) as Parquet shards; the decode+embed floor (the same images
decoded and embedded with the basic profile, no store); `gmv ingest --no-index` (a child
process: its peak RSS); `gmv index` (HNSW m 16, ef_construct 100) and, on a copy, the same with
int8 quantization and the original vectors on disk (`gmv index --quantization int8 --on-disk`); 1,000 MNIST test digits valued through the index and with --exact; the
recall stage of the index against exact search (recall@N) and the final top-k overlap; at the
sizes that fit (--floor-max), the numpy brute-force floor of the whole valuation.
Results go to WORK/results-N.json and a Markdown table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

K, RECALL = 50, 500


def child(code: str, env=None) -> tuple[dict, float, int]:
    """Run Python `code` (which prints one JSON object last) in a child process: (its
    result, wall seconds, peak RSS bytes of that child, from wait4)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=err, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"benchmark step failed ({proc.returncode}):\n{err.read()[-2000:]}")
        return json.loads(out.read().strip().splitlines()[-1]), wall, usage.ru_maxrss * 1024


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def floor_decode_embed(shards: Path, sample: int, workers: int) -> dict:
    code = f"""
import json, time, itertools
from gmv_store.backends import registry
from gmv_store.backends.named import batch_vectors, embed_named, worker_embedding
from gmv_store.sources import InputOptions, InputReport, read_batches
emb = registry.create("embedder", "pixels", {{}}); rr = registry.create("rerank", "l2", {{}})
# as ingest does: light models embed in the decoding workers (the serial head here)
embed = worker_embedding(emb, rr) if {workers} > 1 else None
rep = InputReport(); n = 0; t = time.perf_counter()
for batch in read_batches([{str(shards)!r}], InputOptions(), 512, rep, workers={workers}, embed=embed):
    batch_vectors(batch, lambda px: embed_named(emb, rr, px))
    n += len(batch)
    if n >= {sample}: break
print(json.dumps({{"images": n, "seconds": time.perf_counter() - t}}))
"""
    res, _, _ = child(code)
    res["rate"] = res["images"] / res["seconds"]
    return res


def gmv_step(args: list[str]) -> tuple[dict, float, int]:
    code = f"""
import json, sys, time
from click.testing import CliRunner
from gmv_store.cli import cli
t = time.perf_counter()
r = CliRunner().invoke(cli, {args!r}, catch_exceptions=False)
if r.exit_code: sys.stderr.write(r.output); sys.exit(r.exit_code)
print(json.dumps({{"seconds": time.perf_counter() - t, "output": r.output}}))
"""
    return child(code)


def value_step(store: Path, gen: Path, set_name: str, exact: bool) -> tuple[dict, float, int]:
    # the store opened first and timed apart: opening a 1M-point shard costs seconds once
    # per command, which 1,000 images would otherwise carry as milliseconds each
    code = f"""
import json, time
from gmv_store.store import Store, TRAINING
from gmv_store.query.value import value
t = time.perf_counter()
s = Store.open({str(store)!r})
try:
    s.vectors.count(TRAINING)
    opened = time.perf_counter() - t
    r = value(s, [{str(gen)!r}], {set_name!r}, k={K}, recall={RECALL}, exact={exact})
finally:
    s.close()
print(json.dumps({{"valued": r.valued, "seconds": r.seconds, "timings": r.timings, "open_s": opened}}))
"""
    return child(code)


def compare_search(store: Path, limit: int) -> dict:
    """The recall stage through the index against exact search, on the generated vectors."""
    code = f"""
import json, time, numpy as np
from gmv_store.store import Store, TRAINING, GENERATED
from gmv_store.vectors import Query
s = Store.open({str(store)!r})
try:
    pids = [r[0] for r in s.ledger.execute("SELECT point_id FROM generated_images WHERE set_name = 'hnsw' ORDER BY 1").fetchall()]
    vecs = s.vectors.vectors(GENERATED, pids, "recall")
    def run(**o):
        t = time.perf_counter(); res = s.vectors.query(TRAINING, [Query({{"recall": v}}, "recall", {limit}, **o) for v in vecs])
        return [set(p for p, _ in h) for h in res], (time.perf_counter() - t) / len(vecs)
    ex, t_ex = run(exact=True)
    ap, t_ap = run(**s.search_options({limit}))
    rec = float(np.mean([len(a & e) / len(e) for a, e in zip(ap, ex)]))
    top = dict(s.ledger.execute("SELECT generated_id, list(contributor_id) FROM credits WHERE set_name = 'hnsw' "
                                "GROUP BY 1").fetchall())
    print(json.dumps({{"exact_ms": 1000 * t_ex, "hnsw_ms": 1000 * t_ap, "recall_at_N": rec, "top": top,
                      "ef": s.search_options({limit}).get("ef")}}))
finally:
    s.close()
"""
    res, _, _ = child(code)
    return res


def exact_top(store: Path) -> dict:
    code = f"""
import json
from gmv_store.ledger import open_ledger_readonly
con = open_ledger_readonly({str(store)!r})
print(json.dumps(dict(con.execute("SELECT generated_id, list(contributor_id) FROM credits WHERE set_name = 'exact' GROUP BY 1").fetchall())))
"""
    return child(code)[0]


def overlap(a: dict, b: dict) -> float:
    return sum(len(set(a[g]) & set(b[g])) / len(b[g]) for g in b) / len(b)


def numpy_floor(store: Path, gen: Path) -> dict:
    """The whole valuation as numpy brute force over the stored vectors: exact top-N by the
    recall vector, then the top-k of those by the re-rank distance."""
    code = f"""
import json, time, numpy as np
from gmv_store.store import Store, TRAINING
from gmv_store.sources import InputOptions, InputReport, read_batches
s = Store.open({str(store)!r})
try:
    ids = sorted(s.vectors.ids(TRAINING))
    R = np.concatenate([s.vectors.vectors(TRAINING, ids[i:i + 20000], "recall") for i in range(0, len(ids), 20000)])
    L = np.concatenate([s.vectors.vectors(TRAINING, ids[i:i + 20000], "rerank") for i in range(0, len(ids), 20000)])
    px = [d.pixels for b in read_batches([{str(gen)!r}], InputOptions(), 1000, InputReport()) for d in b]
    q = s.embed(px)
    t = time.perf_counter()
    Rn = R / np.maximum(np.linalg.norm(R, axis=1, keepdims=True), 1e-12)
    qn = q["recall"] / np.maximum(np.linalg.norm(q["recall"], axis=1, keepdims=True), 1e-12)
    for i in range(0, len(qn), 100):
        sims = qn[i:i + 100] @ Rn.T
        cand = np.argpartition(-sims, {RECALL}, axis=1)[:, :{RECALL}]
        for j, c in enumerate(cand):
            d = np.linalg.norm(L[c] - q["rerank"][i + j], axis=1)
            c[np.argsort(d)[:{K}]]
    print(json.dumps({{"ms_per_image": 1000 * (time.perf_counter() - t) / len(qn)}}))
finally:
    s.close()
"""
    res, _, _ = child(code)
    return res


def one_size(n: int, work: Path, args) -> dict:
    from make_shards import make_augmented_mnist

    out: dict = {"n": n}
    shards = work / f"shards-{n}"
    t = time.perf_counter()
    make_augmented_mnist(n, shards, format="parquet")
    out["make_shards_s"] = time.perf_counter() - t
    gen = work / "gen.npz"
    if not gen.exists():
        import numpy as np

        from gmv_store.datasets import load_mnist

        xt, yt = load_mnist("test")
        np.savez(gen, images=xt[:args.generated], labels=yt[:args.generated])
    floor = floor_decode_embed(shards, min(n, args.floor_sample), args.workers)
    out["floor_rate"] = floor["rate"]
    store = work / f"store-{n}"
    shutil.rmtree(store, ignore_errors=True)
    gmv_step(["init", "--store", str(store), "--index", "hnsw"])
    res, wall, rss = gmv_step(["ingest", str(shards), "--no-index", "--workers", str(args.workers), "--store", str(store)])
    out.update(ingest_s=res["seconds"], ingest_rate=n / res["seconds"], ingest_rss=rss)
    out["ingest_vs_floor"] = out["ingest_rate"] / out["floor_rate"]
    out["disk_per_image"] = dir_bytes(store) / n
    copy = work / f"store-{n}-int8"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(store, copy)
    res, wall, rss = gmv_step(["index", "--store", str(store)])
    out.update(index_s=res["seconds"], index_rss=rss)
    res, wall, rss = gmv_step(["index", "--quantization", "int8", "--on-disk", "--store", str(copy)])
    out.update(index_int8_s=res["seconds"], index_int8_rss=rss)
    for name, exact in (("hnsw", False), ("exact", True)):
        res, wall, rss = value_step(store, gen, name, exact)
        t = res["timings"]
        out[f"value_{name}_ms"] = 1000 * res["seconds"] / res["valued"]
        out[f"value_{name}_forwards_ms"] = 1000 * (t["embed"] + t["quality"]) / res["valued"]
        out[f"value_{name}_rss"] = rss
        out[f"value_{name}_open_s"] = res["open_s"]
    exact = exact_top(store)
    found = compare_search(store, RECALL + 8)
    found["topk_overlap"] = overlap(found.pop("top"), exact)
    out.update({f"search_{k}": v for k, v in found.items()})
    out["recall_speedup"] = out["search_exact_ms"] / out["search_hnsw_ms"]
    res, wall, rss = value_step(copy, gen, "hnsw", False)
    out["value_int8_ms"] = 1000 * res["seconds"] / res["valued"]
    out["value_int8_open_s"] = res["open_s"]
    out["value_int8_rss"] = rss
    found = compare_search(copy, RECALL + 8)
    found["topk_overlap"] = overlap(found.pop("top"), exact)
    out.update({f"int8_{k}": v for k, v in found.items()})
    if n <= args.floor_max:
        out["numpy_floor_ms"] = numpy_floor(store, gen)["ms_per_image"]
        out["value_vs_floor"] = out["value_hnsw_ms"] / out["numpy_floor_ms"]
        out["value_exact_vs_floor"] = out["value_exact_ms"] / out["numpy_floor_ms"]
    if not args.keep:
        shutil.rmtree(copy, ignore_errors=True)
    (work / f"results-{n}.json").write_text(json.dumps(out, indent=1))
    return out


def table(rows: list[dict]) -> str:
    gb = lambda b: f"{b / 2**30:.2f} GB"  # noqa: E731
    lines = [
        ("training images", lambda r: f"{r['n']:,}"),
        ("ingest (parquet shards, --no-index)", lambda r: f"{r['ingest_s']:.0f} s, {r['ingest_rate']:,.0f} img/s"),
        ("decode+embed floor (same images)", lambda r: f"{r['floor_rate']:,.0f} img/s"),
        ("ingest / floor", lambda r: f"{r['ingest_vs_floor']:.2f}"),
        ("peak RSS: ingest", lambda r: gb(r["ingest_rss"])),
        ("disk per training image", lambda r: f"{r['disk_per_image'] / 1024:.1f} KiB"),
        ("HNSW build (m 16, ef_construct 100)", lambda r: f"{r['index_s']:.0f} s, peak RSS {gb(r['index_rss'])}"),
        ("HNSW + int8 build, originals on disk", lambda r: f"{r['index_int8_s']:.0f} s, peak RSS {gb(r['index_int8_rss'])}"),
        ("recall stage exact / HNSW (ms/query, N=508)", lambda r: f"{r['search_exact_ms']:.2f} / {r['search_hnsw_ms']:.2f} "
                                                                   f"(ef {r['search_ef']}; {r['recall_speedup']:.1f}x)"),
        ("recall@N of the index vs exact", lambda r: f"{r['search_recall_at_N']:.4f} (int8: {r['int8_recall_at_N']:.4f})"),
        ("final top-k overlap, index vs exact", lambda r: f"{r['search_topk_overlap']:.4f} (int8: {r['int8_topk_overlap']:.4f})"),
        ("opening the store, once per command (s): index / int8", lambda r: f"{r.get('value_hnsw_open_s', float('nan')):.1f} / "
                                                                          f"{r.get('value_int8_open_s', float('nan')):.1f}"),
        ("valuation ms/image: index / exact / int8", lambda r: f"{r['value_hnsw_ms']:.2f} / {r['value_exact_ms']:.2f} / "
                                                             f"{r['value_int8_ms']:.2f} (forwards {r['value_hnsw_forwards_ms']:.2f})"),
        ("peak RSS: valuation (index in RAM / int8 + on disk)", lambda r: f"{gb(r['value_hnsw_rss'])} / {gb(r['value_int8_rss'])}"),
        ("numpy floor of the valuation (ms/image)", lambda r: f"{r['numpy_floor_ms']:.2f}; index {r['value_vs_floor']:.2f}x, "
                                                            f"exact {r['value_exact_vs_floor']:.2f}x" if "numpy_floor_ms" in r else "–"),
    ]
    out = ["| | " + " | ".join(f"{r['n']:,}" for r in rows) + " |", "|---|" + "---|" * len(rows)]
    for name, fmt in lines[1:]:
        out.append(f"| {name} | " + " | ".join(fmt(r) for r in rows) + " |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="60000,100000,1000000", help="comma-separated training set sizes")
    ap.add_argument("--generated", type=int, default=1000, help="generated images valued (MNIST test digits)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    ap.add_argument("--floor-sample", type=int, default=50_000, help="images decoded+embedded for the floor rate")
    ap.add_argument("--floor-max", type=int, default=100_000, help="largest n with a numpy valuation floor")
    ap.add_argument("--work", default=None, help="work folder (shards are kept and reused) [a temporary one]")
    ap.add_argument("--keep", action="store_true", help="keep the int8 store copies")
    ap.add_argument("--quick", action="store_true", help="one 10,000-image row, 200 generated images")
    a = ap.parse_args()
    if a.quick:
        a.sizes, a.generated, a.floor_sample = "10000", 200, 10_000
    work = Path(a.work or (Path(os.environ.get("TMPDIR", "/tmp")) / "gmv-scale"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in [int(x) for x in a.sizes.split(",")]:
        print(f"== {n:,} training images ({work})", file=sys.stderr, flush=True)
        rows.append(one_size(n, work, a))
        print(table(rows[-1:]), file=sys.stderr, flush=True)
    print(table(rows))


if __name__ == "__main__":
    main()
