"""`gmv export`: a set's values, scores, generated rows and the contributors as Parquet or
CSV files (DuckDB's own writer, `gmv_store.export`)."""
from __future__ import annotations

import click

from .options import errors_to_lines, note, store_option


@click.command()
@store_option
@click.option("--set", "set_name", required=True, help="Generated set to export.")
@click.option("--out", "out", required=True, metavar="DIR", help="Folder to write into (created if missing).")
@click.option("--format", "fmt", type=click.Choice(["parquet", "csv"]), default="parquet", show_default=True,
              help="File format.")
@click.option("--force", is_flag=True, help="Replace the files of an earlier export in DIR.")
@errors_to_lines
def export(store: str | None, set_name: str, out: str, fmt: str, force: bool) -> None:
    """Write one set's values, scores and generated images, and the contributors (every
    training image; one without a row in values has value 0) as files for pandas, polars,
    Spark or DuckDB, plus manifest.json (k, N, m, backends, row counts). Reads the ledger
    (the writer's snapshot while one runs); writes nothing in the store.

    \b
    Examples:
      gmv export --set gan-v1 --out exports/gan-v1
      gmv export --set gan-v1 --out exports/csv --format csv --force
    """
    from ..export import export as export_set

    m = export_set(store, set_name, out, fmt, overwrite=force, note=note)
    for name, f in m["files"].items():
        click.echo(f"{m['out']}/{f['file']}: {f['rows']:,} rows ({name})")
    click.echo(f"set {set_name}: m={m['m']}, k={m['k']}, recall={m['recall']}; manifest {m['out']}/manifest.json")
