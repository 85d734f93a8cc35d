"""The Python API as people use it: real signatures, `top` that refuses to stack sets, one
column vocabulary, `values()` with set/label/owner/source, short reprs; and messages that
name an option as each reader types it (Python keyword, form field, CLI flag)."""
import inspect

import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient
from ui_store import SLASH_SET, build

import gmv_store
from gmv_store import api
from gmv_store.cli import cli
from gmv_store.errors import BadInput, NotFound
from gmv_store.web import Settings, create_app


@pytest.fixture(scope="module")
def small(tmp_path_factory, mnist_small):
    return build(tmp_path_factory.mktemp("pyapi"), mnist_small)


def test_methods_show_the_options_of_the_calls_they_make(small):
    store = gmv_store.open(small["store"])
    sig = inspect.signature(store.value)
    assert list(sig.parameters)[:2] == ["paths", "set_name"]
    assert sig.parameters["k"].default == 50 and "recall" in sig.parameters and "label_from" in sig.parameters
    assert "path" not in sig.parameters and "wait" not in sig.parameters
    assert inspect.signature(store.ingest).parameters["owner"].default is None
    assert "options as `gmv_store.api.ingest`" in store.ingest.__doc__
    assert inspect.signature(store.forget).parameters["refresh"].default is True


def test_top_without_a_set_refuses_to_stack_sets(small):
    store = gmv_store.open(small["store"])
    gid = api.sql(small["store"], "SELECT generated_id FROM generated GROUP BY 1 HAVING count(*) = 2 LIMIT 1")[1][0][0]
    with pytest.raises(BadInput) as e:
        store.top(gid)
    assert SLASH_SET in str(e.value) and "s1" in str(e.value) and "set_name=" in str(e.value)
    df = store.top(gid, set_name="s1")
    assert len(df) == 10 and set(df["set_name"]) == {"s1"}
    only = api.sql(small["store"], "SELECT generated_id FROM generated GROUP BY 1 HAVING count(*) = 1 LIMIT 1")[1][0][0]
    assert len(store.top(only)) == 10  # one set: no need to name it
    with pytest.raises(NotFound) as e:
        store.top("0" * 16)
    assert "gmv value IMAGE --set NAME" in str(e.value) and "0000000000000000 --set" not in str(e.value)


def test_one_column_vocabulary_and_values_carry_their_rows(small):
    store = gmv_store.open(small["store"])
    top = store.top(api.sql(small["store"], "SELECT generated_id FROM generated WHERE set_name = 's1' LIMIT 1")[1][0][0],
                    set_name="s1")
    matched = store.match([small["gen_files"][0]], k=3)
    shared = {"generated_id", "generated_label", "rank", "contributor_id", "distance", "credit", "label", "owner", "source"}
    assert shared <= set(top.columns) and shared <= set(matched.columns)
    v = store.values("s1", limit=5)
    assert {"set_name", "rank", "contributor_id", "value", "label", "owner", "source"} <= set(v.columns)
    assert set(v["set_name"]) == {"s1"} and v["source"].str.contains("alice.npz|bob.npz").all()


def test_reports_print_short(small, tmp_path):
    r = api.value(small["store"], [small["root"] / "gen"], "s1-again", k=4, label_from="parent")
    assert r.valued == 40 and len(r.generated_ids) == 40
    text = repr(r)
    assert len(text) < 400 and r.generated_ids[0] not in text and "valued=40" in text
    m = api.match(small["store"], [small["gen_files"][0]], k=3)
    assert "contributors" not in repr(m) and len(repr(m)) < 400


def test_messages_name_the_option_as_each_reader_types_it(small, tmp_path):
    with pytest.raises(BadInput) as e:
        api.match(small["store"], [small["gen_files"][0]], k=10, recall=5)
    assert str(e.value) == "recall 5: must be at least k (10)"
    out = CliRunner().invoke(cli, ["match", str(small["gen_files"][0]), "--k", "10", "--recall", "5",
                                   "--store", str(small["store"])])
    assert "Error: --recall 5: must be at least --k (10)" in out.output
    with TestClient(create_app(Settings(store=small["store"]))) as c:
        r = c.post("/api/match", files={"image": ("a.png", small["gen_files"][0].read_bytes(), "image/png")},
                   data={"k": "10", "recall": "5"})
        assert r.status_code == 400 and r.json()["error"] == "recall 5: must be at least k (10)"
        page = c.post("/attribute", files={"image": ("a.png", small["gen_files"][0].read_bytes(), "image/png")},
                      data={"k": "10", "recall": "5"})
        assert "recall 5: must be at least k (10)" in page.text and "--recall" not in page.text
    out_dir = tmp_path / "exp"
    gmv_store.open(small["store"]).export("s1", out_dir)
    with pytest.raises(BadInput) as e:
        gmv_store.open(small["store"]).export("s1", out_dir)
    assert "pass overwrite=True" in str(e.value) and "--force" not in str(e.value)
    out = CliRunner().invoke(cli, ["export", "--set", "s1", "--out", str(out_dir), "--store", str(small["store"])])
    assert "pass --force" in out.output and "overwrite=True" not in out.output and "\x00" not in out.output


def test_more_options_read_as_each_reader_types_them(small):
    with pytest.raises(BadInput) as e:
        api.values(small["store"], "s1", by="colour")
    assert str(e.value).startswith("by 'colour': choose one of")
    out = CliRunner().invoke(cli, ["values", "--set", "s1", "--by", "colour", "--store", str(small["store"])])
    assert "--by 'colour'" in out.output or "Invalid value" in out.output  # click may refuse it first
    with pytest.raises(BadInput) as e:
        api.value(small["store"], [small["gen_files"][0]], "s1", k=7)
    assert "was valued with k=10 recall=100" in str(e.value) and "choose another set_name" in str(e.value)
    out = CliRunner().invoke(cli, ["value", str(small["gen_files"][0]), "--set", "s1", "--k", "7",
                                   "--store", str(small["store"])])
    assert "was valued with --k 10 --recall 100" in out.output and "choose another --set" in out.output
    with pytest.raises(BadInput) as e:
        api.sql(small["store"], "SELECT 1", timeout=-1)
    assert str(e.value) == "Invalid value for timeout: -1.0 is not in the range x>=0."  # as `gmv sql --timeout -1`
