"""Commands that change a store: ingest, value, refresh, forget, forget-set,
forget-generated, verify (which recomputes, and so runs as the writer)."""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, cast

import click

from .. import api
from ..options import IngestOptions, ValueOptions, VerifyOptions
from .options import (
    EXIT_ERROR,
    errors_to_lines,
    index_lines,
    input_options,
    no_refresh_option,
    parse_meta,
    progress,
    ray_options,
    record_option,
    report_problems,
    store_option,
    wait_option,
)
from .vectors import vector_options

if TYPE_CHECKING:
    from gmv_store.ingest.index import IndexReport
    from gmv_store.query.refresh import RefreshReport


@click.command()
@store_option
@click.argument("paths", nargs=-1)
@click.option("--owner", default=None, help="Data owner recorded with each image (for per-owner values).")
@click.option("--owner-column", default=None, metavar="NAME",
              help="Each image's owner from this Parquet column or WebDataset .json key (--owner where it has none).")
@no_refresh_option("earlier")
@click.option("--no-index", is_flag=True, help="Do not bring the HNSW index up to date now; `gmv index` later.")
@record_option(IngestOptions, "workers", "--workers", metavar="N",
               help="Processes decoding images [default: the core count; 0: in-process].")
@input_options(IngestOptions)
@vector_options
@ray_options(IngestOptions)
@errors_to_lines
def ingest(store: str | None, paths: tuple[str, ...], owner: str | None, owner_column: str | None, no_refresh: bool,
           no_index: bool, workers: int | None, meta: tuple[str, ...], label: str | None, label_from: str | None,
           image_column: str | None, label_column: str | None, batch_size: int | None, wait: float,
           device: str | None, vectors: dict[str, Any] | None, ray: str | None, ray_workers: int | None,
           ray_gpus_per_worker: float | None) -> None:
    """Add training images: files, folders (recursive), .npz/.npy arrays, Parquet tables,
    WebDataset .tar shards, glob patterns of these, mnist:train, mnist:test.

    Re-ingesting the same content adds nothing. Bad inputs (files, rows, tar members) are
    reported one per line and skipped; the exit status is then 3.

    \b
    Examples:
      gmv ingest mnist:train --store my-store
      gmv ingest photos/ --label-from parent --owner alice --meta licence=cc-by
      gmv ingest batch.npz        # keys: images (N×H×W[×C], uint8 or float 0..1), labels (optional)
      gmv ingest 'data/train-*.parquet' --image-column image --label-column label
      gmv ingest shards/ --workers 4     # WebDataset: 000123.png + 000123.cls/.json per sample
      gmv ingest 'data/*.parquet' --owner-column author   # one owner per row (WebDataset: a .json key)
      gmv ingest new-batch/ --owner bob --no-refresh && gmv refresh
      gmv ingest --vectors laion-emb/ --id-column url   # clip-retrieval output, no images
      gmv ingest 'shards/*.tar' --ray head-node:6379 --ray-gpus-per-worker 1

    At the end the HNSW index is brought up to date (--no-index defers that to `gmv index`),
    and generated images valued earlier whose top-k the new images change are re-scored
    (values updated by difference); --no-refresh defers that to `gmv refresh`.
    """
    r = api.ingest(store, paths, owner=owner, owner_column=owner_column, label_from=label_from, label=label, meta=parse_meta(meta),
                   refresh=not no_refresh, index=not no_index, wait=wait, device=device, progress=progress(),
                   image_column=image_column, label_column=label_column, workers=workers, vectors=vectors,
                   batch_size=batch_size, ray=ray, ray_workers=ray_workers,
                   ray_gpus_per_worker=ray_gpus_per_worker)
    ids = getattr(r, "without_images", 0)  # ingest --vectors --id-column
    click.echo(f"ingested {r.added:,} new training images ({r.duplicates:,} already stored, {r.skipped:,} skipped"
               f"{f', {r.ignored_files:,} non-image files ignored' if r.ignored_files else ''}"
               f"{f', {ids:,} identified by id without an image' if ids else ''}) in {r.seconds:.1f}s")
    for line in index_lines(cast("IndexReport | None", r.index)):
        click.echo(line)
    refreshed = cast("RefreshReport | None", r.refresh)
    if refreshed is not None and refreshed.total_generated:
        click.echo(refreshed.summary())
    elif no_refresh:
        click.echo("refresh deferred: run `gmv refresh` to re-score earlier generated images")
    sys.exit(report_problems(r))


@click.command()
@store_option
@click.argument("paths", nargs=-1)
@click.option("--set", "set_name", required=True, help="Name of the generated set (e.g. the model or run).")
@record_option(ValueOptions, "k", "--k", show_default=True, help="Contributors credited per generated image.")
@record_option(ValueOptions, "recall", "--recall", help="Candidates recalled before re-ranking [default: 10·k].")
@click.option("--exact", is_flag=True, help="Search exactly, not through the HNSW index (kept for the set, like k and N).")
@input_options(ValueOptions)
@vector_options
@ray_options(ValueOptions)
@errors_to_lines
def value(store: str | None, paths: tuple[str, ...], set_name: str, k: int, recall: int | None, exact: bool,
          meta: tuple[str, ...], label: str | None, label_from: str | None, image_column: str | None,
          label_column: str | None, batch_size: int | None, wait: float, device: str | None,
          vectors: dict[str, Any] | None, ray: str | None, ray_workers: int | None,
          ray_gpus_per_worker: float | None) -> None:
    """Value generated images: recall, re-rank, quality, credit (Eq. 6), update the set's values.

    Accepts the same inputs as `ingest`. A generated image's label is the class or prompt it
    was generated for. An image already valued in the set is not counted twice.

    \b
    Examples:
      gmv value samples/ --set gan-v1 --label-from parent
      gmv value samples.npz --set gan-v1 --k 30 --recall 500
      gmv value samples/ --set gan-v1-exact --exact      # compare with the index's answer
      gmv value samples.parquet --set sd-v2 --image-column image --label-column prompt
      gmv value --vectors gen-emb/ --set sd-v2          # clip-retrieval output of the generated images
      gmv value samples/ --set gan-v1 --ray local       # forwards on a private Ray cluster
    """
    r = api.value(store, paths, set_name, k=k, recall=recall, label_from=label_from, label=label, meta=parse_meta(meta),
                  exact=exact, wait=wait, device=device, progress=progress(), image_column=image_column,
                  label_column=label_column, vectors=vectors, batch_size=batch_size,
                  ray=ray, ray_workers=ray_workers, ray_gpus_per_worker=ray_gpus_per_worker)
    per = f", {1000 * r.seconds / r.valued:.1f} ms/image" if r.valued else ""
    click.echo(f"valued {r.valued:,} generated images into set '{set_name}' ({r.already_valued:,} already in it, "
               f"{r.skipped:,} skipped) in {r.seconds:.1f}s{per}")
    sys.exit(report_problems(r))


@click.command()
@store_option
@wait_option
@errors_to_lines
def refresh(store: str | None, wait: float) -> None:
    """Re-score generated images that training-set changes may have altered (after
    `ingest --no-refresh`, or to finish an interrupted refresh).

    \b
    Example:
      gmv refresh --store my-store
    """
    r = api.refresh(store, wait=wait, progress=progress())
    click.echo(f"{r.summary()} in {r.seconds:.1f}s")


@click.command()
@store_option
@click.argument("ids", nargs=-1)
@click.option("--owner", default=None, help="Forget every training image of this owner.")
@click.option("--source", default=None, metavar="PATTERN", help="Forget training images whose source matches this glob.")
@no_refresh_option("affected")
@wait_option
@errors_to_lines
def forget(store: str | None, ids: tuple[str, ...], owner: str | None, source: str | None, no_refresh: bool,
           wait: float) -> None:
    """Remove training images from Qdrant and the ledger; their credit flows to the next
    contributors. An audit row (ids, count, values they had; no image content) is kept in
    the `forgotten` view.

    \b
    Examples:
      gmv forget 8117a1e5015b8a3a 60937a318b4f9146
      gmv forget --owner alice
      gmv forget --source '/data/scraped/*'
    """
    r = api.forget(store, ids, owner=owner, source=source, refresh=not no_refresh, wait=wait, progress=progress())
    vals = ", ".join(f"{k}: {v:.6g}" for k, v in r.values_before.items()) or "none"
    click.echo(f"forgot {r.removed:,} training images (value they held per set: {vals})")
    refreshed = cast("RefreshReport | None", r.refresh)
    click.echo(refreshed.summary() if refreshed else "refresh deferred: run `gmv refresh`")


@click.command("forget-set")
@store_option
@click.argument("set_name")
@wait_option
@errors_to_lines
def forget_set(store: str | None, set_name: str, wait: float) -> None:
    """Remove a generated set: its generated images, scores and values (audited).

    \b
    Example:
      gmv forget-set gan-v1
    """
    r = api.forget_set(store, set_name, wait=wait)
    click.echo(f"forgot set '{set_name}' ({r.removed:,} generated images)")


@click.command("forget-generated")
@store_option
@click.argument("ids", nargs=-1, required=True)
@click.option("--set", "set_name", required=True, help="The set the generated images belong to.")
@wait_option
@errors_to_lines
def forget_generated(store: str | None, ids: tuple[str, ...], set_name: str, wait: float) -> None:
    """Remove single generated images from a set; the set's values are updated (m shrinks).

    \b
    Example:
      gmv forget-generated 1cd0b151467cf018 --set gan-v1
    """
    r = api.forget_generated(store, set_name, ids, wait=wait)
    click.echo(f"forgot {r.removed:,} generated images from set '{set_name}'")


@click.command()
@store_option
@click.option("--full", is_flag=True, help="Recompute every generated image (default: a sample).")
@record_option(VerifyOptions, "sample", "--sample", show_default=True, help="Generated images to recompute.")
@record_option(VerifyOptions, "seed", "--seed", type=int, show_default=True, help="Seed of the sample.")
@wait_option
@errors_to_lines
def verify(store: str | None, full: bool, sample: int, seed: int, wait: float) -> None:
    """Recompute and compare: Qdrant and ledger ids, running sums, and scores of generated
    images re-matched from their stored vectors. Exits 1 and prints each difference.

    \b
    Examples:
      gmv verify
      gmv verify --full
    """
    r = api.verify(store, full=full, sample=sample, seed=seed, wait=wait)
    for d in r.differences:
        click.echo(f"difference: {d}")
    if not r.ok:
        other = any(" differs from a recompute " not in d and not d.startswith("... ") for d in r.differences)
        what = [f"{r.differing_images:,} of {r.checked_generated:,} generated images recomputed differ from their "
                "stored matches"] if r.differing_images else []
        what += ["ids, sums or pending work differ (above)"] if other else []
        click.echo(f"Error: {'; '.join(what)}; fix: run `gmv repair` for damage, `gmv refresh` for pending work",
                   err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"ok: ids agree, sums agree, {r.checked_generated:,} generated images recompute to their stored scores")
