"""Browsing like a table (sort, facets with counts, search, page counts and an end, the
rows on screen as JSON/CSV), numbers in one format per column, the charts, the SQL examples'
sums, the contributor page grouped by set, and the JSON API's sets, generated pages and SQL."""
import csv
import io
import json
import math
import re
from urllib.parse import quote

import pytest
from ui_store import SLASH_SET, build

from gmv_store import api
from gmv_store.web.charts import _tick, log_ticks
from gmv_store.web.render import NumColumn, PctColumn

ROW = re.compile(r'<tr data-contributor="([0-9a-f]{16})" data-rank="(\d+)" data-value="([^"]+)">')


@pytest.fixture(scope="module")
def small(tmp_path_factory, mnist_small):
    return build(tmp_path_factory.mktemp("tables"), mnist_small)


def ledger(small, q, params=()):
    return api.sql(small["store"], q, list(params))[1]


def test_leaderboard_sorts_by_any_column_and_keeps_the_set_rank(client, small):
    board = {b["contributor_id"]: b for b in api.values(small["store"], "s1", limit=None)}
    for sort, order, key in (("owner", "asc", lambda b: (b["owner"], b["rank"])),
                             ("n_credits", "desc", lambda b: (-b["n_credits"], b["rank"])),
                             ("contributor_id", "desc", lambda b: tuple(-ord(ch) for ch in b["contributor_id"])),
                             ("value", "asc", lambda b: (b["value"], b["rank"]))):
        html = client.get(f"/sets/s1?sort={sort}&order={order}").text
        rows = ROW.findall(html)
        want = sorted(board.values(), key=key)[:50]
        assert [c for c, _, _ in rows] == [b["contributor_id"] for b in want], sort
        assert all(int(k) == board[c]["rank"] for c, k, _ in rows)  # the rank in the whole set
        assert f'aria-sort="{"descending" if order == "desc" else "ascending"}"' in html


def test_facets_count_and_filter_and_search_finds_ids_and_sources(client, small):
    html = client.get("/sets/s1?label=3").text
    n3 = ledger(small, "SELECT count(*) FROM contributor_values v JOIN contributors c USING (contributor_id) "
                       "WHERE set_name = 's1' AND c.label = '3'")[0][0]
    ids = [c for c, _, _ in ROW.findall(html)]
    assert len(ids) == min(n3, 50) and f"{n3} credited contributors" in html
    labels = dict(ledger(small, "SELECT contributor_id, label FROM contributors"))
    assert {labels[i] for i in ids} == {"3"}
    # the owner facet counts within the label filter, the label facet over every label
    owner_counts = dict(ledger(small, "SELECT c.owner, count(*) FROM contributor_values v JOIN contributors c "
                                      "USING (contributor_id) WHERE set_name = 's1' AND c.label = '3' GROUP BY 1"))
    facet = re.search(r'data-facet="owner">(.*?)</div>', html, re.S).group(1)
    got = {o: int(n) for o, n in re.findall(r'data-value="([^"]*)"[^>]*>[^<]*<span class="n">(\d+)</span>', facet)}
    assert got == owner_counts
    label_facet = re.search(r'data-facet="label">(.*?)</div>', html, re.S).group(1)
    assert len(re.findall(r'data-value="', label_facet)) == 10
    # clicking an owner pill narrows both
    both = client.get("/sets/s1?label=3&owner=bob").text
    assert {c for c, _, _ in ROW.findall(both)} == {r[0] for r in ledger(
        small, "SELECT contributor_id FROM contributor_values JOIN contributors USING (contributor_id) "
               "WHERE set_name = 's1' AND label = '3' AND owner = 'bob'")}
    # search: an id prefix, then the start of a source
    cid = ids[0]
    found = [c for c, _, _ in ROW.findall(client.get(f"/sets/s1?q={cid[:5]}").text)]
    assert cid in found and all(c.startswith(cid[:5]) for c in found)
    bob = str(small["root"] / "bob.npz")
    found = [c for c, _, _ in ROW.findall(client.get("/sets/s1?q=" + quote(bob)).text)]
    assert found and all(dict(ledger(small, "SELECT contributor_id, owner FROM contributors"))[c] == "bob" for c in found)
    assert "No credited contributor matches" in client.get("/sets/s1?q=zzzz").text


def test_pages_count_and_end_and_a_page_past_the_end_is_the_last(client, small):
    n = ledger(small, "SELECT count(*) FROM contributor_values WHERE set_name = 's1'")[0][0]
    pages = math.ceil(n / 50)
    html = client.get("/sets/s1?page=9999").text
    assert f'data-page="{pages}" data-pages="{pages}"' in html and f"page {pages} of {pages}" in html
    ranks = [int(k) for _, k, _ in ROW.findall(html)]
    assert ranks == list(range(50 * (pages - 1) + 1, n + 1))
    first = client.get("/sets/s1").text
    assert "page=2#leaderboard" in first and f"page={pages}#leaderboard" in first  # next and last, to the section
    assert 'id="leaderboard"' in first and 'id="generated"' in first and "gpage" not in first.split('id="generated"')[0]


def test_json_and_csv_links_return_exactly_the_rows_on_screen(client, small):
    url = "/sets/s1?label=7&sort=owner&page=1"
    html = client.get(url).text
    shown = [c for c, _, _ in ROW.findall(html)]
    link = re.search(r'href="([^"]*format=json[^"]*table=leaderboard[^"]*)"', html).group(1).replace("&amp;", "&")
    data = client.get(link).json()
    assert [r["contributor_id"] for r in data] == shown and all(r["label"] == "7" for r in data)
    board = {b["contributor_id"]: b for b in api.values(small["store"], "s1", limit=None)}
    assert all(r["value"] == board[r["contributor_id"]]["value"] and r["rank"] == board[r["contributor_id"]]["rank"]
               for r in data)
    c = client.get(link.replace("format=json", "format=csv"))
    rows = list(csv.DictReader(io.StringIO(c.text)))
    assert c.headers["content-type"].startswith("text/csv") and [r["contributor_id"] for r in rows] == shown
    gens = client.get("/sets/s1?glabel=1&format=json&table=generated").json()
    assert {g["generated_id"] for g in gens} == {r[0] for r in ledger(
        small, "SELECT generated_id FROM generated WHERE set_name = 's1' AND label = '1'")}
    assert client.get("/sets/s1?format=xml").status_code == 400


def test_numbers_share_one_format_per_column():
    col = NumColumn([9.75e-05, 9.986e-05, 2.7e-06])
    assert col.unit == "×10⁻⁵" and [col(v) for v in (9.75e-05, 9.986e-05, 2.7e-06)] == ["9.750", "9.986", "0.270"]
    assert NumColumn([0.5, 0.25]).unit == "" and NumColumn([0.5, 0.25])(0.25) == "0.2500"
    pct = PctColumn([0.0001, 0.00002])
    assert (pct(0.0001), pct(0.00002)) == ("0.010 %", "0.002 %")
    assert [_tick(v) for v in (0.002, 0.01, 50, 3e-6)] == ["0.002", "0.01", "50", "3×10⁻⁶"]
    assert len(log_ticks(math.log10(0.0025), math.log10(0.015))) >= 4  # a narrow range still gets several
    assert log_ticks(-8, -1) == [10.0 ** d for d in range(-8, 0)]


def test_set_page_charts_credit_by_label_and_quality(client, small):
    html = client.get("/sets/s1").text
    shares = dict(re.findall(r'class="bar" data-name="([^"]*)" data-value="([^"]+)"', html))
    want = dict(ledger(small, "SELECT c.label, sum(v.value) / (SELECT sum(value) FROM contributor_values "
                              "WHERE set_name = 's1') FROM contributor_values v JOIN contributors c USING "
                              "(contributor_id) WHERE set_name = 's1' GROUP BY 1"))
    assert {k: float(v) for k, v in shares.items()} == pytest.approx(want)
    assert sum(int(n) for n in re.findall(r'data-n="(\d+)"', html)) == 40  # every generated image's quality
    assert len(re.findall(r'class="tick">', html.split('id="histogram"')[1].split("</svg>")[0])) >= 5


def test_overview_draws_rho_against_k(client, small):
    from gmv_store.eval.class_test import class_ratio

    html = client.get("/").text
    dots = re.findall(r'class="dot" data-set="([^"]*)" data-k="(\d+)" data-rho="([^"]+)"', html)
    want = {s: api.read(small["store"], class_ratio, s, [k])[0]["rho"] for s, k in (("s1", 10), (SLASH_SET, 5))}
    assert {s: float(r) for s, _, r in dots} == want
    assert 'href="/owners"' in html


def test_sql_examples_run_and_their_sums_agree_with_the_ledger(client, small):
    from gmv_store.web.pages import sql_examples

    examples = sql_examples("s1")
    html = client.get("/sql").text
    assert all(quote(ex, safe="").replace("%20", "+")[:40] in html.replace("%20", "+") or ex[:30] in html
               for ex in examples)
    total = ledger(small, "SELECT sum(value) FROM contributor_values WHERE set_name = 's1'")[0][0]
    results = [api.sql(small["store"], ex) for ex in examples]
    for ex, (_cols, rows) in zip(examples, results):
        assert rows, ex
        assert client.get("/sql", params={"q": ex}).status_code == 200
    owners, labels, per_set, top = (dict(zip(*[c, list(zip(*r))])) for c, r in results[1:])
    assert sum(owners["value"]) == pytest.approx(total) and sum(labels["value"]) == pytest.approx(total)
    assert sum(labels["credited"]) == ledger(small, "SELECT count(*) FROM contributor_values WHERE set_name = 's1'")[0][0]
    for _name, value_total, mean_q in zip(per_set["set_name"], per_set["value_total"], per_set["mean_quality"]):
        assert value_total == pytest.approx(mean_q)  # a set's values sum to its mean quality
    assert len(top["rank"]) == 10 and list(top["rank"]) == list(range(1, 11))


def test_sql_results_align_numbers_and_link_ids(client, small):
    html = client.get("/sql", params={"q": "SELECT set_name, generated_id, contributor_id, credit, rank FROM scores "
                                            "ORDER BY credit DESC LIMIT 5"}).text
    assert len(re.findall(r'<td class="mono id"><a href="/contributors/[0-9a-f]{16}"><img', html)) == 5
    assert len(re.findall(r'<td class="mono id"><a href="/generated/[^/]+/[0-9a-f]{16}"><img', html)) == 5
    cells = re.findall(r'<td class="num" title="[^"]+">([^<]+)</td>', html)
    assert len(cells) == 5 and len({len(c.split(".")[1]) for c in cells}) == 1  # one precision in the column


def test_contributor_page_groups_by_set(client, small):
    cid = ledger(small, "SELECT contributor_id FROM scores GROUP BY 1 HAVING count(DISTINCT set_name) = 2 "
                        "ORDER BY 1 LIMIT 1")[0][0]
    html = client.get(f"/contributors/{cid}").text
    groups = [part.split('">', 1) for part in html.split('<div class="grid" data-set="')[1:]]
    assert [g for g, _ in groups] == sorted([SLASH_SET, "s1"])
    for name, body in groups:
        got = re.findall(r'data-generated="([0-9a-f]{16})"', body)
        want = ledger(small, "SELECT generated_id FROM scores WHERE contributor_id = ? AND set_name = ? "
                             "ORDER BY credit DESC, generated_id", [cid, name])
        assert got == [w[0] for w in want][:12]
        assert all(f"/generated/{quote(name, safe='')}/" in h for h in re.findall(r'href="(/generated/[^"]+)"', body))


def test_api_sets_generated_pages_meta_objects_and_sql(client, small):
    sets = client.get("/api/sets").json()
    assert {s["set_name"]: s["m"] for s in sets} == {"s1": 40, SLASH_SET: 12}
    first = client.get("/api/sets/s1/generated?limit=15").json()
    second = client.get("/api/sets/s1/generated?limit=15&offset=15").json()
    ids = [g["generated_id"] for g in first["generated"] + second["generated"]]
    want = ledger(small, "SELECT generated_id FROM generated WHERE set_name = 's1' ORDER BY quality DESC, generated_id")
    assert first["total"] == 40 and ids == [w[0] for w in want][:30]
    assert all(isinstance(g["meta"], dict) for g in first["generated"])
    assert client.get(f"/api/sets/{quote(SLASH_SET, safe='')}/generated").json()["total"] == 12
    r = client.get("/api/sets/nope/generated")
    assert r.status_code == 404 and "valued sets" in r.json()["error"]
    got = client.get("/api/sql", params={"q": "SELECT owner, count(*) AS n FROM contributors GROUP BY 1 ORDER BY 1",
                                         "limit": 1}).json()
    assert got == {"columns": ["owner", "n"], "rows": [{"owner": "alice", "n": 400}], "total": 2, "truncated": True}
    bad = client.get("/api/sql", params={"q": "DELETE FROM contributors"})
    assert bad.status_code == 400 and "read-only" in bad.json()["error"]
    assert client.get("/api/sql").status_code == 400
    cid = ledger(small, "SELECT contributor_id FROM contributors LIMIT 1")[0][0]
    assert isinstance(client.get(f"/api/contributors/{cid}").json()["meta"], dict)
    assert json.loads(client.get("/owners?format=json").text)[0]["owner"] == "alice"


def _png(pixels) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def test_an_upload_unlike_the_training_data_is_flagged(client, small):
    import numpy as np

    p99 = ledger(small, "SELECT quantile_cont(distance, 0.99) FROM scores WHERE rank = 1")[0][0]
    usual = client.post("/api/match", files={"image": ("d.png", small["gen_files"][5].read_bytes(), "image/png")}).json()
    assert usual["usual_nearest_p99"] == pytest.approx(p99) and usual["unlike_training"] is False
    assert usual["nearest_distance"] == usual["contributors"][0]["distance"] <= p99
    noise = np.random.default_rng(3).integers(0, 256, size=(28, 28), dtype=np.uint8)
    odd = client.post("/api/match", files={"image": ("noise.png", _png(noise), "image/png")}).json()
    assert odd["unlike_training"] is True and odd["nearest_distance"] > p99
    html = client.post("/attribute", files={"image": ("noise.png", _png(noise), "image/png")}).text
    assert 'id="unlike-training"' in html and 'data-unlike="true"' in html
    html = client.post("/attribute", files={"image": ("d.png", small["gen_files"][5].read_bytes(), "image/png")}).text
    assert 'id="unlike-training"' not in html and 'data-unlike="false"' in html


def test_warm_up_scores_a_dummy_image_with_every_backend(small, monkeypatch):
    import gmv_store.store as store_mod
    from gmv_store.web.attribution import Matcher

    calls = []
    real = store_mod.make_backend

    def spy(kind, spec, device=None):
        b = real(kind, spec, device)
        for name in ("embed", "score", "vector_embedder"):
            fn = getattr(b, name, None)
            if callable(fn):
                monkeypatch.setattr(b, name, lambda *a, _fn=fn, _n=name, **kw: calls.append((kind, _n)) or _fn(*a, **kw))
        return b

    monkeypatch.setattr(store_mod, "make_backend", spy)
    m = Matcher(small["store"])
    m.prepare((28, 28, 1))
    assert ("embedder", "embed") in calls and ("quality", "score") in calls
    assert set(m._backends) == {"embedder", "rerank", "quality"}


def test_every_page_links_its_rows_as_json_and_csv(client, small):
    gid = ledger(small, "SELECT generated_id FROM generated WHERE set_name = 's1' LIMIT 1")[0][0]
    cid = ledger(small, "SELECT contributor_id FROM scores LIMIT 1")[0][0]
    for path in ("/", "/sets/s1", f"/generated/s1/{gid}", f"/contributors/{cid}", "/owners/alice", "/owners",
                 "/sql?q=SELECT+*+FROM+sets"):
        html = client.get(path).text
        links = [h.replace("&amp;", "&") for h in re.findall(r'href="([^"]+)"[^>]*data-export="(?:json|csv)"', html)]
        assert len(links) >= 2, path
        for link in links:
            r = client.get(link)
            assert r.status_code == 200, (path, link)
            if "csv" in link.split("?")[0] or "format=csv" in link:
                assert r.headers["content-type"].startswith("text/csv")
            else:
                assert isinstance(r.json(), (list, dict))


def test_owner_page_counts_pages_and_facets_sets(client, small):
    n = ledger(small, "SELECT count(*) FROM contributors WHERE owner = 'alice'")[0][0]
    pages = math.ceil(n / 48)
    html = client.get("/owners/alice?set=s1&page=999").text
    assert f'data-page="{pages}" data-pages="{pages}"' in html and f"{n} training images" in html
    facet = re.search(r'data-facet="set">(.*?)</div>', html, re.S).group(1)
    counts = dict(ledger(small, "SELECT set_name, n_contributors FROM owner_values WHERE owner = 'alice'"))
    assert {s: int(c) for s, c in re.findall(r'>([^<>]+) <span class="n">(\d+)</span>', facet)} == counts
    shown = client.get("/owners/alice?set=s1&format=json&table=images").json()
    assert len(shown) == 48 and shown == sorted(shown, key=lambda r: (-r["value"], r["contributor_id"]))
