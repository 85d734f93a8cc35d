"""Screenshots of the web UI's main pages for docs/ui.md, taken with headless Chromium
(Debian's `chromium` package driven by Playwright) against `gmv serve` on a free port.

    python docs/ui/shoot.py --store gmv-demo [--out docs/ui]

Needs a valued store (`gmv demo` makes one); pages are taken on a laptop-sized window, and
the set and generated pages once more on a phone-sized one.
"""
from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def serve(store: Path):
    proc = subprocess.Popen([sys.executable, "-m", "gmv_store", "serve", "--store", str(store), "--port", "0"],
                            stdout=subprocess.PIPE, text=True)
    url = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline()).group(1)
    for _ in range(150):
        try:
            urllib.request.urlopen(url + "/api/status", timeout=5).read()
            return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("gmv serve did not answer")


def settle(page) -> None:
    """Let the lazy thumbnails of the visible part load before the picture is taken."""
    for _ in range(200):
        if page.evaluate("Array.from(document.images).filter(i => i.getBoundingClientRect().top < innerHeight)"
                         ".every(i => i.complete && i.naturalWidth > 0)"):
            return
        page.wait_for_timeout(50)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default="gmv-demo")
    ap.add_argument("--out", default=str(Path(__file__).parent))
    a = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from gmv_store import api

    store, out = Path(a.store), Path(a.out)
    sets = [s["set_name"] for s in api.status(store)["sets"]]
    set_name = next((s for s in sets if s.endswith("k50")), sets[0])
    gid = api.values(store, set_name, limit=1) and api.sql(
        store, "SELECT generated_id FROM generated WHERE set_name = ? ORDER BY quality DESC LIMIT 1", [set_name])[1][0][0]
    top = api.top(store, [gid], set_name=set_name)[0]
    best = api.values(store, set_name, limit=1)[0]
    from gmv_store.sources.location import resolve

    probe = Path(resolve(api.sql(store, "SELECT source FROM generated WHERE set_name = ? ORDER BY generated_id "
                                        "LIMIT 1", [set_name])[1][0][0], store))
    proc, url = serve(store)
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            laptop = b.new_page(viewport={"width": 1280, "height": 860})
            shots = {
                "overview": "/", "set": f"/sets/{set_name}", "generated": f"/generated/{set_name}/{gid}",
                "contributor": f"/contributors/{top['contributors'][0]['contributor_id']}",
                "owner": f"/owners/{best['owner']}?set={set_name}",
                "sql": "/sql?q=SELECT+set_name%2C+owner%2C+value%2C+n_contributors+FROM+owner_values+ORDER+BY+value+DESC",
            }
            for name, path in shots.items():
                laptop.goto(url + path)
                settle(laptop)
                laptop.screenshot(path=str(out / f"{name}.png"))
            laptop.goto(url + "/attribute")
            laptop.set_input_files('input[name="image"]', str(probe))
            laptop.fill('input[name="k"]', "12")
            laptop.click('button[type="submit"]')
            laptop.wait_for_selector("#match-result")
            laptop.locator("#match-result").scroll_into_view_if_needed()
            laptop.evaluate("window.scrollBy(0, -80)")
            settle(laptop)
            laptop.screenshot(path=str(out / "attribute.png"))
            phone = b.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
            for name in ("set", "generated"):
                phone.goto(url + shots[name])
                settle(phone)
                phone.screenshot(path=str(out / f"phone-{name}.png"))
            b.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    for f in sorted(out.glob("*.png")):
        print(f"{f}  {f.stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
