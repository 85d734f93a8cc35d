"""Docs that cannot drift: every command has help with an example and a README section."""
from pathlib import Path

from click.testing import CliRunner

from gmv_store.cli import cli

README = (Path(__file__).parent.parent / "README.md").read_text()


def _commands(group, prefix=""):
    for name, cmd in group.commands.items():
        yield prefix + name, cmd
        if hasattr(cmd, "commands"):
            yield from _commands(cmd, prefix + name + " ")


def test_every_command_in_readme_with_help_example():
    for name, _cmd in _commands(cli):
        r = CliRunner().invoke(cli, name.split() + ["--help"])
        assert r.exit_code == 0, name
        assert "Example" in r.output, f"{name}: --help has no example"
        assert f"gmv {name}" in README, f"`gmv {name}` is not in README.md"


def test_readme_lists_every_sql_view():
    import re

    from gmv_store.migrate import load_migrations

    views = {m for mig in load_migrations() for m in re.findall(r"CREATE VIEW (\w+)", mig.sql)}
    for v in views:
        assert f"`{v}`" in README, v
