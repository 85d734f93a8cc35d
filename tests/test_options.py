"""The three surfaces of each command agree with its options record (gmv_store/options.py):
the CLI's click options, the `gmv_store.api` call's signature and the `GmvStore` method's name
the same options with the same defaults and limits, and a value out of its limits is refused
with the same line by the CLI and by the API."""
import inspect
from dataclasses import fields

import click
import pytest
from cli_helpers import run

from gmv_store import api, handle
from gmv_store.cli import cli
from gmv_store.errors import BadInput
from gmv_store.options import (
    DEFAULT_K,
    ContributorOptions,
    ForgetOptions,
    IndexOptions,
    IngestOptions,
    MatchOptions,
    RefreshOptions,
    RelocateOptions,
    RepairOptions,
    SqlOptions,
    TopOptions,
    ValueOptions,
    ValuesOptions,
    VerifyOptions,
    limit_of,
)

# record, API call, leading positional arguments after the store path (the handle's first
# ones too, under its own names), CLI command, record options the CLI does not offer
COMMANDS = [
    (IngestOptions, api.ingest, 1, "ingest", {"progress"}),
    (ValueOptions, api.value, 2, "value", {"progress"}),
    (MatchOptions, api.match, 1, "match", {"batch_size"}),
    (RefreshOptions, api.refresh, 0, "refresh", {"progress"}),
    (ForgetOptions, api.forget, 1, "forget", {"progress"}),
    (VerifyOptions, api.verify, 0, "verify", set()),
    (RepairOptions, api.repair, 0, "repair", set()),
    (RelocateOptions, api.relocate, 2, "relocate", set()),
    (TopOptions, api.top, 1, "top", set()),
    (ContributorOptions, api.contributor, 1, "contributor", set()),
    (ValuesOptions, api.values, 1, "values", set()),
    (SqlOptions, api.sql, 2, "sql", set()),
]
IDS = [c[3] for c in COMMANDS]
NOT_OPTIONS = {"note"}  # the API's callback for messages, no option
FROM_THE_HANDLE = {"wait", "device"}  # what a GmvStore supplies itself
# click parameter -> the record's option; the --vectors family is one `vectors=` dict
CLI_NAMES = {"no_refresh": "refresh", "no_index": "index", "vectors_path": "vectors", "vector_column": "vectors",
             "metadata": "vectors", "id_column": "vectors", "images": "vectors", "rerank_vectors": "vectors",
             "vectors_model": "vectors"}
CLI_ONLY = {"store", "fmt"}
INVERTED = {"no_refresh", "no_index"}


def _defaults(record) -> dict:
    return {f.name: f.default for f in fields(record)}


def _keywords(fn, skip: int) -> dict:
    params = list(inspect.signature(fn).parameters.values())[skip:]
    return {p.name: p.default for p in params if p.name not in NOT_OPTIONS}


@pytest.mark.parametrize(("record", "call", "positional", "name", "cli_lacks"), COMMANDS, ids=IDS)
def test_the_api_call_takes_the_records_options_with_its_defaults(record, call, positional, name, cli_lacks):
    assert _keywords(call, 1 + positional) == _defaults(record)


@pytest.mark.parametrize(("record", "call", "positional", "name", "cli_lacks"), COMMANDS, ids=IDS)
def test_the_handle_method_takes_them_less_what_the_store_supplies(record, call, positional, name, cli_lacks):
    method = getattr(handle.GmvStore, call.__name__)
    sig = inspect.signature(method)
    assert not any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()), f"{name}: **kw hides options"
    want = {k: v for k, v in _defaults(record).items() if k not in FROM_THE_HANDLE}
    assert _keywords(method, 1 + positional) == want


@pytest.mark.parametrize(("record", "call", "positional", "name", "cli_lacks"), COMMANDS, ids=IDS)
def test_the_cli_offers_them_with_the_same_defaults_and_limits(record, call, positional, name, cli_lacks):
    defaults = _defaults(record)
    arguments = set(list(inspect.signature(call).parameters)[1:1 + positional])  # value's --set, sql's -p
    options = [p for p in cli.commands[name].params
               if isinstance(p, click.Option) and p.name not in CLI_ONLY | arguments]
    ctx = click.Context(cli.commands[name])
    offered = {CLI_NAMES.get(p.name, p.name) for p in options}
    assert offered <= set(defaults), f"{name}: CLI options the record lacks: {offered - set(defaults)}"
    assert set(defaults) - offered == cli_lacks
    for p in options:
        field = CLI_NAMES.get(p.name, p.name)
        if p.name in CLI_NAMES or p.multiple:  # inverted flags, the --vectors family, KEY=VALUE pairs
            continue
        assert p.get_default(ctx) == defaults[field], (name, p.name)
        limit = limit_of(record, field)
        if limit is not None:
            assert isinstance(p.type, click.IntRange if limit.whole else click.FloatRange), (name, p.name)
            assert (p.type.min, p.type.max) == (limit.lo, limit.hi), (name, p.name)
    for p in options:
        if p.name in INVERTED:
            assert p.is_flag and p.get_default(ctx) is False and defaults[CLI_NAMES[p.name]] is True


# `gmv init`'s and `gmv index`'s flags for the index settings (the keys of `index=` / `settings=`)
INDEX_FLAGS = {"index_mode": "mode", "hnsw_m": "hnsw_m", "hnsw_ef_construct": "hnsw_ef_construct",
               "quantization": "quantization", "hnsw_ef_factor": "ef_factor", "shards": "shard_number",
               "replicas": "replication_factor", "write_consistency": "write_consistency_factor",
               "on_disk": "on_disk_vectors"}


@pytest.mark.parametrize("name", ["init", "index"])
def test_index_settings_have_one_set_of_defaults_and_limits(name):
    from gmv_store.config import IndexConfig

    defaults = _defaults(IndexOptions)
    assert {k: v for k, v in IndexConfig().model_dump().items() if k in defaults} == defaults
    command = cli.commands[name]
    ctx = click.Context(command)
    offered = {p.name: p for p in command.params if p.name in INDEX_FLAGS}
    assert {INDEX_FLAGS[n] for n in offered} == (set(defaults) if name == "init" else
                                                 {"mode", "hnsw_m", "hnsw_ef_construct", "quantization",
                                                  "on_disk_vectors"})
    for flag, p in offered.items():
        field = INDEX_FLAGS[flag]
        # init starts from the defaults; index changes only what is given
        assert p.get_default(ctx) == (defaults[field] if name == "init" else None), (name, flag)
        limit = limit_of(IndexOptions, field)
        if limit is not None:
            assert (p.type.min, p.type.max) == (limit.lo, limit.hi), (name, flag)


def test_k_is_written_once_and_value_and_match_share_its_limits():
    assert ValueOptions().k == MatchOptions().k == DEFAULT_K == 50
    assert inspect.signature(handle.GmvStore.match).parameters["k"].default == DEFAULT_K
    for name in ("k", "recall"):
        assert limit_of(ValueOptions, name) == limit_of(MatchOptions, name) == limit_of(RepairOptions, name)


# (command line, the same call in Python): each with one value out of its limits
BAD = [
    (["value", "x.png", "--set", "s", "--k", "0"], lambda p: api.value(p, ["x.png"], "s", k=0)),
    (["match", "x.png", "--k", "10001"], lambda p: api.match(p, ["x.png"], k=10001)),
    (["match", "x.png", "--recall", "0"], lambda p: api.match(p, ["x.png"], recall=0)),
    (["ingest", "x.png", "--workers", "513"], lambda p: api.ingest(p, ["x.png"], workers=513)),
    (["ingest", "x.png", "--ray-gpus-per-worker", "-1"], lambda p: api.ingest(p, ["x.png"], ray_gpus_per_worker=-1)),
    (["verify", "--sample", "0"], lambda p: api.verify(p, sample=0)),
    (["repair", "--k", "10001"], lambda p: api.repair(p, k=10001)),
    (["values", "--set", "s", "--limit", "-1"], lambda p: api.values(p, "s", limit=-1)),
    (["sql", "SELECT 1", "--timeout", "-1"], lambda p: api.sql(p, "SELECT 1", timeout=-1)),
    (["value", "x.png", "--set", "s", "--k", "abc"], lambda p: api.value(p, ["x.png"], "s", k="abc")),
    (["ingest", "x.png", "--ray-gpus-per-worker", "abc"], lambda p: api.ingest(p, ["x.png"], ray_gpus_per_worker="abc")),
    (["init", "--hnsw-m", "2"], lambda p: api.init_store(p, index={"hnsw_m": 2})),
    (["init", "--hnsw-ef-factor", "0.5"], lambda p: api.init_store(p, index={"ef_factor": 0.5})),
    (["init", "--shards", "0"], lambda p: api.init_store(p, index={"shard_number": 0})),
    (["index", "--hnsw-ef-construct", "8"], lambda p: api.index(p, settings={"hnsw_ef_construct": 8})),
]


@pytest.mark.parametrize(("argv", "call"), BAD, ids=[" ".join(a[:1] + a[-2:]) for a, _ in BAD])
def test_a_value_out_of_its_limits_is_refused_with_the_same_line(tmp_path, argv, call):
    store = tmp_path / "no-store-needed"  # refused before anything is opened
    out = run(*argv, "--store", store, code=2)
    with pytest.raises(BadInput) as e:
        call(store)
    line = f"Error: {e.value.for_cli()}"
    assert line in out.splitlines(), (line, out)
    assert f"'{argv[-2]}'" in line and "--" not in str(e.value)  # Python names the keyword
    assert not store.exists()
