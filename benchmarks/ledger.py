"""How far one DuckDB ledger goes: a ledger with 10,000,000 credit rows (200,000 generated
images x k = 50 over 1,000,000 training images, 2 sets) and the lookups users run on it,
timed through the same read-only paths the CLI uses.

    python benchmarks/ledger.py                 # 10M credit rows
    python benchmarks/ledger.py --generated 20000 --quick
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import duckdb  # noqa: E402

from gmv_store.migrate import migrate  # noqa: E402


def build(path: Path, n_train: int, n_gen: int, k: int, sets: int) -> None:
    con = duckdb.connect(str(path))
    migrate(con)
    con.execute(f"""INSERT INTO training_images SELECT printf('%016x', i * 2654435761 % 18446744073709551557),
        i, printf('%064x', i), 'shard-' || (i // 10000) || '.parquet#' || (i % 10000), 'owner' || (i % 1000),
        (i % 10)::VARCHAR, '{{}}', 28, 28, 1, now()::TIMESTAMP FROM range({n_train}) t(i)""")
    for s in range(sets):
        con.execute("INSERT INTO generated_sets (set_name, k, recall, exact, created_at) VALUES (?, ?, ?, false, now())",
                    [f"set{s}", k, 10 * k])
        con.execute(f"""INSERT INTO generated_images (set_name, generated_id, point_id, sha256, source, label, meta,
            quality, valued_at) SELECT 'set{s}', printf('%016x', {s} * 1000000000 + g), g, '',
            'gen.npz#' || g, (g % 10)::VARCHAR, '{{}}', 0.5 + (g % 7) / 20.0, now()::TIMESTAMP
            FROM range({n_gen // sets}) t(g)""")
        # each generated image credits k training images, spread so that popular ones recur
        con.execute(f"""INSERT INTO credits (set_name, generated_id, contributor_id, rank, distance, credit)
            SELECT 'set{s}', printf('%016x', {s} * 1000000000 + g),
            printf('%016x', ((g * 7919 + r * r * 104729) % {n_train}) * 2654435761 % 18446744073709551557),
            r + 1, r / {k}::DOUBLE, 1.0 / {k} FROM range({n_gen // sets}) t(g), range({k}) u(r)""")
        con.execute(f"""INSERT INTO value_sums SELECT set_name, contributor_id, sum(credit), count(*) FROM credits
            WHERE set_name = 'set{s}' GROUP BY ALL""")
    con.execute("CHECKPOINT")
    con.close()


def timed(con, sql: str, params=(), repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        con.execute(sql, list(params)).fetchall()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--training", type=int, default=1_000_000)
    ap.add_argument("--generated", type=int, default=200_000)
    ap.add_argument("--k", type=int, default=50)
    ap.add_argument("--quick", action="store_true", help="20,000 generated images over 100,000 training images")
    a = ap.parse_args()
    if a.quick:
        a.training, a.generated = 100_000, 20_000
    from gmv_store.query import lookup

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ledger.duckdb"
        t = time.perf_counter()
        build(path, a.training, a.generated, a.k, sets=2)
        build_s = time.perf_counter() - t
        con = duckdb.connect(str(path), read_only=True)
        n = con.execute("SELECT count(*) FROM credits").fetchone()[0]
        cid = con.execute("SELECT contributor_id FROM value_sums ORDER BY value_sum DESC LIMIT 1").fetchone()[0]
        gid = con.execute("SELECT generated_id FROM generated_images LIMIT 1").fetchone()[0]
        rows = [
            ("leaderboard: gmv values --set set0 (top 20)", lambda: lookup.values(con, "set0", limit=20)),
            ("owner roll-up: gmv values --by owner", lambda: lookup.values(con, "set0", by="owner", limit=20)),
            ("gmv contributor ID (its sets, rank, top generated)", lambda: lookup.contributor(con, cid)),
            ("gmv top ID (one generated image)", lambda: lookup.top(con, [gid])),
            ("SQL: per-label value sums over all credits", lambda: con.execute(
                "SELECT c.label, sum(s.credit) FROM scores s JOIN contributors c USING (contributor_id) GROUP BY 1").fetchall()),
        ]
        print(f"ledger: {n:,} credit rows, {a.training:,} training images, {a.generated:,} generated images; "
              f"built in {build_s:.1f}s; file {os.path.getsize(path) / 1e9:.2f} GB")
        print(f"{'lookup':55s} {'best of 3 (ms)':>15s}")
        for name, fn in rows:
            best = float("inf")
            for _ in range(3):
                t = time.perf_counter()
                fn()
                best = min(best, time.perf_counter() - t)
            print(f"{name:55s} {1000 * best:15.1f}")
        con.close()


if __name__ == "__main__":
    main()
