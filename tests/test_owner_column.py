"""Owners per row: `--owner-column NAME` reads each training image's owner from a Parquet
column or a WebDataset `.json` key, so per-owner values work on a shard of many owners."""
import pytest
from click.testing import CliRunner
from shard_files import write_parquet, write_tar

from gmv_store import api
from gmv_store.cli import cli

OWNERS = ["ann", "bo", "cy", "di"]


@pytest.fixture
def store(tmp_path):
    s = tmp_path / "store"
    api.init_store(s, "basic", params={"embedder": {"size": 16}, "rerank": {"size": 28}})
    return s


def test_parquet_column_and_webdataset_key_give_each_row_its_owner(store, tmp_path, mnist_small):
    import pyarrow as pa

    x, y, xt, yt = mnist_small
    who = [OWNERS[i % 4] for i in range(200)]
    pq_file = write_parquet(tmp_path / "t.parquet", x[:200], y[:200], extra={"author": pa.array(who)})
    r = CliRunner().invoke(cli, ["ingest", str(pq_file), "--owner-column", "author", "--store", str(store)])
    assert r.exit_code == 0, r.output
    docs = [{"owner": 7 if i % 2 else "eve"} if i != 5 else {} for i in range(100)]
    tar = write_tar(tmp_path / "s.tar", x[200:300], y[200:300], json_docs=docs)
    api.ingest(store, [tar], owner_column="owner", owner="fallback")
    got = dict(api.sql(store, "SELECT owner, count(*) FROM contributors GROUP BY 1")[1])
    assert got == {"ann": 50, "bo": 50, "cy": 50, "di": 50, "7": 49, "eve": 50, "fallback": 1}
    # per-owner values of a set valued against them
    api.value(store, [xt_file(tmp_path, xt, yt)], "g", k=10)
    by_owner = {o["owner"]: o["value"] for o in api.values(store, "g", by="owner", limit=None)}
    per_row = dict(api.sql(store, "SELECT c.owner, sum(v.value) FROM contributor_values v JOIN contributors c "
                                  "USING (contributor_id) WHERE set_name = 'g' GROUP BY 1")[1])
    assert len(by_owner) >= 4 and by_owner == pytest.approx(per_row)


def xt_file(tmp_path, xt, yt):
    import numpy as np

    f = tmp_path / "gen.npz"
    np.savez(f, images=xt[:20], labels=yt[:20])
    return f


def test_an_owner_column_no_row_has_is_one_line_naming_the_keys(store, tmp_path, mnist_small):
    import pyarrow as pa

    x, y, _, _ = mnist_small
    f = write_parquet(tmp_path / "t.parquet", x[:20], y[:20], extra={"author": pa.array(["a"] * 20)})
    r = CliRunner().invoke(cli, ["ingest", str(f), "--owner-column", "auhtor", "--store", str(store)])
    assert r.exit_code == 1 and "--owner-column 'auhtor'" in r.output and "author" in r.output
    assert "Traceback" not in r.output
    assert api.status(store)["training_images"] == 0
