"""Commands that make and describe a store: init, migrate, status, backends, demo."""
from __future__ import annotations

import sys
from typing import get_args

import click

from .. import api
from ..options import IndexMode, IndexOptions, Quantization, RepairOptions
from .options import (
    EXIT_ERROR,
    errors_to_lines,
    index_lines,
    note,
    output_options,
    parse_params,
    print_rows,
    progress,
    record_option,
    store_option,
    wait_option,
)


@click.command()
@store_option
@click.option("--profile", default=None, help="Backend set: see `gmv backends` (e.g. basic, offline, paper).")
@click.option("--embedder", default=None, help="Recall embedder name (overrides the profile).")
@click.option("--rerank", default=None, help="Re-rank distance name (overrides the profile).")
@click.option("--quality", default=None, help="Quality backend name (overrides the profile).")
@click.option("-p", "--param", "params", multiple=True, metavar="STAGE.NAME=VALUE",
              help="Backend parameter, e.g. -p embedder.size=16 -p rerank.color=rgb (repeatable).")
@click.option("--engine", type=click.Choice(["edge", "local"]), default="edge",
              help="Embedded Qdrant engine: edge (Qdrant's engine in-process, default) or local (qdrant-client local mode).")
@click.option("--qdrant-url", envvar="GMV_QDRANT_URL", default=None,
              help="Use a Qdrant server/cluster instead [env GMV_QDRANT_URL; API key from env GMV_QDRANT_API_KEY only].")
@click.option("--collection-prefix", default="gmv", show_default=True, help="Collection name prefix on a server.")
@record_option(IndexOptions, "mode", "--index", "index_mode", type=click.Choice(get_args(IndexMode)), show_default=True,
               help="Recall search: auto = Qdrant HNSW once a segment holds 50,000 points (~100,000 in a store), hnsw = always, exact = never.")
@record_option(IndexOptions, "hnsw_m", "--hnsw-m", show_default=True, help="HNSW edges per node.")
@record_option(IndexOptions, "hnsw_ef_construct", "--hnsw-ef-construct", show_default=True,
               help="HNSW candidates while building.")
@record_option(IndexOptions, "quantization", "--quantization", type=click.Choice(get_args(Quantization)),
               show_default=True, help="int8 scalar quantization of the recall vector (searched with rescoring, oversampling 3).")
@record_option(IndexOptions, "ef_factor", "--hnsw-ef-factor", "hnsw_ef_factor", show_default=True,
               help="Search ef = this x the hits asked for (N + reserve): lower is faster, recall a little lower "
                    "(docs/scale.md). Fixed for the store's life: stored matches are its own search's.")
@record_option(IndexOptions, "shard_number", "--shards", "shards", help="Server: shards per collection.")
@record_option(IndexOptions, "replication_factor", "--replicas", "replicas", help="Server: replication factor.")
@record_option(IndexOptions, "write_consistency_factor", "--write-consistency", "write_consistency",
               help="Server: write consistency factor.")
@click.option("--on-disk", is_flag=True,
              help="Keep original vectors on disk, memory-mapped and read when a search touches them: the re-rank "
                   "vector always, the recall vector when an int8 copy searches in RAM (bounded memory at millions).")
@errors_to_lines
def init(store: str | None, profile: str | None, embedder: str | None, rerank: str | None, quality: str | None,
         params: tuple[str, ...], engine: str, qdrant_url: str | None, collection_prefix: str, index_mode: str,
         hnsw_m: int, hnsw_ef_construct: int, quantization: str, hnsw_ef_factor: float, shards: int | None,
         replicas: int | None, write_consistency: int | None, on_disk: bool) -> None:
    """Create a store: a DuckDB ledger plus embedded Qdrant (or a Qdrant server).

    \b
    Examples:
      gmv init --store my-store                              # basic profile: pixels + l2 + no quality
      gmv init --store my-store --profile offline            # EfficientNet-Lite0 recall, runs offline
      gmv init --store s -p embedder.size=16 -p rerank.size=28
      gmv init --store big --index hnsw --quantization int8  # millions of images
      gmv init --store big --hnsw-ef-factor 1.5              # faster recall at 1M, top-k overlap 0.999
      GMV_QDRANT_API_KEY=... gmv init --store s --qdrant-url http://localhost:6333 --shards 6 --replicas 2
    """
    index = {"mode": index_mode, "hnsw_m": hnsw_m, "hnsw_ef_construct": hnsw_ef_construct, "quantization": quantization,
             "ef_factor": hnsw_ef_factor,
             "shard_number": shards, "replication_factor": replicas, "write_consistency_factor": write_consistency,
             "on_disk_vectors": on_disk}
    info = api.init_store(store, profile, embedder=embedder, rerank=rerank, quality=quality,
                          params=parse_params(params), engine=engine, qdrant_url=qdrant_url,
                          collection_prefix=collection_prefix, index=index)
    click.echo(f"store ready at {info['store']}")
    click.echo(f"  embedder {info['embedder']} | rerank {info['rerank']} | quality {info['quality']} | "
               f"qdrant {info['qdrant'].split(' ', 1)[0]}{' ' + qdrant_url if qdrant_url else ''} | index {info['index']}")


@click.command()
@store_option
@click.option("--list", "list_", is_flag=True, help="Show applied and pending migrations; changes nothing.")
@output_options
@errors_to_lines
def migrate(store: str | None, list_: bool, fmt: str) -> None:
    """Apply pending ledger migrations (numbered .sql files shipped in `migrations/`).

    \b
    Examples:
      gmv migrate --store my-store
      gmv migrate --list --store my-store
    """
    if list_:
        print_rows(api.migrations(store), fmt)
        return
    rows = api.migrate(store)
    click.echo(f"schema at version {max(r['version'] for r in rows)}; all {len(rows)} migrations applied")


@click.command()
@store_option
@click.option("--no-count", is_flag=True,
              help="Show the point counts the last writer recorded instead of opening the vector collections to "
                   "count them (opening costs what a writer's start does: seconds at 1M points).")
@output_options
@errors_to_lines
def status(store: str | None, no_count: bool, fmt: str) -> None:
    """Counts, backends, locations and pending work of a store. Each vector collection's
    points are counted (when no writer holds the store) and compared with the ledger's rows;
    a disagreement is a warning with its fix (docs/repair.md).

    \b
    Examples:
      gmv status --store my-store
      gmv status --store my-store --no-count
    """
    info = api.status(store, note=note, count=not no_count)
    for w in info["warnings"]:
        click.echo(f"warning: {w}", err=True)
    if fmt in ("json", "csv"):
        print_rows([info], fmt)
        return
    for key, val in info.items():
        if key == "refresh_due":
            added, removed = info["pending_refresh"] - info["pending_removal"], info["pending_removal"]
            click.echo("refresh due: " + (f"yes ({added:,} training images added and {removed:,} removed, not yet "
                                          f"matched; {info['refresh_queue']:,} generated images queued); run "
                                          "`gmv refresh`" if val else "no"))
        elif key in ("pending_refresh", "pending_removal", "refresh_queue", "warnings", "points_counted"):
            continue
        elif key == "unreachable_sources":
            click.echo(f"unreachable sources: {val['missing']} of {val['checked']:,} sampled" if val["checked"]
                       else "unreachable sources: none recorded")
        elif key == "collections":
            for name, c in val.items():
                idx = "unknown until a writer closes" if c["indexed_points"] is None else f"{c['indexed_points']:,}"
                how = "" if name in info["points_counted"] else " (as the last writer recorded them)"
                click.echo(f"collection {name}: {c['points']:,} points{how}, {idx} indexed, index {c['index']}, "
                           f"quantization {c['quantization']}")
        elif key == "sets":
            click.echo("sets:" + ("" if val else " none yet"))
            for s in val:
                click.echo(f"  {s['set_name']}: {s['generated']:,} generated, k={s['k']}, recall={s['recall']}"
                           + (", exact search" if s.get("exact") else "")
                           + (", re-rank: the recall distance" if "falls back" in info["rerank"] else ""))
        else:
            click.echo(f"{key}: {val:,}" if isinstance(val, int) else f"{key}: {val}")


@click.command()
@output_options
@errors_to_lines
def backends(fmt: str) -> None:
    """List the backends (embedder, rerank, quality) with their parameters, where each comes
    from (built-in, or the plugin distribution that adds it: docs/plugins.md), and the profiles.

    \b
    Examples:
      gmv backends
      pip install ./my-gmv-plugin && gmv backends --json   # its backends, origin "plugin my-gmv-plugin 0.1"
    """
    print_rows(api.backends(), fmt)


@click.command()
@click.option("--store", "store", default="gmv-demo", show_default=True, metavar="DIR", help="Store folder to create.")
@click.option("--m", "m", type=click.IntRange(10, 10_000), default=100, show_default=True, help="Generated images.")
@click.option("--profile", default=None,
              help="default (pixels + l2 + PIQE quality; needs torch), basic (pixels + l2, no torch), "
                   "offline (EfficientNet-Lite0 recall + l2 + PIQE; slow: ~15-60 min on 2 CPU cores), "
                   "or any `gmv backends` profile [default: default, or basic without torch].")
@click.option("--quick", is_flag=True, help="Use 5,000 training images (seconds, for a smoke test).")
@errors_to_lines
def demo(store: str, m: int, profile: str | None, quick: bool) -> None:
    """Run the main job end to end on MNIST, offline: ingest 60,000 training images, train a
    class-conditional generator, generate m images, value them, print the results.

    \b
    Examples:
      gmv demo
      gmv demo --store /tmp/gmv-demo --quick
    """
    from ..demo import run_demo

    run_demo(store, m=m, profile=profile, quick=quick, echo=click.echo)


@click.command()
@store_option
@record_option(RepairOptions, "k", "--k",
               help="k of sets whose points do not record it (stores made before payloads carried it).")
@record_option(RepairOptions, "recall", "--recall", help="N of such sets, likewise.")
@click.option("--drop-unreadable", is_flag=True,
              help="Forget images whose recorded source cannot be read, or now holds another image than the "
                   "one stored (checked by sha256), instead of stopping at them.")
@wait_option
@errors_to_lines
def repair(store: str | None, k: int | None, recall: int | None, drop_unreadable: bool, wait: float) -> None:
    """Rebuild a missing or damaged part of a store: the ledger from the vector collections
    (its read snapshot when that matches them, else the points' payloads, then every
    generated image re-matched), or a vector collection's missing points from the recorded
    sources (checked by sha256). Parts are found by counting (points against ledger rows,
    sums against credits); damaged files are kept aside, never deleted. A killed repair is
    finished by the next run (or any writer). Run `gmv verify --full` afterwards; see
    docs/repair.md.

    \b
    Examples:
      gmv repair --store my-store
      gmv repair --store my-store --drop-unreadable
    """
    r = api.repair(store, k=k, recall=recall, drop_unreadable=drop_unreadable, wait=wait)
    if not r.repaired:
        click.echo("nothing to repair: the ledger's tables, rows and sums agree with both vector collections' points")
        return
    for a in r.actions:
        click.echo(a)
    for what in r.lost:
        click.echo(f"warning: not recoverable: {what}", err=True)
    if not r.finished:
        from ..config import default_store_path
        from ..repair import unreadable_line

        click.echo(f"Error: {unreadable_line(r, default_store_path(store))}", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"repaired in {r.seconds:.1f}s; check with `gmv verify --full`")


@click.command("index")
@store_option
@record_option(IndexOptions, "mode", "--index", "index_mode", type=click.Choice(get_args(IndexMode)), default=None,
               help="Change the index mode (kept in store.json).")
@record_option(IndexOptions, "hnsw_m", "--hnsw-m", default=None, help="Change HNSW edges per node (rebuilds).")
@record_option(IndexOptions, "hnsw_ef_construct", "--hnsw-ef-construct", default=None,
               help="Change build candidates (rebuilds).")
@record_option(IndexOptions, "quantization", "--quantization", type=click.Choice(get_args(Quantization)), default=None,
               help="Change quantization (rebuilds).")
@click.option("--on-disk/--in-ram", "on_disk", default=None, help="Change where original vectors live (rewrites them).")
@click.option("--no-refresh", is_flag=True, help="Do not re-check stored matches after a build; `gmv refresh` later.")
@wait_option
@errors_to_lines
def index_cmd(store: str | None, index_mode: str | None, hnsw_m: int | None, hnsw_ef_construct: int | None,
              quantization: str | None, on_disk: bool | None, no_refresh: bool, wait: float) -> None:
    """Build the training collection's HNSW index now (ingest does this at its end unless
    --no-index). A build changes what an approximate search returns, so every stored match is
    then checked again (only those that change are rewritten). A killed build leaves a store
    that answers exactly; the next run finishes it, and the re-check a killed run queued.

    \b
    Examples:
      gmv index --store my-store
      gmv ingest shards/ --no-index --store my-store && gmv index --store my-store
      gmv index --quantization int8 --store my-store     # new settings: rebuilds the segments they change
    """
    settings = {k: v for k, v in {"mode": index_mode, "hnsw_m": hnsw_m, "hnsw_ef_construct": hnsw_ef_construct,
                                  "quantization": quantization, "on_disk_vectors": on_disk}.items() if v is not None}
    r = api.index(store, settings=settings, refresh=not no_refresh, wait=wait, progress=progress())
    for line in index_lines(r, always=True):
        click.echo(line)
