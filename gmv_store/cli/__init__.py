"""`gmv`: a thin click layer over `gmv_store.api`. Each command parses its options, makes one
library call and prints the result; named library errors become one line `Error: ...` and
exit status 1. Exit status 3 means the command finished but skipped some inputs (each
reported on stderr).

One module per command group: setup (init, migrate, status, backends, demo), write
(ingest, value, refresh, forget..., verify), read (top, contributor, values, sql), match,
export, serve (the browser UI), eval.
"""
from __future__ import annotations

import warnings
from typing import TextIO

import click

from . import eval as eval_commands
from . import export, match, read, relocate, serve, setup, write


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="gmv-store")
def cli() -> None:
    """gmv-store: which training images made this generated image, and what is each worth?

    \b
    Quick start:
      gmv demo                                   # MNIST end to end, offline
      gmv init --store my-store --profile basic
      gmv ingest train/ --label-from parent --owner alice --store my-store
      gmv value generated/ --set run1 --label-from parent --store my-store
      gmv values --set run1 --store my-store
    """


for module in (setup, write, read, match, export, serve, relocate):
    for command in vars(module).values():
        if isinstance(command, click.Command):
            cli.add_command(command)
cli.add_command(eval_commands.eval_group, "eval")


def _warning_line(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    # libraries' warnings (e.g. an API key sent over plain http) as one line, not two with a path
    click.echo(f"warning: {message}", err=True)


def main() -> None:
    warnings.showwarning = _warning_line
    cli()
