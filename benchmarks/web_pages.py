"""Server time of every route of the web UI on a store (default: the `gmv demo` store),
measured in-process with Starlette's TestClient from the Server-Timing header the app sets.

    python benchmarks/web_pages.py --store gmv-demo [--repeat 7]

Each route is asked once (the "first" column), then `--repeat` times; the table gives the
median and the largest of those. The app runs with the settings of `gmv serve` (a ledger
connection held 2 s after a read; `--hold 0` measures without). The load average is printed too: on a shared machine it is part of the
figures.
"""
from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="gmv-demo")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--hold", type=float, default=None,
                    help="seconds a ledger connection stays open after a read [default: as gmv serve]")
    a = ap.parse_args()
    from starlette.testclient import TestClient

    from gmv_store import api
    from gmv_store.cli.serve import HOLD_S
    from gmv_store.web import Settings, create_app

    store = Path(a.store)
    sets = [s["set_name"] for s in api.status(store)["sets"]]
    s = next((x for x in sets if x.endswith("k50")), sets[0])
    first = api.values(store, s, limit=1)[0]
    gid, source = api.sql(store, "SELECT generated_id, source FROM generated WHERE set_name = ? ORDER BY 1 LIMIT 1",
                          [s])[1][0]
    from gmv_store.sources.location import resolve

    source = resolve(source, store)  # inside the store: recorded relative to it
    upload = Path(source).read_bytes() if Path(source).is_file() else None
    routes = [
        ("GET", "/"), ("GET", f"/sets/{s}"), ("GET", f"/sets/{s}?page=40"), ("GET", f"/sets/{s}?sort=label&label=3"),
        ("GET", f"/sets/{s}?page=9999"), ("GET", f"/sets/{s}?format=json&table=leaderboard"),
        ("GET", f"/generated/{s}/{gid}"),
        ("GET", f"/contributors/{first['contributor_id']}"), ("GET", f"/owners/{first['owner']}"),
        ("GET", f"/owners/{first['owner']}?set={s}&page=100"), ("GET", "/attribute"), ("GET", "/sql"),
        ("GET", "/sql?q=SELECT+set_name%2C+owner%2C+value+FROM+owner_values"),
        ("GET", "/api/status"), ("GET", f"/api/values?set={s}&limit=100"), ("GET", f"/api/top/{s}/{gid}"),
        ("GET", f"/api/contributors/{first['contributor_id']}"), ("GET", "/api/sets"),
        ("GET", f"/api/sets/{s}/generated"), ("GET", "/api/sql?q=SELECT+*+FROM+sets"),
        ("GET", f"/img/training/{first['contributor_id']}.png"), ("GET", f"/img/generated/{s}/{gid}.png?s=384"),
    ]
    if upload:
        routes += [("POST", "/attribute"), ("POST", "/api/match")]
    print(f"store {store.absolute()}, set {s}; load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    print(f"{'route':58s} {'first':>8s} {'median':>8s} {'max':>8s}  (ms of server time)")
    hold = HOLD_S if a.hold is None else a.hold
    print(f"ledger connection held {hold:g} s after a read (gmv serve: {HOLD_S:g} s)")
    with TestClient(create_app(Settings(store=store, hold_s=hold))) as c:  # no warm-up: "first" is cold
        for method, url in routes:
            times = []
            for _ in range(a.repeat + 1):
                if method == "POST":
                    r = c.post(url, files={"image": ("probe.png", upload, "image/png")}, data={"k": "50"})
                else:
                    r = c.get(url)
                assert r.status_code == 200, (url, r.status_code, r.text[:200])
                times.append(float(r.headers["server-timing"].split("dur=")[1]))
            rest = times[1:]
            print(f"{method + ' ' + url[:53]:58s} {times[0]:8.1f} {statistics.median(rest):8.1f} {max(rest):8.1f}")


if __name__ == "__main__":
    main()
