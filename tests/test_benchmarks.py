"""The benchmarks' --quick modes: each runs end to end on this machine and reports what the
full runs report (the numbers themselves are the full runs' business, not a test's)."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bench(script: str, *args: str, timeout: int = 600) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_scale_quick(tmp_path):
    out = bench("scale.py", "--quick", "--work", str(tmp_path))
    res = json.loads((tmp_path / "results-10000.json").read_text())
    assert res["n"] == 10_000 and "| ingest / floor |" in out
    for key in ("ingest_rate", "floor_rate", "index_s", "index_int8_s", "value_hnsw_ms", "value_exact_ms",
                "value_int8_ms", "numpy_floor_ms", "search_exact_ms", "search_hnsw_ms"):
        assert res[key] > 0, key
    # the index is searched, and it finds what exact search finds at this size
    assert res["search_recall_at_N"] >= 0.98 and res["search_topk_overlap"] >= 0.99, res
    assert res["int8_recall_at_N"] >= 0.98 and res["int8_topk_overlap"] >= 0.99, res
    assert 0 < res["ingest_rss"] < 4 * 2**30 and res["disk_per_image"] > 0


def test_incremental_quick(tmp_path):
    out = bench("incremental.py", "--quick", "--near", "--dir", str(tmp_path))
    rows = re.findall(r"^\| ([ABCD])\. .*? \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)% \|", out, flags=re.M)
    assert [r[0] for r in rows] == ["A", "B", "C", "D"], out
    for _, inc, full, ratio in rows:
        assert float(inc) > 0 and float(full) > 0 and float(ratio) > 0
    assert re.search(r"B: .*find [\d.]+s, merge [\d.]+s", out)
    assert re.search(r"D: .*find [\d.]+s, merge [\d.]+s", out)


def test_quality_share_quick():
    out = bench("quality_share.py", "--quick")
    rows = json.loads(out.splitlines()[0])
    assert len(rows) == 1 and rows[0]["valued"] == 200 and 0 < rows[0]["quality"] < rows[0]["seconds"], rows
    assert re.search(r"^\| \. \| 200 \| [\d.]+ \| [\d.]+ \| [\d.]+ % \| [\d.]+ / [\d.]+ = [\d.]+ \+ [\d.]+ \| [\d.]+ % \|$",
                     out, flags=re.M), out


def test_index_crossing_quick():
    out = bench("index_crossing.py", "--sizes", "2000,4000", "--queries", "20", "--rounds", "1")
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert [r["points"] for r in rows] == [2000, 4000], out
    for r in rows:  # the graph is built at each size, and both searches are timed
        assert r["indexed_points"] == r["points"] and r["index_ms"] > 0 and r["exact_ms"] > 0, r
    assert "| 4,000 | " in out


def test_ledger_small():
    out = bench("ledger.py", "--training", "2000", "--generated", "200", "--k", "10")
    assert re.search(r"ledger: 2,000 credit rows", out), out
    assert len(re.findall(r"^\S.* +\d+\.\d$", out, flags=re.M)) == 5, out


def test_engine_costs_quick():
    out = bench("engine_costs.py", "--quick", "--queries", "40", "--rounds", "1")
    res = json.loads(out.splitlines()[0])
    assert res["points"] == 3000 and res["queries"] == 40 and res["ef"] >= res["limit"] == 559
    for call in ("recall_index", "recall_index_lowest_ef", "recall_exact", "rerank", "fetch"):
        assert res[f"{call}_ms"] > 0 and res[f"{call}_cpu_per_wall"] > 0, call
    for call in ("recall_index", "recall_index_lowest_ef"):  # 3,000 points: the graph finds what a scan finds
        assert res[f"{call}_recall_at_N"] >= 0.98 and res[f"{call}_topk_overlap"] >= 0.99, res
    assert "| re-rank among the 500 recalled ids |" in out


def test_precomputed_quick():
    out = bench("precomputed.py", "--quick")
    res = json.loads(out.splitlines()[-1])
    assert res["n"] == 3000 and res["dim"] == 768 and res["images"] == 1000
    for key in ("bare_upsert_s", "ingest_s", "ratio", "read_hash_floor_s", "ingest_images_s", "images_ratio"):
        assert res[key] > 0, key
    assert "ingest --vectors / bare upsert (rate ratio, goal >= 0.8)" in out


def test_ingest_shards_quick(tmp_path):
    out = bench("ingest_shards.py", "--quick", "--dir", str(tmp_path))
    res = json.loads((tmp_path / "results.json").read_text())
    for fmt in ("parquet", "webdataset"):
        r = res[f"rate {fmt}"]
        for w in (0, 1, 2):
            assert r[f"floor w{w}"] > 0 and r[f"ingest w{w}"] > 0, (fmt, w)
            assert 0 < r[f"ingest w{w} / slower floor"] <= r[f"ingest w{w} / packed bound"] * 1.0001, (fmt, w)
    assert out.count("ingest / the slower floor") == 6


def test_ray_scale_quick(tmp_path):
    import pytest

    pytest.importorskip("ray", reason="needs the ray extra: pip install 'gmv-store[ray]'")
    out = bench("ray_scale.py", "--quick", "--work", str(tmp_path))
    res = json.loads(out.splitlines()[0])
    for key in ("offline_one_process_rate", "offline_ray_1_rate", "basic_one_process_rate", "basic_ray_rate",
                "ray_vs_one_process_offline", "ray_vs_one_process_basic"):
        assert res[key] > 0, key
    assert res["left_processes"] == 0 and res["gpu"].startswith("not measured")
    assert "| --ray / one process (offline, equal cores) |" in out
