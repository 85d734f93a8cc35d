"""The web UI in-process (Starlette's TestClient) on a small real store: every page and API
route shows the ledger's numbers, images come only by id, uploads pass the decode fences
and the size limit and store nothing, SQL keeps its fences, the token and host guards hold,
and failures are readable pages, never tracebacks."""
import io
import re
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image
from ui_store import SLASH_SET, build

from gmv_store import api
from gmv_store.web import Settings, create_app


@pytest.fixture(scope="module")
def small(tmp_path_factory, mnist_small):
    return build(tmp_path_factory.mktemp("web"), mnist_small)


def attrs(html: str, tag_attr: str) -> list[str]:
    return re.findall(rf'{tag_attr}="([^"]*)"', html)


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


# ----------------------------------------------------------------------------- pages


def test_overview_counts_and_sets_equal_the_ledger(client, small):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    status = api.status(small["store"])
    assert re.search(r'data-count="training_images">600<', r.text)
    assert status["training_images"] == 600
    rows = re.findall(r'<tr data-set="([^"]*)" data-m="(\d+)" data-k="(\d+)" data-recall="(\d+)">', r.text)
    want = [(s["set_name"], str(s["generated"]), str(s["k"]), str(s["recall"])) for s in status["sets"]]
    assert sorted(rows) == sorted(want) and len(rows) == 2
    assert f'href="/sets/{quote(SLASH_SET, safe="")}"' in r.text
    assert "refresh due" in r.text and status["embedder"] in r.text


def test_set_page_leaderboard_owners_histogram_and_rho(client, small):
    from gmv_store.eval.class_test import class_ratio

    r = client.get("/sets/s1")
    assert r.status_code == 200
    board = api.values(small["store"], "s1", limit=50)
    rows = re.findall(r'<tr data-contributor="([0-9a-f]{16})" data-rank="(\d+)" data-value="([^"]+)">', r.text)
    assert [(c, int(k), float(v)) for c, k, v in rows] == [(b["contributor_id"], b["rank"], b["value"]) for b in board]
    owners = api.values(small["store"], "s1", by="owner")
    shown = dict(re.findall(r'<tr data-owner="([^"]*)" data-value="([^"]+)">', r.text))
    assert {o: float(v) for o, v in shown.items()} == pytest.approx({o["owner"]: o["value"] for o in owners}, rel=1e-12)
    # every credited contributor is in exactly one bar
    n_credited = api.sql(small["store"], "SELECT count(*) FROM contributor_values WHERE set_name = 's1'")[1][0][0]
    assert sum(int(c) for c in attrs(r.text, "data-count")) == n_credited
    rho = api.read(small["store"], class_ratio, "s1", [10])[0]["rho"]
    assert float(re.search(r'data-rho="([^"]+)"', r.text).group(1)) == rho
    # thumbnails of every generated image tile and leaderboard row are by id
    assert len(re.findall(r'src="/img/generated/s1/[0-9a-f]{16}\.png', r.text)) == 40
    assert len(re.findall(r'src="/img/training/[0-9a-f]{16}\.png', r.text)) == len(board)


def test_set_page_pages_through_the_leaderboard(client, small):
    first = client.get("/sets/s1").text
    second = client.get("/sets/s1?page=2").text
    ranks = [int(k) for k in re.findall(r'<tr data-contributor="[0-9a-f]{16}" data-rank="(\d+)"', second)]
    assert ranks[0] == 51 and "page=1" in second and "page=2" in first


def test_set_with_slash_and_space_in_its_name(client, small):
    r = client.get(f"/sets/{quote(SLASH_SET, safe='')}")
    assert r.status_code == 200 and f'<span id="set-name">{SLASH_SET}</span>' in r.text
    gid = re.search(r'data-generated="([0-9a-f]{16})"', r.text).group(1)
    g = client.get(f"/generated/{quote(SLASH_SET, safe='')}/{gid}")
    assert g.status_code == 200 and len(attrs(g.text, "data-rank")) == 2 * 5  # grid and table
    img = client.get(f"/img/generated/{quote(SLASH_SET, safe='')}/{gid}.png")
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"


def test_generated_page_shows_the_stored_top_k(client, small):
    gid = api.sql(small["store"], "SELECT generated_id FROM generated WHERE set_name = 's1' ORDER BY 1 LIMIT 1")[1][0][0]
    r = client.get(f"/generated/s1/{gid}")
    assert r.status_code == 200
    top = api.top(small["store"], [gid], set_name="s1")[0]
    table = re.findall(r'<tr data-contributor="([0-9a-f]{16})" data-rank="(\d+)" data-distance="([^"]+)" '
                       r'data-credit="([^"]+)">', r.text)
    assert [(c, int(k), float(d), float(cr)) for c, k, d, cr in table] == \
        [(c["contributor_id"], c["rank"], c["distance"], c["credit"]) for c in top["contributors"]]
    assert float(re.search(r'data-quality="([^"]+)"', r.text).group(1)) == top["quality"]
    assert f'src="/img/generated/s1/{gid}.png?s=384"' in r.text


def test_contributor_and_owner_pages(client, small):
    best = api.values(small["store"], "s1", limit=1)[0]
    r = client.get(f"/contributors/{best['contributor_id']}")
    assert r.status_code == 200
    info = api.contributor(small["store"], best["contributor_id"])
    rows = re.findall(r'<tr data-set="([^"]*)" data-value="([^"]+)" data-rank="(\d+)">', r.text)
    assert [(s, float(v), int(k)) for s, v, k in rows] == [(s["set_name"], s["value"], s["rank"]) for s in info["sets"]]
    assert len(re.findall(r'src="/img/generated/', r.text)) == len(info["top_generated"]) > 0
    o = client.get(f"/owners/{best['owner']}")
    assert o.status_code == 200
    cols, rows = api.sql(small["store"], "SELECT set_name, value FROM owner_values WHERE owner = ?", [best["owner"]])
    want = dict(rows)
    got = {s: float(v) for s, v in re.findall(r'<tr data-set="([^"]*)" data-value="([^"]+)">', o.text)}
    assert got == pytest.approx(want, rel=1e-12)  # sums of floats: DuckDB may add them in any order
    by_s1 = client.get(f"/owners/{best['owner']}?set=s1").text  # images ordered by their value in s1
    tiles = re.findall(r'data-contributor="([0-9a-f]{16})" data-value="([^"]+)"', by_s1)
    values = [float(v) for _, v in tiles]
    assert len(tiles) == 48 and values == sorted(values, reverse=True) and best["contributor_id"] == tiles[0][0]


@pytest.mark.parametrize("url, words", [
    ("/sets/nope", "does not exist"),
    ("/generated/s1/0123456789abcdef", "not a valued generated image"),
    ("/generated/s1/not-an-id", "not an id"),
    ("/contributors/0123456789abcdef", "not in the store"),
    ("/contributors/ZZZ", "not an id"),
    ("/owners/nobody", "no training images"),
    ("/no/such/page", "no page at this address"),
])
def test_unknown_ids_are_readable_404_pages(client, url, words):
    r = client.get(url)
    assert r.status_code == 404 and r.headers["content-type"].startswith("text/html")
    assert words in r.text and "Traceback" not in r.text and '<a href="/">' in r.text


# ----------------------------------------------------------------------------- images


def test_images_by_id_scaled_with_etag(client, small):
    cid = api.values(small["store"], "s1", limit=1)[0]["contributor_id"]
    r = client.get(f"/img/training/{cid}.png?s=192")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(r.content)).size == (168, 168)  # 28 px grown 6x, crisp
    assert Image.open(io.BytesIO(client.get(f"/img/training/{cid}.png?s=48").content)).size == (28, 28)
    etag = r.headers["etag"]
    again = client.get(f"/img/training/{cid}.png?s=192", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert client.get(f"/img/training/{cid}.png?s=192", headers={"If-None-Match": '"other"'}).status_code == 200


TRAVERSAL = [
    "/img/training/../../etc/passwd",
    "/img/training/..%2F..%2F..%2Fetc%2Fpasswd.png",
    "/img/training/%2e%2e%2f%2e%2e%2fetc%2fpasswd.png",
    "/img/training/%252e%252e%252fetc%252fpasswd.png",
    "/img/training/%2Fetc%2Fpasswd.png",
    "/img/training/....%2F%2F....%2F%2Fetc%2Fpasswd.png",
    "/img/generated/s1/..%2F..%2F..%2Fetc%2Fpasswd.png",
    "/img/generated/..%2F..%2Fetc/passwd.png",
    "/img/generated/%2Fetc/passwd.png",
    "/static/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/../../../etc/passwd",
    "/img/training/0123456789abcdef.png",
]


@pytest.mark.parametrize("url", TRAVERSAL)
def test_traversal_attempts_read_nothing(client, small, url, monkeypatch):
    import gmv_store.sources

    read = []
    real = gmv_store.sources.load_source
    monkeypatch.setattr(gmv_store.sources, "load_source", lambda s, root=None: read.append(s) or real(s, root))
    r = client.get(url)
    assert r.status_code in (400, 404) and b"root:" not in r.content
    assert not r.headers["content-type"].startswith("image/")
    assert read == []  # nothing was read: ids that are not in the ledger never reach a source


def test_traversal_in_raw_asgi_paths(small):
    """Paths as a server hands them over, dots and all (no client normalises them)."""
    import asyncio

    app = create_app(Settings(store=small["store"]))

    async def get(path: str):
        sent = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(msg):
            sent.append(msg)

        scope = {"type": "http", "method": "GET", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "headers": [(b"host", b"127.0.0.1")], "scheme": "http", "server": ("127.0.0.1", 80),
                 "client": ("127.0.0.1", 1), "root_path": "", "http_version": "1.1"}
        await app(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return start["status"], body

    for path in ("/img/training/../../../../etc/passwd.png", "/img/generated/s1/../../../etc/passwd.png",
                 "/img/generated/../../etc/s1/0123456789abcdef.png", "/static/../../../../../etc/passwd"):
        status, body = asyncio.run(get(path))
        assert status in (400, 404) and b"root:" not in body, path


def test_unreadable_source_gives_a_grey_placeholder(client, small, monkeypatch):
    import gmv_store.sources
    from gmv_store.errors import BadInput

    def gone(source, root=None):
        raise BadInput(f"{source}: cannot read (No such file or directory)")

    monkeypatch.setattr(gmv_store.sources, "load_source", gone)
    cid = api.values(small["store"], "s1", limit=50)[-1]["contributor_id"]
    r = client.get(f"/img/training/{cid}.png?s=96")
    assert r.status_code == 404 and r.headers["content-type"] == "image/png"
    assert "cannot read" in r.headers["x-gmv-error"] and Image.open(io.BytesIO(r.content)).size == (96, 96)


def test_source_holding_another_image_gives_a_grey_placeholder(client, small, monkeypatch):
    """A thumbnail is checked against the stored hash: a source overwritten since is named."""
    import numpy as np

    import gmv_store.sources

    monkeypatch.setattr(gmv_store.sources, "load_source", lambda source, root=None: np.full((28, 28, 1), 7, np.uint8))
    cid = api.values(small["store"], "s1", limit=50)[-2]["contributor_id"]
    r = client.get(f"/img/training/{cid}.png?s=48")
    assert r.status_code == 404 and "now holds another image" in r.headers["x-gmv-error"]


def test_set_page_pages_through_generated_images(client, monkeypatch):
    import gmv_store.web.pages as pages

    monkeypatch.setattr(pages, "TILES", 16)
    seen = []
    for gp in (1, 2, 3):
        html = client.get(f"/sets/s1?gpage={gp}").text
        seen.append(re.findall(r'<a class="tile" href="/generated/s1/([0-9a-f]{16})"', html))
        assert (f"gpage={gp + 1}" in html) == (gp < 3)
    assert [len(s) for s in seen] == [16, 16, 8] and len(set(sum(seen, []))) == 40
