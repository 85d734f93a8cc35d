"""`gmv relocate OLD NEW`: training or generated data outside the store moved."""
from __future__ import annotations

import click

from .. import api
from .options import errors_to_lines, store_option, wait_option


@click.command()
@store_option
@click.argument("old")
@click.argument("new")
@click.option("--dry-run", is_flag=True, help="Only count the sources that would be rewritten.")
@wait_option
@errors_to_lines
def relocate(store: str | None, old: str, new: str, dry_run: bool, wait: float) -> None:
    """Data the store points to moved from folder OLD to folder NEW: rewrite the recorded
    sources (ledger and vector payloads, journaled like any write).

    Images inside the store's own folder are recorded relative to it, so moving or copying
    the whole store needs nothing. `gmv status` says when sources cannot be read and which
    relocation would fix them.

    \b
    Examples:
      gmv relocate /mnt/old-disk/shards /data/shards --store my-store
      gmv relocate /home/ann/gmv-demo /srv/gmv-demo --store /srv/gmv-demo --dry-run
    """
    r = api.relocate(store, old, new, dry_run=dry_run, wait=wait)
    verb = "would rewrite" if dry_run else "rewrote"
    click.echo(f"gmv relocate: {verb} {r.rewritten.get('training', 0):,} training and "
               f"{r.rewritten.get('generated', 0):,} generated sources from {r.old} to {r.new}"
               + (f" ({r.made_relative:,} now recorded relative to the store)" if r.made_relative else ""))
