"""The web UI's JSON API, attribution uploads, SQL page, guards and errors (in-process),
and `gmv serve` as a process: the token it asks for beyond loopback, never printed."""
import csv
import io
import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient
from ui_store import build, fingerprint

from gmv_store import api
from gmv_store.lock import WriterLock
from gmv_store.web import Settings, create_app


@pytest.fixture(scope="module")
def small(tmp_path_factory, mnist_small):
    return build(tmp_path_factory.mktemp("webapi"), mnist_small)


@pytest.fixture(scope="module")
def client(small):
    with TestClient(create_app(Settings(store=small["store"], match_wait=0))) as c:
        yield c


def png(pixels) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def roundtrip(x):
    """What the API's JSON of a library result is: dates in ISO form, as `gmv ... --json`."""
    return json.loads(json.dumps(x, default=lambda v: v.isoformat() if hasattr(v, "isoformat") else str(v)))


# ----------------------------------------------------------------------------- JSON API


def test_api_status_values_top_contributor_equal_the_library(client, small):
    s = small["store"]
    st = client.get("/api/status").json()
    assert st["training_images"] == 600 and {x["set_name"] for x in st["sets"]} == {"s1", "runs/a b"}
    vals = client.get("/api/values?set=s1&limit=7").json()
    assert vals == roundtrip(api.values(s, "s1", limit=7)) and all("value" in v for v in vals)
    page2 = client.get("/api/values?set=s1&limit=7&offset=7").json()
    assert [v["rank"] for v in page2] == list(range(8, 15))
    by = client.get("/api/values?set=s1&by=owner").json()
    assert {o["owner"] for o in by} == {"alice", "bob"}
    gid = api.sql(s, "SELECT generated_id FROM generated WHERE set_name = 's1' LIMIT 1")[1][0][0]
    top = client.get(f"/api/top/s1/{gid}").json()
    assert top == roundtrip(api.top(s, [gid], set_name="s1")[0]) and len(top["contributors"]) == 10
    cid = vals[0]["contributor_id"]
    want = roundtrip(api.contributor(s, cid))
    assert client.get(f"/api/contributors/{cid}").json() == {**want, "meta": json.loads(want["meta"])}


@pytest.mark.parametrize("url, status, words", [
    ("/api/values", 400, "set=NAME is required"),
    ("/api/values?set=s1&limit=abc", 400, "whole number"),
    ("/api/values?set=nope", 404, "does not exist"),
    ("/api/values?set=s1&by=shoe", 400, "by 'shoe': choose one of"),  # the query parameter, not the CLI flag
    ("/api/top/s1/0123456789abcdef", 404, "not a valued generated image"),
    ("/api/top/s1/..%2F..%2Fetc%2Fpasswd", 404, "not an id"),
    ("/api/contributors/nope", 404, "not an id"),
])
def test_api_errors_are_json(client, url, status, words):
    r = client.get(url)
    assert r.status_code == status and r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == status and words in body["error"]


# ----------------------------------------------------------------------------- attribution


def test_api_match_equals_gmv_match_json_and_stores_nothing(client, small, tmp_path):
    from click.testing import CliRunner

    from gmv_store.cli import cli

    f = small["gen_files"][3]
    before = fingerprint(small["store"])
    r = client.post("/api/match", files={"image": ("probe.png", f.read_bytes(), "image/png")}, data={"k": "7"})
    assert r.status_code == 200, r.text
    got = r.json()
    out = CliRunner().invoke(cli, ["match", str(f), "--k", "7", "--json", "--store", str(small["store"])])
    assert out.exit_code == 0, out.output
    want = json.loads(out.output)[0]
    assert got["source"] == "upload:probe.png" and want["source"] == str(f)
    web_only = {"source", "nearest_distance", "usual_nearest_p99", "unlike_training"}  # the page's flag (test_web_tables)
    assert {k: v for k, v in got.items() if k not in web_only} == {k: v for k, v in want.items() if k != "source"}
    assert got["valued_in"] == ["runs/a b", "s1"] and len(got["contributors"]) == 7
    assert fingerprint(small["store"]) == before


def test_upload_form_shows_the_match(client, small):
    f = small["gen_files"][20]
    r = client.post("/attribute", files={"image": ("x.png", f.read_bytes(), "image/png")}, data={"k": "5"})
    assert r.status_code == 200
    want = api.match(small["store"], [f], k=5).results[0]
    rows = re.findall(r'<tr data-contributor="([0-9a-f]{16})" data-rank="(\d+)" data-distance="([^"]+)" '
                      r'data-credit="([^"]+)">', r.text)
    assert [(c, int(k), float(d), float(cr)) for c, k, d, cr in rows] == \
        [(c["contributor_id"], c["rank"], c["distance"], c["credit"]) for c in want["contributors"]]
    assert 'src="data:image/png;base64,' in r.text  # the upload shown back, stored nowhere
    assert client.get("/attribute").status_code == 200


def _big_png(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (w, h)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.mark.parametrize("name, data, status, words", [
    ("notes.txt", b"this is not an image at all", 400, "not an image"),
    ("empty.png", b"", 400, "empty file"),
    ("tiny.png", png(np.zeros((2, 2))), 400, "smaller than 8x8"),
    ("half.png", png(np.zeros((64, 64)))[:60], 400, "corrupt or truncated"),
    ("bomb.png", _big_png(8200, 8000), 400, "decompression bomb"),
])
def test_uploads_pass_the_decode_fences(client, name, data, status, words):
    for url in ("/api/match", "/attribute"):
        r = client.post(url, files={"image": (name, data, "image/png")})
        assert r.status_code == status and words in r.text and "Traceback" not in r.text, (url, r.text[:300])


def test_upload_without_file_or_with_bad_k(client, small):
    assert "no file in the form field 'image'" in client.post("/api/match", data={"k": "3"}).json()["error"]
    f = small["gen_files"][0].read_bytes()
    r = client.post("/api/match", files={"image": ("a.png", f)}, data={"k": "0"})
    assert r.status_code == 400 and "from 1 to" in r.json()["error"]


def test_oversized_upload_is_refused(small):
    app = create_app(Settings(store=small["store"], max_upload_bytes=2_000))
    with TestClient(app) as c:
        big = png(np.random.default_rng(0).integers(0, 255, (128, 128)))  # ~16 KB of noise
        r = c.post("/api/match", files={"image": ("big.png", big, "image/png")})
        assert r.status_code == 413 and "limit" in r.json()["error"]
        page = c.post("/attribute", files={"image": ("big.png", big, "image/png")})
        assert page.status_code == 413 and 'id="upload-error"' in page.text and "limit" in page.text
        r = c.post("/api/match", content=b"x" * 100, headers={"content-type": "multipart/form-data; boundary=b",
                                                               "content-length": str(10**9)})
        assert r.status_code == 413


def test_match_while_a_writer_runs_is_503_and_pages_read_the_snapshot(client, small):
    lock = WriterLock(small["store"])
    try:
        f = small["gen_files"][1].read_bytes()
        r = client.post("/api/match", files={"image": ("a.png", f)})
        assert r.status_code == 503 and "in use by pid" in r.json()["error"] and r.headers["retry-after"]
        page = client.get("/sets/s1")
        assert page.status_code == 200 and "reading its snapshot" in page.text
    finally:
        lock.release()


# ----------------------------------------------------------------------------- SQL


def test_sql_page_results_csv_and_refusals(client, small):
    q = "SELECT owner, count(*) AS n FROM contributors GROUP BY 1 ORDER BY 1"
    r = client.get("/sql", params={"q": q})
    assert r.status_code == 200 and re.search(r'<td><a href="/owners/alice">alice</a></td>\s*<td class="num">400</td>', r.text)
    c = client.get("/sql.csv", params={"q": q})
    assert c.headers["content-type"].startswith("text/csv") and "attachment" in c.headers["content-disposition"]
    assert list(csv.reader(io.StringIO(c.text))) == [["owner", "n"], ["alice", "400"], ["bob", "200"]]
    for bad, words in (("DELETE FROM contributors", "refused"), ("SELECT * FROM read_csv('/etc/passwd')", "refused"),
                       ("SELECT 1; SELECT 2", "one statement"), ("SELEC nothing", "SQL")):
        r = client.get("/sql", params={"q": bad})
        assert r.status_code == 400 and words in r.text and "root:" not in r.text, bad
        assert bad.split()[0] in r.text  # the query is kept for editing
    assert client.get("/sql.csv", params={"q": "DROP TABLE sets"}).status_code == 400


def test_sql_page_time_limit(small):
    with TestClient(create_app(Settings(store=small["store"], sql_timeout=0.2))) as c:
        r = c.get("/sql", params={"q": "SELECT count(*) FROM range(100000000000) a"})
        assert r.status_code == 400 and "time limit" in r.text


# ----------------------------------------------------------------------------- guards


def test_token_guards_every_route_but_login(small):
    app = create_app(Settings(store=small["store"], token="s3cret-token"))
    with TestClient(app) as c:
        assert c.get("/").status_code == 401 and 'name="token"' in c.get("/").text
        r = c.get("/api/status")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/img/training/0123456789abcdef.png").status_code == 401
        assert c.post("/api/match").status_code == 401
        assert c.get("/api/status", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/status", headers={"Authorization": "Bearer s3cret-token"}).status_code == 200
        assert c.get("/static/style.css").status_code == 200
        bad = c.post("/login", data={"token": "nope", "next": "/sets/s1"}, follow_redirects=False)
        assert bad.status_code == 401 and "not the one" in bad.text
        ok = c.post("/login", data={"token": "s3cret-token", "next": "//evil.example/"}, follow_redirects=False)
        assert ok.status_code == 303 and ok.headers["location"] == "/"  # never off this server
        cookie = ok.cookies.get("gmv_session")
        assert cookie and "s3cret-token" not in cookie and "httponly" in ok.headers["set-cookie"].lower()
        assert c.get("/sets/s1").status_code == 200  # the cookie now rides along
        assert "s3cret-token" not in c.get("/").text


def test_loopback_server_answers_only_loopback_names(small):
    with TestClient(create_app(Settings(store=small["store"], loopback_only=True))) as c:
        assert c.get("/", headers={"host": "evil.example"}).status_code == 421
        assert c.get("/api/status", headers={"host": "rebind.attacker.test:8377"}).status_code == 421
        for host in ("localhost:8377", "127.0.0.1:8377", "[::1]:8377", "127.0.0.1"):
            assert c.get("/api/status", headers={"host": host}).status_code == 200, host


def test_every_response_carries_the_security_headers(client):
    r = client.get("/")
    assert "script-src 'self'" in r.headers["content-security-policy"] and r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["server-timing"].startswith("app;dur=")


def test_unexpected_errors_are_a_page_without_traceback(small, monkeypatch):
    import gmv_store.ledger.browse

    monkeypatch.setattr(gmv_store.ledger.browse, "counts", lambda con: 1 / 0)
    with TestClient(create_app(Settings(store=small["store"])), raise_server_exceptions=False) as c:
        r = c.get("/")
    assert r.status_code == 500 and "unexpected ZeroDivisionError" in r.text and "Traceback" not in r.text


# ----------------------------------------------------------------------------- gmv serve


def _serve(store, *args, env=None):
    proc = subprocess.Popen([sys.executable, "-m", "gmv_store", "serve", "--store", str(store), "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    line = proc.stdout.readline()
    m = re.search(r"http://\S+:(\d+)/", line)
    if not m:
        proc.kill()
        raise AssertionError(f"no address printed: {line!r} {proc.stderr.read()}")
    return proc, int(m.group(1)), line


def _get(port, path, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Authorization": f"Bearer {token}"} if token else {})
    deadline = time.monotonic() + 20
    while True:
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except urllib.error.URLError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_serve_beyond_loopback_needs_a_token_and_never_prints_it(small):
    r = subprocess.run([sys.executable, "-m", "gmv_store", "serve", "--store", str(small["store"]), "--host", "0.0.0.0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "warning: --host 0.0.0.0 exposes" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("Error: --host 0.0.0.0 needs a token")
    secret = "tok-" + os.urandom(8).hex()
    proc, port, first = _serve(small["store"], "--host", "0.0.0.0", env={"GMV_SERVE_TOKEN": secret})
    try:
        assert _get(port, "/api/status")[0] == 401
        status, body = _get(port, "/api/status", token=secret)
        assert status == 200 and json.loads(body)["training_images"] == 600
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=20)
    assert secret not in first + out + err and "exposes the store" in err


def test_serve_on_loopback_without_token(small):
    proc, port, first = _serve(small["store"])
    try:
        assert "127.0.0.1" in first
        status, body = _get(port, "/api/values?set=s1&limit=3")
        assert status == 200 and [v["rank"] for v in json.loads(body)] == [1, 2, 3]
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    busy = subprocess.run([sys.executable, "-m", "gmv_store", "serve", "--store", str(small["store"] / "nope")],
                          capture_output=True, text=True, timeout=60)
    assert busy.returncode == 1 and busy.stderr.startswith("Error:") and "no gmv store" in busy.stderr


# ----------------------------------------------------------------------------- reading while writers run


def test_a_held_ledger_connection_only_delays_a_writer(small):
    """`gmv serve` keeps a ledger connection open for `hold_s` after a read; a writer that
    starts meanwhile waits for it (up to 10 s) instead of failing."""
    with TestClient(create_app(Settings(store=small["store"], hold_s=4.0))) as c:
        assert c.get("/sets/s1").status_code == 200  # opens the held connection
        t0 = time.monotonic()
        r = subprocess.run([sys.executable, "-m", "gmv_store", "refresh", "--store", str(small["store"])],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - t0 < 30
        assert c.get("/api/status").json()["training_images"] == 600


def test_thumbnails_follow_the_ledger_after_a_write(tmp_path, mnist_small):
    """A page's remembered sources last one ledger generation: once an image is forgotten,
    its thumbnail is a 404, not a copy kept in memory."""
    store = build(tmp_path, mnist_small)["store"]
    with TestClient(create_app(Settings(store=store))) as c:
        best = api.values(store, "s1", limit=1)[0]["contributor_id"]
        assert c.get("/sets/s1").status_code == 200
        assert c.get(f"/img/training/{best}.png").status_code == 200
        api.forget(store, [best])
        assert c.get(f"/img/training/{best}.png").status_code == 404
        assert c.get(f"/contributors/{best}").status_code == 404


def test_an_empty_store_has_readable_pages(tmp_path):
    store = tmp_path / "empty"
    api.init_store(store, "basic")
    with TestClient(create_app(Settings(store=store))) as c:
        home = c.get("/")
        assert home.status_code == 200 and "No set valued yet" in home.text
        assert c.get("/sql", params={"q": "SELECT count(*) AS n FROM contributors"}).status_code == 200
        r = c.post("/attribute", files={"image": ("a.png", png(np.full((28, 28), 128)), "image/png")})
        assert r.status_code == 409 and "no training images" in r.text and 'name="image"' in r.text
        assert c.post("/api/match", files={"image": ("a.png", png(np.full((28, 28), 128)))}).json()["error"].startswith(
            "the store has no training images")
