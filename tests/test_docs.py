"""Docs that cannot drift: every command has help with an example, a place in the README's tour
(top-level commands) and a section in the docs (README.md and docs/*.md, where the reference lives)."""
import re
from pathlib import Path

from click.testing import CliRunner

from gmv_store.cli import cli

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
DOCS = "\n".join(p.read_text() for p in DOC_FILES)


def _commands(group, prefix=""):
    for name, cmd in group.commands.items():
        yield prefix + name, cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, prefix + name + " ")


def _named(command: str, text: str) -> bool:
    """`gmv NAME` as a whole command name: `gmv forget` is not named by `gmv forget-set` alone."""
    return re.search(rf"gmv {re.escape(command)}(?![\w-])", text) is not None


def test_the_name_check_can_fail():
    assert "docs/commands.md" in {f"docs/{p.name}" for p in DOC_FILES}  # the reference is read
    assert not _named("no-such-command", DOCS)
    assert not _named("forget", "gmv forget-set x; gmv forget-generated y")
    assert _named("forget", "run gmv forget --owner a")


def test_every_command_documented_with_help_example():
    for name, _cmd in _commands(cli):
        r = CliRunner().invoke(cli, name.split() + ["--help"])
        assert r.exit_code == 0, name
        assert "Example" in r.output, f"{name}: --help has no example"
        assert _named(name, DOCS), f"`gmv {name}` is in neither README.md nor docs/*.md"
        if " " not in name:
            assert _named(name, README), f"`gmv {name}` is not in README.md's tour"


def test_docs_list_every_sql_view():
    from gmv_store.migrate import load_migrations

    views = {m for mig in load_migrations() for m in re.findall(r"CREATE VIEW (\w+)", mig.sql)}
    reference = (ROOT / "docs" / "commands.md").read_text()
    for v in views:
        assert f"`{v}`" in reference, f"view {v} is not in docs/commands.md's SQL reference"
