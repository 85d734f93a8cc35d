"""Movable stores: sources inside the store are recorded relative to it, so a moved store
keeps its pictures; `gmv status` and every page say when recorded sources cannot be read,
with the `gmv relocate` that fixes it; relocate rewrites ledger and payloads (journaled) and
a moved store then serves every thumbnail."""
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from gmv_store import api
from gmv_store.cli import cli
from gmv_store.images import save_png
from gmv_store.sources.location import resolve, to_record
from gmv_store.store import GENERATED, TRAINING, Store
from gmv_store.web import Settings, create_app


@pytest.fixture(scope="module")
def moved(tmp_path_factory, mnist_small):
    """A store with its training data beside it (outside) and generated images inside it,
    then the whole folder moved elsewhere."""
    x, y, xt, yt = mnist_small
    old = tmp_path_factory.mktemp("before") / "project"
    old.mkdir()
    np.savez(old / "train.npz", images=x[:300], labels=y[:300])
    store = old / "store"
    api.init_store(store, "basic", params={"embedder": {"size": 16}, "rerank": {"size": 28}})
    api.ingest(store, [old / "train.npz"], owner="ann")
    for i in range(8):
        (store / "gen" / str(yt[i])).mkdir(parents=True, exist_ok=True)
        save_png(xt[i][:, :, None], store / "gen" / str(yt[i]) / f"{i}.png")
    api.value(store, [store / "gen"], "s", k=5, label_from="parent")
    new = tmp_path_factory.mktemp("after") / "moved-project"
    shutil.move(str(old), str(new))
    return {"old": old, "new": new, "store": new / "store"}


def payload_sources(store, collection) -> dict:
    with Store.open(store) as s:
        return {pid: p["source"] for chunk in s.vectors.scroll(collection) for pid, p in chunk}


def ledger_sources(store, table) -> dict:
    return dict(api.sql(store, f"SELECT point_id, source FROM {table}")[1])


def test_record_and_resolve_forms(tmp_path):
    root = tmp_path / "st"
    assert to_record(str(root / "gen" / "a.png"), root) == "gen/a.png"
    assert to_record(str(root / "x.npz") + "#3", root) == "x.npz#3"
    assert to_record(str(tmp_path / "other.png"), root) == str(tmp_path / "other.png")
    assert to_record(str(tmp_path / "st2" / "a.png"), root) == str(tmp_path / "st2" / "a.png")  # a sibling, not inside
    assert to_record("mnist:train#5", root) == "mnist:train#5"
    assert resolve("gen/a.png", root) == str(root.absolute() / "gen" / "a.png")
    assert resolve("x.npz#3", root) == str(root.absolute() / "x.npz") + "#3"
    assert resolve("mnist:train#5", root) == "mnist:train#5"


def test_sources_inside_are_relative_and_a_moved_store_says_what_is_missing(moved):
    store = moved["store"]
    gen = ledger_sources(store, "generated_images")
    assert gen and all(re.fullmatch(r"gen/\d/\d\.png", s) for s in gen.values())
    assert payload_sources(store, GENERATED) == gen
    train = set(ledger_sources(store, "training_images").values())
    assert all(s.startswith(str(moved["old"] / "train.npz") + "#") for s in train)
    info = api.status(store)
    u = info["unreachable_sources"]
    assert u["total"] == 308 and u["missing"] == 200 and u["checked"] == 208  # every training row, no generated one
    assert u["fix"] == f"gmv relocate {moved['old']} {moved['new']} --store {store}"
    assert any("cannot be read" in w and "gmv relocate" in w for w in info["warnings"])
    out = CliRunner().invoke(cli, ["status", "--store", str(store)])
    assert "unreachable sources: 200 of 208 sampled" in out.output


def test_pages_show_the_banner_then_relocate_fixes_every_thumbnail(moved):
    store = moved["store"]
    gid = api.sql(store, "SELECT generated_id FROM generated LIMIT 1")[1][0][0]
    cids = [r[0] for r in api.sql(store, "SELECT contributor_id FROM contributors ORDER BY 1 LIMIT 5")[1]]
    with TestClient(create_app(Settings(store=store))) as c:
        for path in ("/", "/sets/s", f"/generated/s/{gid}"):
            html = c.get(path).text
            assert 'id="unreachable"' in html and f"gmv relocate {moved['old']} {moved['new']}" in html, path
        assert c.get(f"/img/generated/s/{gid}.png").status_code == 200  # inside the store: moved with it
        assert c.get(f"/img/training/{cids[0]}.png").status_code == 404
    # relocate through the CLI, as a user would
    r = CliRunner().invoke(cli, ["relocate", str(moved["old"]), str(moved["new"]), "--store", str(store), "--dry-run"])
    assert r.exit_code == 0 and "would rewrite 300 training and 0 generated" in r.output
    assert ledger_sources(store, "training_images") and api.status(store)["unreachable_sources"]["missing"] == 200
    r = CliRunner().invoke(cli, ["relocate", str(moved["old"]), str(moved["new"]), "--store", str(store)])
    assert r.exit_code == 0 and "rewrote 300 training and 0 generated" in r.output, r.output
    train = ledger_sources(store, "training_images")
    assert all(s.startswith(str(moved["new"] / "train.npz") + "#") for s in train.values())
    assert payload_sources(store, TRAINING) == train
    assert api.status(store)["unreachable_sources"]["missing"] == 0
    assert api.verify(store, full=True).ok
    with TestClient(create_app(Settings(store=store))) as c:
        html = c.get("/sets/s").text
        assert 'id="unreachable"' not in html
        ids = set(re.findall(r'/img/training/([0-9a-f]{16})\.png', html))
        assert len(ids) >= 5 and all(c.get(f"/img/training/{i}.png").status_code == 200 for i in ids | set(cids))


def test_relocate_refuses_a_missing_target_and_recovers_after_a_kill(moved, monkeypatch):
    store = moved["store"]
    r = CliRunner().invoke(cli, ["relocate", str(moved["new"]), str(moved["new"] / "nope"), "--store", str(store)])
    assert r.exit_code == 1 and "no such file or folder" in r.output and "Traceback" not in r.output
    # killed after the ledger commit, before the payloads: the next writer sets them again
    shutil.copytree(moved["new"], moved["new"].parent / "copy")
    monkeypatch.setattr(Store, "sync_sources", lambda self, c, p: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        api.relocate(store, moved["new"], moved["new"].parent / "copy")
    monkeypatch.undo()
    train = ledger_sources(store, "training_images")
    assert all("/copy/" in s for s in train.values())
    assert api.sql(store, "SELECT kind FROM journal")[1] == [("relocate",)]
    assert payload_sources(store, TRAINING) == train  # Store.open recovered
    assert api.sql(store, "SELECT count(*) FROM journal")[1] == [(0,)]


def test_training_data_inside_the_store_is_relative_and_forget_by_its_path_still_works(tmp_path, mnist_small):
    x, y, _, _ = mnist_small
    store = tmp_path / "st"
    api.init_store(store, "basic", params={"embedder": {"size": 16}, "rerank": {"size": 28}})
    (store / "data").mkdir()
    np.savez(store / "data" / "a.npz", images=x[:30], labels=y[:30])
    np.savez(store / "data" / "b.npz", images=x[30:60], labels=y[30:60])
    api.ingest(store, [store / "data"])
    assert {s.split("#")[0] for s in ledger_sources(store, "training_images").values()} == {"data/a.npz", "data/b.npz"}
    r = api.forget(store, source=str(store / "data" / "a.npz") + "#*")
    assert r.removed == 30 and api.status(store)["training_images"] == 30


def test_relocate_on_the_client_engine(tmp_path, mnist_small):
    """The qdrant-client engines (local here, a server alike) set payloads by batch updates."""
    x, y, _, _ = mnist_small
    old = tmp_path / "data"
    old.mkdir()
    np.savez(old / "t.npz", images=x[:40], labels=y[:40])
    store = tmp_path / "st"
    api.init_store(store, "basic", params={"embedder": {"size": 16}, "rerank": {"size": 28}}, engine="local")
    api.ingest(store, [old / "t.npz"], owner="o")
    new = tmp_path / "moved-data"
    shutil.move(str(old), str(new))
    assert api.status(store)["unreachable_sources"]["missing"] == 40
    r = api.relocate(store, old, new)
    assert r.rewritten == {"training": 40, "generated": 0}
    train = ledger_sources(store, "training_images")
    assert all(s.startswith(str(new / "t.npz") + "#") for s in train.values())
    assert payload_sources(store, TRAINING) == train
    assert api.verify(store, full=True).ok


def test_a_store_made_before_relative_sources_moves_with_one_relocate(tmp_path, mnist_small):
    """A store whose generated images inside it were recorded with absolute paths (made by an
    earlier version), copied elsewhere: status guesses the fix, relocate makes them relative."""
    x, y, xt, yt = mnist_small
    store = tmp_path / "old-place" / "demo"
    api.init_store(store, "basic", params={"embedder": {"size": 16}, "rerank": {"size": 28}})
    api.ingest(store, [_npz(tmp_path, x[:100], y[:100])], owner="m")
    for i in range(6):
        (store / "demo-generated" / str(yt[i])).mkdir(parents=True, exist_ok=True)
        save_png(xt[i][:, :, None], store / "demo-generated" / str(yt[i]) / f"{i:04d}.png")
    api.value(store, [store / "demo-generated"], "d", k=5)
    with Store.open(store) as s:  # as an earlier version recorded them: absolute
        pids = [r[0] for r in s.ledger.execute("SELECT point_id FROM generated_images").fetchall()]
        with s.relocating(GENERATED, pids) as con:
            con.execute("UPDATE generated_images SET source = ? || '/' || source", [str(store)])
    copy = tmp_path / "new-place" / "demo"
    shutil.copytree(store, copy)
    shutil.rmtree(store)
    u = api.status(copy)["unreachable_sources"]
    assert u["missing"] == 6 and u["fix"] == f"gmv relocate {store} {copy} --store {copy}"
    r = api.relocate(copy, store, copy)
    assert r.rewritten["generated"] == 6 and r.made_relative == 6
    assert all(s.startswith("demo-generated/") for s in ledger_sources(copy, "generated_images").values())
    assert payload_sources(copy, GENERATED) == ledger_sources(copy, "generated_images")
    with TestClient(create_app(Settings(store=copy))) as c:
        gens = api.sql(copy, "SELECT generated_id FROM generated")[1]
        assert all(c.get(f"/img/generated/d/{g}.png").status_code == 200 for (g,) in gens)


def _npz(tmp_path, x, y):
    f = tmp_path / "train.npz"
    np.savez(f, images=x, labels=y)
    return f


def test_the_banner_goes_when_the_files_come_back_without_a_write(tmp_path, mnist_small, monkeypatch):
    import gmv_store.web.render as render

    x, y, _, _ = mnist_small
    data = tmp_path / "data"
    data.mkdir()
    store = tmp_path / "st"
    api.init_store(store, "basic", params={"embedder": {"size": 16}, "rerank": {"size": 28}})
    np.savez(data / "t.npz", images=x[:30], labels=y[:30])
    api.ingest(store, [data / "t.npz"])
    with TestClient(create_app(Settings(store=store))) as c:
        assert 'id="unreachable"' not in c.get("/").text
        shutil.move(str(data), str(tmp_path / "elsewhere"))
        monkeypatch.setattr(render, "RECHECK_S", 0.0)
        assert 'id="unreachable"' in c.get("/").text
        shutil.move(str(tmp_path / "elsewhere"), str(data))
        assert 'id="unreachable"' not in c.get("/").text
