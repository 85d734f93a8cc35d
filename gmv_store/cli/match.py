"""`gmv match`: attribution of images that are in no set. Nothing is written: no generated
point, no ledger row, no value."""
from __future__ import annotations

import sys
from typing import Any

import click

from .. import api
from ..options import MatchOptions
from .options import (
    errors_to_lines,
    output_options,
    print_rows,
    ray_options,
    record_option,
    report_problems,
    store_option,
    wait_option,
)
from .vectors import vector_options


@click.command()
@store_option
@click.argument("paths", nargs=-1, metavar="IMAGE...")
@record_option(MatchOptions, "k", "--k", show_default=True, help="Contributors per image.")
@record_option(MatchOptions, "recall", "--recall", help="Candidates recalled before re-ranking [default: 10·k].")
@click.option("--exact", is_flag=True, help="Search exhaustively instead of through an approximate (HNSW) index.")
@click.option("--label", default=None, help="A label shown with every image (not stored).")
@click.option("--label-from", type=click.Choice(["parent"]), default=None, help="Each file's label from its parent folder.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=None,
              help="Where model backends run [default: auto].")
@wait_option
@output_options
@vector_options
@ray_options(MatchOptions)
@errors_to_lines
def match(store: str | None, paths: tuple[str, ...], k: int, recall: int | None, exact: bool, label: str | None,
          label_from: str | None, device: str | None, wait: float, fmt: str, vectors: dict[str, Any] | None,
          ray: str | None, ray_workers: int | None, ray_gpus_per_worker: float | None) -> None:
    """Top-k contributors and their credits for images that are in no set (files, folders,
    .npz/.npy arrays, datasets). Same embedding, quality and search as `gmv value`; nothing
    is stored. `--json` prints one object per image with its `contributors` list, as
    `gmv top --json` does.

    The embedded Qdrant engine lets one process open the vectors, so `match` takes the
    store's writer lock while it runs: with a writer running it fails at once, or waits
    up to --wait SECONDS.

    \b
    Examples:
      gmv match new.png --k 10
      gmv match samples/ --k 50 --recall 1000 --exact --json > matches.json
      gmv match batch.npz --csv --wait 60
      gmv match --vectors gen-emb/ --k 10               # vectors given with the rows (docs/precomputed.md)
      gmv match samples/ --json --ray 10.0.0.5:6379    # embeddings on a Ray cluster
    """
    report = api.match(store, paths, k=k, recall=recall, exact=exact, label=label, label_from=label_from,
                       device=device, wait=wait, vectors=vectors, ray=ray, ray_workers=ray_workers,
                       ray_gpus_per_worker=ray_gpus_per_worker)
    results = report.results
    if fmt == "json":
        print_rows(results, "json")
    elif fmt == "csv":
        print_rows([{"image_source": r["source"], "generated_id": r["generated_id"], "image_label": r["label"],
                     "quality": r["quality"], **c} for r in results for c in r["contributors"]], "csv")
    else:
        for i, r in enumerate(results):
            if i:
                click.echo()
            sets = f"  (valued in {', '.join(r['valued_in'])})" if r["valued_in"] else ""
            click.echo(f"image {r['source']}  id {r['generated_id']}  label {r['label']}  quality {r['quality']:.4g}  "
                       f"k={r['k']} recall={r['recall']}{' exact' if r['exact'] else ''}{sets}")
            print_rows(r["contributors"], "table")
    sys.exit(report_problems(report))
