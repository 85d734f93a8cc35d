"""Backends from a third-party distribution: a tiny plugin package is really pip-installed
(into a temporary --target folder), found through its `gmv_store.backends` entry points, used
to init, ingest and value a store, and listed by `gmv backends` with its distribution."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = '''
import numpy as np

from gmv_store.backends.base import Embedder, Quality
from gmv_store.images import resize_batch


class TinyEmbedder(Embedder):
    name = "tiny"
    description = "mean gray level of each block (a test plugin)"
    defaults = {"blocks": 4}
    metric = "euclid"

    @property
    def dim(self):
        return self.params["blocks"] ** 2

    def embed(self, images):
        return resize_batch(images, self.params["blocks"], "gray").reshape(len(images), -1)


class BrightQuality(Quality):
    name = "bright"
    description = "0.1 + mean brightness (a test plugin)"
    defaults = {}

    def score(self, images):
        return np.array([0.1 + float(np.asarray(i).mean()) / 255 for i in images])
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "gmv-tiny"
version = "0.3"

[project.entry-points."gmv_store.backends"]
"embedder.tiny" = "gmv_tiny:TinyEmbedder"
"quality.bright" = "gmv_tiny:BrightQuality"
"rerank.l2" = "gmv_tiny:TinyEmbedder"
"colour.red" = "gmv_tiny:TinyEmbedder"
"rerank.ghost" = "gmv_tiny_gone:Ghost"
"quality.wrong" = "gmv_tiny:TinyEmbedder"

[tool.setuptools]
py-modules = ["gmv_tiny"]
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    src = tmp_path_factory.mktemp("gmv-tiny-src")
    (src / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (src / "gmv_tiny.py").write_text(textwrap.dedent(PLUGIN))
    target = tmp_path_factory.mktemp("site")
    # offline: the build uses this environment's setuptools, the wheel goes into `target`
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(src)], check=True, capture_output=True)
    assert (target / "gmv_tiny-0.3.dist-info" / "entry_points.txt").is_file()
    return target


def gmv(*args, site=None, code=0):
    path = [str(site)] if site else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(path + [str(ROOT)]), "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-m", "gmv_store", *map(str, args)], capture_output=True, text=True,
                       env=env, cwd=ROOT)
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    return r


def test_backends_lists_each_with_its_origin(plugin_dir):
    rows = json.loads(gmv("backends", "--json", site=plugin_dir).stdout)
    by = {(r["kind"], r["name"], r["origin"]): r for r in rows}
    plugin = "plugin gmv-tiny 0.3"
    assert by[("embedder", "tiny", plugin)]["params"] == {"blocks": 4}
    assert by[("quality", "bright", plugin)]["description"].startswith("0.1 + mean brightness")
    assert by[("rerank", "l2", "built-in")]["params"] == {"size": 32, "color": "gray"}  # never replaced
    assert "already provided by built-in" in by[("rerank", "l2", plugin)]["description"]
    assert "must be named KIND.NAME" in by[("colour", "red", plugin)]["description"]
    assert "ModuleNotFoundError" in by[("rerank", "ghost", plugin)]["description"]
    assert "subclass of gmv_store.backends.base.Quality" in by[("quality", "wrong", plugin)]["description"]
    assert all(r["origin"] == "built-in" for r in rows if r["name"] in ("pixels", "none", "basic"))
    # without the plugin on the path, only built-ins remain
    assert {r["origin"] for r in json.loads(gmv("backends", "--json").stdout)} == {"built-in"}


def test_a_plugin_backend_inits_ingests_and_values(plugin_dir, data_files, tmp_path, mnist_small):
    train, gen = data_files
    store = tmp_path / "store"
    gmv("init", "--store", store, "--embedder", "tiny", "-p", "embedder.blocks=5", "--rerank", "none",
        "--quality", "bright", site=plugin_dir)
    gmv("ingest", train, "--store", store, site=plugin_dir)
    gmv("value", gen, "--set", "s", "--k", "5", "--store", store, site=plugin_dir)
    q = json.loads(gmv("sql", "SELECT generated_id, quality FROM generated ORDER BY generated_id", "--json",
                       "--store", store, site=plugin_dir).stdout)
    xt = mnist_small[2]
    # the plugin's quality, computed here from the same pixels, is what the store recorded
    assert sorted(r["quality"] for r in q) == pytest.approx(sorted(0.1 + x.mean() / 255 for x in xt))
    credits = json.loads(gmv("sql", "SELECT count(*) AS n, sum(credit) AS c FROM scores", "--json",
                             "--store", store, site=plugin_dir).stdout)[0]
    assert credits["n"] == 5 * len(xt) and credits["c"] == pytest.approx(sum(r["quality"] for r in q))
    status = gmv("status", "--store", store, site=plugin_dir).stdout
    assert "tiny" in status and "bright" in status
    # the store needs the plugin: without it, one line naming the backend, no traceback
    r = gmv("value", gen, "--set", "t", "--store", store, code=1)
    assert "unknown embedder 'tiny'" in r.stderr and "Traceback" not in r.stderr


def test_a_broken_plugin_backend_is_one_line(plugin_dir, tmp_path):
    r = gmv("init", "--store", tmp_path / "s", "--rerank", "ghost", site=plugin_dir, code=1)
    assert "rerank 'ghost' from plugin gmv-tiny 0.3 cannot be loaded" in r.stderr and "Traceback" not in r.stderr
    r = gmv("init", "--store", tmp_path / "s", "--quality", "wrong", site=plugin_dir, code=1)
    assert "must be a subclass of gmv_store.backends.base.Quality" in r.stderr
    r = gmv("init", "--store", tmp_path / "s", "--embedder", "red", site=plugin_dir, code=1)
    assert "unknown embedder 'red'" in r.stderr


def test_plugins_are_scanned_only_past_the_built_ins(plugin_dir):
    code = ("from gmv_store.backends import registry as r; r.backend_class('embedder', 'pixels'); "
            "assert r._plugin_problems is None, 'scanned for a built-in'; "
            "assert r.backend_class('embedder', 'tiny').__module__ == 'gmv_tiny'; "
            "assert r.origin('embedder', 'tiny') == 'plugin gmv-tiny 0.3'")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_dir), str(ROOT)])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=ROOT)
