"""The tests' one way to run a gmv command in-process (click's CliRunner, exit status checked),
and the tiny store several input tests build on."""
from pathlib import Path

from click.testing import CliRunner, Result

from gmv_store import api
from gmv_store.cli import cli


def invoke(*args, code: int = 0, input: str | None = None, env: dict | None = None) -> Result:
    """Run `gmv ARGS...` in-process and assert its exit status is `code`; click's Result."""
    r = CliRunner().invoke(cli, [str(a) for a in args], input=input, env=env, catch_exceptions=False)
    assert r.exit_code == code, (r.exit_code, r.output)
    return r


def run(*args, code: int = 0, input: str | None = None, env: dict | None = None) -> str:
    """`invoke`, and what the command printed."""
    return invoke(*args, code=code, input=input, env=env).output


def tiny_store(tmp_path: Path) -> Path:
    """A `basic` store with 8-pixel recall and 14-pixel re-rank vectors: fast to fill."""
    path = tmp_path / "store"
    api.init_store(path, params={"embedder": {"size": 8}, "rerank": {"size": 14}})
    return path


def ledger_rows(store: Path, q: str) -> list[dict]:
    """The rows of a read-only query on the store's ledger, as dicts."""
    cols, data = api.sql(store, q)
    return [dict(zip(cols, r)) for r in data]
