"""The web UI in a real browser: headless Chromium (Debian's `chromium` package) driven by
Playwright against `gmv serve` on a free loopback port. Every <img> must load and the numbers
on the pages must be the ledger's; the attribution form must work with a real file upload,
and the pages must fit a phone's width.

Skipped, with the reason, where Chromium or Playwright is missing; GMV_REQUIRE_BROWSER=1
(set by .ci/run) makes that a failure instead."""
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from ui_store import build

from gmv_store import api

pytestmark = pytest.mark.browser


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    reason = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        reason = "playwright is not installed (pip install playwright)"
    if reason is None and path is None:
        reason = "no chromium on PATH (apt-get install chromium)"
    if reason:
        if os.environ.get("GMV_REQUIRE_BROWSER") == "1":
            pytest.fail(f"GMV_REQUIRE_BROWSER=1 but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="module")
def small(tmp_path_factory, mnist_small):
    return build(tmp_path_factory.mktemp("browser"), mnist_small)


@pytest.fixture(scope="module")
def server(small):
    proc = subprocess.Popen([sys.executable, "-m", "gmv_store", "serve", "--store", str(small["store"]), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    m = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline())
    assert m, proc.stderr.read()
    url = m.group(1)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/api/status", timeout=5).read()
            break
        except OSError:
            assert time.monotonic() < deadline, "gmv serve did not answer"
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.communicate(timeout=20)


@pytest.fixture(scope="module")
def browser():
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield Browser(b)
        b.close()


class Browser:
    """New pages that record console errors: a stylesheet, image or script the page's
    Content-Security-Policy blocks shows up there, and each test ends with none."""

    def __init__(self, b):
        self.b, self.errors = b, []

    def new_page(self, **kw):
        page = self.b.new_page(**kw)
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        return page


def images_loaded(page) -> None:
    """Scroll the whole page (thumbnails load lazily), then every <img> must have pixels."""
    height = page.evaluate("document.documentElement.scrollHeight")
    for y in range(0, height + 800, 600):
        page.evaluate(f"window.scrollTo(0, {y})")
        page.wait_for_timeout(30)
    deadline = time.monotonic() + 30  # polled from here: the page's CSP forbids the eval of wait_for_function
    while not page.evaluate("Array.from(document.images).every(i => i.complete)"):
        assert time.monotonic() < deadline, "images still loading after 30 s"
        page.wait_for_timeout(50)
    broken = page.evaluate("Array.from(document.images).filter(i => i.naturalWidth === 0).map(i => i.src)")
    n = page.evaluate("document.images.length")
    assert n > 0 and broken == [], broken


def test_overview_set_and_generated_pages(browser, server, small):
    s = small["store"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server + "/")
    status = api.status(s)
    assert page.text_content('[data-count="training_images"]') == f"{status['training_images']:,}"
    for st in status["sets"]:
        row = page.locator(f'tr[data-set="{st["set_name"]}"] td')
        assert row.nth(1).text_content() == f"{st['generated']:,}" and row.nth(2).text_content() == str(st["k"])
    page.click('a[href="/sets/s1"]')
    page.wait_for_url("**/sets/s1")
    images_loaded(page)
    board = api.values(s, "s1", limit=50)
    from gmv_store.web.render import NumColumn

    fmt = NumColumn([b["value"] for b in board])
    cells = page.locator("#leaderboard-table tbody tr td:nth-child(4)").all_text_contents()
    assert cells == [fmt(b["value"]) for b in board]
    from gmv_store.eval.class_test import class_ratio

    rho = api.read(s, class_ratio, "s1", [10])[0]["rho"]
    assert page.text_content("#rho") == f"{100 * rho:.1f} %"
    assert page.locator("svg.chart rect.bar").count() > 0
    # into a generated image through its tile
    tile = page.locator("#generated-grid a.tile").first
    gid = tile.get_attribute("data-generated")
    tile.click()
    page.wait_for_url(f"**/generated/s1/{gid}")
    images_loaded(page)
    top = api.top(s, [gid], set_name="s1")[0]
    ids = page.locator("table.contributors tbody tr").evaluate_all("rs => rs.map(r => r.dataset.contributor)")
    assert ids == [c["contributor_id"] for c in top["contributors"]]
    credits = page.locator("table.contributors tbody tr td:nth-child(5)").all_text_contents()
    fmt = NumColumn([c["credit"] for c in top["contributors"]])
    assert credits == [fmt(c["credit"]) for c in top["contributors"]]
    shares = page.locator("table.contributors tbody tr td:nth-child(6)").all_text_contents()
    assert shares == [f"{100 * c['credit'] / top['quality']:.1f} %" for c in top["contributors"]]
    # and on to its best contributor's page
    page.locator("table.contributors tbody tr").first.locator("td.mono a").click()
    page.wait_for_url(f"**/contributors/{top['contributors'][0]['contributor_id']}")
    images_loaded(page)
    page.close()


def test_upload_attributes_an_image(browser, server, small):
    f = small["gen_files"][17]
    page = browser.new_page()
    page.goto(server + "/attribute")
    page.set_input_files('input[name="image"]', str(f))
    page.fill('input[name="k"]', "6")
    page.click('button[type="submit"]')
    page.wait_for_selector("#match-result")
    images_loaded(page)
    want = api.match(small["store"], [f], k=6).results[0]
    ids = page.locator("table.contributors tbody tr").evaluate_all("rs => rs.map(r => r.dataset.contributor)")
    assert ids == [c["contributor_id"] for c in want["contributors"]]
    assert page.get_attribute("#match-result", "data-generated") == want["generated_id"]
    # a file that is not an image: one readable line, the form still there
    bad = small["root"] / "notes.txt"
    bad.write_text("not an image")
    page.set_input_files('input[name="image"]', str(bad))
    page.click('button[type="submit"]')
    page.wait_for_selector("#upload-error")
    assert "not an image" in page.text_content("#upload-error") and page.locator('input[name="image"]').count() == 1
    page.close()


def test_pages_fit_a_phone(browser, server, small):
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    gid = api.sql(small["store"], "SELECT generated_id FROM generated WHERE set_name = 's1' LIMIT 1")[1][0][0]
    for path in ("/", "/sets/s1", f"/generated/s1/{gid}", "/owners/alice", "/owners", "/attribute",
                 "/sql?q=SELECT+*+FROM+sets", "/sets/s1?label=3&sort=owner"):
        page.goto(server + path)
        # wide tables scroll inside their own box; the page itself never scrolls sideways
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), path
    page.close()
    assert not [e for e in browser.errors if "Content Security Policy" in e], browser.errors


def test_sort_facet_and_search_by_clicking(browser, server, small):
    s = small["store"]
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server + "/sets/s1")
    page.click('#leaderboard-table th a[data-sort="owner"]')
    page.wait_for_url("**sort=owner**")
    owners = page.locator("#leaderboard-table tbody tr td:nth-child(7)").all_text_contents()
    assert owners == sorted(owners) and page.url.endswith("#leaderboard")
    page.click('#leaderboard-facets [data-facet="label"] a[data-value="7"]')
    page.wait_for_url("**label=7**")
    labels = page.locator("#leaderboard-table tbody tr td:nth-child(8)").all_text_contents()
    n7 = api.sql(s, "SELECT count(*) FROM contributor_values JOIN contributors USING (contributor_id) "
                    "WHERE set_name = 's1' AND label = '7'")[1][0][0]
    assert set(labels) == {"7"} and len(labels) == min(n7, 50)
    assert page.text_content('#leaderboard-facets [data-facet="label"] .pill.on .n') == str(n7)
    images_loaded(page)
    cid = page.locator("#leaderboard-table tbody tr").first.get_attribute("data-contributor")
    page.fill('input[aria-label="search leaderboard"]', cid[:6])
    page.click('form.search button >> nth=0')
    page.wait_for_url(f"**q={cid[:6]}**")
    ids = page.locator("#leaderboard-table tbody tr").evaluate_all("rs => rs.map(r => r.dataset.contributor)")
    assert cid in ids and all(i.startswith(cid[:6]) for i in ids)
    assert "label=7" in page.url and "sort=owner" in page.url  # the other filters kept
    page.close()


def test_a_moved_store_shows_the_banner_then_every_thumbnail_after_relocate(browser, tmp_path, mnist_small):
    import shutil

    old = build(tmp_path / "before", mnist_small)["root"]
    new = tmp_path / "after"
    shutil.move(str(old), str(new))
    store = new / "store"
    proc = subprocess.Popen([sys.executable, "-m", "gmv_store", "serve", "--store", str(store), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline()).group(1)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "/sets/s1")
        banner = page.text_content("#unreachable")
        assert "cannot be read" in banner and f"gmv relocate {old} {new} --store {store}" in banner
        api.relocate(store, old, new)
        page.goto(url + "/sets/s1")
        assert page.locator("#unreachable").count() == 0
        images_loaded(page)
        page.close()
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
