"""Read-only lookups: top, contributor, values, sql. They read the ledger (its snapshot while
a writer runs, with a note on stderr) and never touch Qdrant."""
from __future__ import annotations

import sys

import click

from .. import api
from ..options import ContributorOptions, SqlOptions, TopOptions, ValuesOptions
from .options import errors_to_lines, note, output_options, print_rows, record_option, store_option


@click.command()
@store_option
@click.argument("refs", nargs=-1, required=True, metavar="IMAGE_OR_ID...")
@record_option(TopOptions, "set_name", "--set", "set_name", help="Only this generated set.")
@record_option(TopOptions, "limit", "--limit", help="Show only the first N contributors.")
@output_options
@errors_to_lines
def top(store: str | None, refs: tuple[str, ...], set_name: str | None, limit: int | None, fmt: str) -> None:
    """Top-k contributors of generated images (by path or generated id).

    \b
    Examples:
      gmv top gen/7/0003.png
      gmv top 1cd0b151467cf018 --set gan-v1 --limit 10 --json
    """
    gens = api.top(store, refs, set_name=set_name, limit=limit, note=note)
    if fmt == "json":
        print_rows(gens, "json")
    elif fmt == "csv":
        print_rows([{"set_name": g["set_name"], "generated_id": g["generated_id"], "generated_label": g["label"], **c}
                    for g in gens for c in g["contributors"]], "csv")
    else:
        for i, g in enumerate(gens):
            if i:
                click.echo()
            click.echo(f"generated {g['generated_id']}  set {g['set_name']}  label {g['label']}  "
                       f"quality {g['quality']:.4g}  source {g['source']}")
            print_rows(g["contributors"], "table")


@click.command()
@store_option
@click.argument("contributor_id")
@record_option(ContributorOptions, "limit", "--limit", show_default=True, help="Generated images to list.")
@output_options
@errors_to_lines
def contributor(store: str | None, contributor_id: str, limit: int, fmt: str) -> None:
    """A training image's value in each set, its rank, and what it contributed most to.

    \b
    Example:
      gmv contributor 8117a1e5015b8a3a
    """
    info = api.contributor(store, contributor_id, limit=limit, note=note)
    if fmt == "json":
        print_rows([info], "json")
        return
    if fmt == "csv":
        print_rows([{"contributor_id": info["contributor_id"], **s} for s in info["sets"]], "csv")
        return
    click.echo(f"contributor {info['contributor_id']}  label {info['label']}  owner {info['owner']}  source {info['source']}")
    click.echo(f"sha256 {info['sha256']}  ingested {info['ingested_at']}")
    click.echo("\nvalue per set (rank among credited contributors):")
    print_rows(info["sets"], "table")
    click.echo("\ngenerated images it contributed most to:")
    print_rows(info["top_generated"], "table")


@click.command()
@store_option
@click.option("--set", "set_name", required=True, help="Generated set.")
@record_option(ValuesOptions, "by", "--by", type=click.Choice(["owner", "label"]),
               help="Roll values up per owner or label.")
@record_option(ValuesOptions, "limit", "--limit", show_default=True, help="Rows to show (0 = all).")
@output_options
@errors_to_lines
def values(store: str | None, set_name: str, by: str | None, limit: int, fmt: str) -> None:
    """Leaderboard of a set: value φ = value_sum / m per contributor (or per owner).

    \b
    Examples:
      gmv values --set gan-v1
      gmv values --set gan-v1 --by owner --csv > owners.csv
    """
    print_rows(api.values(store, set_name, by=by, limit=limit or None, note=note), fmt)


@click.command()
@store_option
@click.argument("sql", required=False)
@click.option("-p", "--param", "params", multiple=True, help="Positional parameter for ? placeholders (repeatable).")
@record_option(SqlOptions, "timeout", "--timeout", show_default=True, metavar="SECONDS",
               help="Stop the query after this long (0 = no limit).")
@record_option(SqlOptions, "memory_limit", "--memory-limit", metavar="SIZE",
               help="Memory the query may use: a DuckDB size (2GB, 512MB) or a share of RAM (10%) [default: 25%].")
@output_options
@errors_to_lines
def sql(store: str | None, sql: str | None, params: tuple[str, ...], timeout: float, memory_limit: str | None,
        fmt: str) -> None:
    """Read-only SQL over the documented views (SQL as argument or on stdin).

    Views: contributors, generated, scores, sets, contributor_values, owner_values, forgotten.
    One SELECT statement at a time; writes (also inside WITH), ATTACH, INSTALL/LOAD and any
    file access are refused. A query stops at --timeout (default 60 s), at --memory-limit
    (default 25% of RAM) or on Ctrl-C, with one `Error:` line and exit status 1.

    \b
    Examples:
      gmv sql "SELECT owner, sum(value) FROM contributor_values JOIN contributors USING (contributor_id) GROUP BY 1"
      echo "SELECT * FROM sets" | gmv sql --json
      gmv sql "SELECT * FROM scores WHERE generated_id = ?" -p 1cd0b151467cf018
      gmv sql --timeout 300 --memory-limit 8GB "SELECT label, count(*) FROM scores JOIN contributors USING (contributor_id) GROUP BY 1"
    """
    if sql is None:
        sql = sys.stdin.read()
    cols, rows = api.sql(store, sql, list(params), timeout=timeout, memory_limit=memory_limit, note=note)
    print_rows([dict(zip(cols, r)) for r in rows], fmt)
