"""`gmv`: a thin click layer. Each command opens the store, calls one library function and
prints the result; named library errors become one line `Error: ...` and exit status 1.
Exit status 3 means the command finished but skipped some inputs (each reported on stderr)."""
from __future__ import annotations

import functools
import json
import sys

import click

from .errors import GmvError

EXIT_ERROR, EXIT_SKIPPED = 1, 3


def store_option(f):
    return click.option("--store", "store", envvar="GMV_STORE", default=None, metavar="DIR",
                        help="Store folder [env GMV_STORE; default ./gmv-store-data].")(f)


def output_options(f):
    """--json / --csv / --table, written once for every command that prints rows."""
    f = click.option("--csv", "fmt", flag_value="csv", help="Output CSV.")(f)
    f = click.option("--json", "fmt", flag_value="json", help="Output one JSON array of objects.")(f)
    f = click.option("--table", "fmt", flag_value="table", default=True, help="Output a readable table (default).")(f)
    return f


def input_options(f):
    f = click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata stored with each image (repeatable).")(f)
    f = click.option("--label", default=None, help="One label for every image (class or prompt).")(f)
    f = click.option("--label-from", type=click.Choice(["parent"]), default=None,
                     help="Take each file's label from its parent folder name.")(f)
    f = click.option("--batch-size", type=click.IntRange(1, 100_000), default=None, help="Images per batch.")(f)
    f = click.option("--wait", type=float, default=0.0, metavar="SECONDS",
                     help="Wait this long for another writer to finish instead of failing.")(f)
    f = click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=None,
                     help="Where model backends run [default: auto = cuda, else mps, else cpu].")(f)
    return f


def errors_to_lines(f):
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except GmvError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("Interrupted: finished batches are kept; run the same command again to complete it.", err=True)
            sys.exit(130)

    return wrapper


def _progress() -> bool:
    return sys.stderr.isatty()


def _report_problems(report) -> int:
    for p in report.problems:
        click.echo(f"skipped: {p.where}: {p.reason}", err=True)
    return EXIT_SKIPPED if report.problems else 0


def _print_rows(rows, fmt):
    from .output import render

    click.echo(render(rows, fmt))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="gmv-store")
def cli():
    """gmv-store: which training images made this generated image, and what is each worth?

    \b
    Quick start:
      gmv demo                                   # MNIST end to end, offline
      gmv init --store my-store --profile basic
      gmv ingest train/ --label-from parent --owner alice --store my-store
      gmv value generated/ --set run1 --label-from parent --store my-store
      gmv values --set run1 --store my-store
    """


# ----------------------------------------------------------------------------- init / migrate


def _parse_params(pairs) -> dict[str, dict]:
    out: dict[str, dict] = {"embedder": {}, "rerank": {}, "quality": {}}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        stage, dot, name = key.partition(".")
        if not sep or not dot or stage not in out:
            raise click.BadParameter(f"{pair!r}: expected STAGE.NAME=VALUE with STAGE one of embedder, rerank, quality",
                                     param_hint="--param")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out[stage][name] = value
    return out


@cli.command()
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
@errors_to_lines
def init(store, profile, embedder, rerank, quality, params, engine, qdrant_url, collection_prefix):
    """Create a store: a DuckDB ledger plus embedded Qdrant (or a Qdrant server).

    \b
    Examples:
      gmv init --store my-store                              # basic profile: pixels + l2 + no quality
      gmv init --store my-store --profile offline            # EfficientNet-Lite0 recall, runs offline
      gmv init --store s -p embedder.size=16 -p rerank.size=28
      GMV_QDRANT_API_KEY=... gmv init --store s --qdrant-url http://localhost:6333
    """
    from .backends.profiles import get_profile
    from .store import Store

    prof = get_profile(profile or "basic")
    extra = _parse_params(params)
    chosen = {}
    for stage, override in (("embedder", embedder), ("rerank", rerank), ("quality", quality)):
        base = prof[stage]
        name = override or base["name"]
        p = dict(base.get("params", {})) if name == base["name"] else {}
        p.update(extra[stage])
        chosen[stage] = (name, p)
    s = Store.init(store, embedder=chosen["embedder"], rerank=chosen["rerank"], quality=chosen["quality"],
                   engine=engine, qdrant_url=qdrant_url, collection_prefix=collection_prefix)
    try:
        from .config import describe_backend

        c = s.config
        click.echo(f"store ready at {s.root}")
        click.echo(f"  embedder {describe_backend(c.embedder)} | rerank {describe_backend(c.rerank)} | "
                   f"quality {describe_backend(c.quality)} | qdrant {c.engine}{' ' + c.qdrant_url if c.qdrant_url else ''}")
    finally:
        s.close()


@cli.command()
@store_option
@click.option("--list", "list_", is_flag=True, help="Show applied and pending migrations; changes nothing.")
@output_options
@errors_to_lines
def migrate(store, list_, fmt):
    """Apply pending ledger migrations (numbered .sql files shipped in `migrations/`).

    \b
    Examples:
      gmv migrate --store my-store
      gmv migrate --list --store my-store
    """
    from .migrate import migration_status
    from .store import Store, open_ledger_readonly

    if list_:
        con = open_ledger_readonly(store)
        try:
            _print_rows(migration_status(con), fmt)
        finally:
            con.close()
        return
    with Store.open(store) as s:  # opening applies pending migrations
        rows = migration_status(s.ledger)
    click.echo(f"schema at version {max(r['version'] for r in rows)}; all {len(rows)} migrations applied")


# ----------------------------------------------------------------------------- ingest / value


@cli.command()
@store_option
@click.argument("paths", nargs=-1, required=True)
@click.option("--owner", default=None, help="Data owner recorded with each image (for per-owner values).")
@click.option("--no-refresh", is_flag=True, help="Do not re-score earlier generated images now; `gmv refresh` later.")
@input_options
@errors_to_lines
def ingest(store, paths, owner, no_refresh, meta, label, label_from, batch_size, wait, device):
    """Add training images: files, folders (recursive), .npz/.npy arrays, mnist:train, mnist:test.

    Re-ingesting the same content adds nothing. Bad inputs are reported one per line and
    skipped; the exit status is then 3.

    \b
    Examples:
      gmv ingest mnist:train --store my-store
      gmv ingest photos/ --label-from parent --owner alice --meta licence=cc-by
      gmv ingest batch.npz        # keys: images (N×H×W[×C], uint8 or float 0..1), labels (optional)
      gmv ingest new-batch/ --owner bob --no-refresh && gmv refresh

    Generated images valued earlier whose top-k the new images change are re-scored at the
    end (values updated by difference); --no-refresh defers that to `gmv refresh`.
    """
    from ingest.pipeline import ingest as run, parse_meta

    from .store import Store

    with Store.open(store, wait=wait, device=device) as s:
        r = run(s, list(paths), owner=owner, label_from=label_from, label=label, meta=parse_meta(meta),
                progress=_progress(), refresh=not no_refresh, **({"batch_size": batch_size} if batch_size else {}))
    click.echo(f"ingested {r.added:,} new training images ({r.duplicates:,} already stored, {r.skipped:,} skipped"
               f"{f', {r.ignored_files:,} non-image files ignored' if r.ignored_files else ''}) in {r.seconds:.1f}s")
    if r.refresh is not None and r.refresh.total_generated:
        click.echo(r.refresh.summary())
    elif no_refresh:
        click.echo("refresh deferred: run `gmv refresh` to re-score earlier generated images")
    sys.exit(_report_problems(r))


@cli.command()
@store_option
@click.argument("paths", nargs=-1, required=True)
@click.option("--set", "set_name", required=True, help="Name of the generated set (e.g. the model or run).")
@click.option("--k", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Contributors credited per generated image.")
@click.option("--recall", type=click.IntRange(1, 100_000), default=None, help="Candidates recalled before re-ranking [default: 10·k].")
@input_options
@errors_to_lines
def value(store, paths, set_name, k, recall, meta, label, label_from, batch_size, wait, device):
    """Value generated images: recall, re-rank, quality, credit (Eq. 6), update the set's values.

    Accepts the same inputs as `ingest`. A generated image's label is the class or prompt it
    was generated for. An image already valued in the set is not counted twice.

    \b
    Examples:
      gmv value samples/ --set gan-v1 --label-from parent
      gmv value samples.npz --set gan-v1 --k 30 --recall 500
    """
    from ingest.pipeline import parse_meta
    from query.pipeline import value as run

    from .store import Store

    with Store.open(store, wait=wait, device=device) as s:
        r = run(s, list(paths), set_name, k=k, recall=recall, label_from=label_from, label=label,
                meta=parse_meta(meta), progress=_progress(), **({"batch_size": batch_size} if batch_size else {}))
    per = f", {1000 * r.seconds / r.valued:.1f} ms/image" if r.valued else ""
    click.echo(f"valued {r.valued:,} generated images into set '{set_name}' ({r.already_valued:,} already in it, "
               f"{r.skipped:,} skipped) in {r.seconds:.1f}s{per}")
    sys.exit(_report_problems(r))


# ----------------------------------------------------------------------------- lookups


def _reader(store, config=None):
    from .store import open_ledger_readonly

    return open_ledger_readonly(store, config=config, on_snapshot=lambda msg: click.echo(msg, err=True))


@cli.command()
@store_option
@click.argument("refs", nargs=-1, required=True, metavar="IMAGE_OR_ID...")
@click.option("--set", "set_name", default=None, help="Only this generated set.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Show only the first N contributors.")
@output_options
@errors_to_lines
def top(store, refs, set_name, limit, fmt):
    """Top-k contributors of generated images (by path or generated id).

    \b
    Examples:
      gmv top gen/7/0003.png
      gmv top 1cd0b151467cf018 --set gan-v1 --limit 10 --json
    """
    from query.lookup import top as run

    con = _reader(store)
    try:
        gens = run(con, list(refs), set_name=set_name, limit=limit)
    finally:
        con.close()
    if fmt == "json":
        _print_rows(gens, "json")
    elif fmt == "csv":
        flat = [{"set_name": g["set_name"], "generated_id": g["generated_id"], "generated_label": g["label"], **c}
                for g in gens for c in g["contributors"]]
        _print_rows(flat, "csv")
    else:
        for i, g in enumerate(gens):
            if i:
                click.echo()
            click.echo(f"generated {g['generated_id']}  set {g['set_name']}  label {g['label']}  "
                       f"quality {g['quality']:.4g}  source {g['source']}")
            _print_rows(g["contributors"], "table")


@cli.command()
@store_option
@click.argument("contributor_id")
@click.option("--limit", type=click.IntRange(1), default=10, show_default=True, help="Generated images to list.")
@output_options
@errors_to_lines
def contributor(store, contributor_id, limit, fmt):
    """A training image's value in each set, its rank, and what it contributed most to.

    \b
    Example:
      gmv contributor 8117a1e5015b8a3a
    """
    from query.lookup import contributor as run

    con = _reader(store)
    try:
        info = run(con, contributor_id, limit=limit)
    finally:
        con.close()
    if fmt == "json":
        _print_rows([info], "json")
        return
    if fmt == "csv":
        _print_rows([{"contributor_id": info["contributor_id"], **s} for s in info["sets"]], "csv")
        return
    click.echo(f"contributor {info['contributor_id']}  label {info['label']}  owner {info['owner']}  source {info['source']}")
    click.echo(f"sha256 {info['sha256']}  ingested {info['ingested_at']}")
    click.echo("\nvalue per set (rank among credited contributors):")
    _print_rows(info["sets"], "table")
    click.echo(f"\ngenerated images it contributed most to:")
    _print_rows(info["top_generated"], "table")


@cli.command()
@store_option
@click.option("--set", "set_name", required=True, help="Generated set.")
@click.option("--by", type=click.Choice(["owner", "label"]), default=None, help="Roll values up per owner or label.")
@click.option("--limit", type=click.IntRange(0), default=20, show_default=True, help="Rows to show (0 = all).")
@output_options
@errors_to_lines
def values(store, set_name, by, limit, fmt):
    """Leaderboard of a set: value φ = value_sum / m per contributor (or per owner).

    \b
    Examples:
      gmv values --set gan-v1
      gmv values --set gan-v1 --by owner --csv > owners.csv
    """
    from query.lookup import values as run

    con = _reader(store)
    try:
        rows = run(con, set_name, by=by, limit=limit or None)
    finally:
        con.close()
    _print_rows(rows, fmt)


@cli.command()
@store_option
@output_options
@errors_to_lines
def status(store, fmt):
    """Counts, backends, locations and pending work of a store.

    \b
    Example:
      gmv status --store my-store
    """
    from query.lookup import status as run

    from .config import default_store_path, describe_backend, read_config
    from .lock import current_holder

    root = default_store_path(store)
    cfg = read_config(root)
    con = _reader(store)
    try:
        st = run(con)
    finally:
        con.close()
    info = {
        "store": str(root.absolute()),
        "qdrant": f"{cfg.engine} " + (cfg.qdrant_url or str((root / ('qdrant-edge' if cfg.engine == 'edge' else 'qdrant-local')).absolute())),
        "ledger": str((root / "ledger.duckdb").absolute()),
        "embedder": describe_backend(cfg.embedder), "rerank": describe_backend(cfg.rerank),
        "quality": describe_backend(cfg.quality), "writer": current_holder(root) or "none",
        **st,
    }
    info["refresh_due"] = bool(st["pending_refresh"] or st["refresh_queue"])
    if fmt in ("json", "csv"):
        _print_rows([info], fmt)
        return
    for key, val in info.items():
        if key == "refresh_due":
            click.echo("refresh due: " + (f"yes ({st['pending_refresh']:,} new training images not yet matched, "
                                          f"{st['refresh_queue']:,} generated images queued); run `gmv refresh`"
                                          if val else "no"))
            continue
        if key in ("pending_refresh", "refresh_queue"):
            continue
        if key == "sets":
            click.echo("sets:" + ("" if val else " none yet"))
            for s in val:
                click.echo(f"  {s['set_name']}: {s['generated']:,} generated, k={s['k']}, recall={s['recall']}")
        else:
            click.echo(f"{key}: {val:,}" if isinstance(val, int) else f"{key}: {val}")


@cli.command()
@store_option
@click.argument("sql", required=False)
@click.option("-p", "--param", "params", multiple=True, help="Positional parameter for ? placeholders (repeatable).")
@click.option("--timeout", type=click.FloatRange(min=0), default=60, show_default=True, metavar="SECONDS",
              help="Stop the query after this long (0 = no limit).")
@click.option("--memory-limit", default=None, metavar="SIZE",
              help="Memory the query may use: a DuckDB size (2GB, 512MB) or a share of RAM (10%) [default: 25%].")
@output_options
@errors_to_lines
def sql(store, sql, params, timeout, memory_limit, fmt):
    """Read-only SQL over the documented views (SQL as argument or on stdin).

    Views: contributors, generated, scores, sets, contributor_values, owner_values.
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
    from query.sql import run_sql

    if sql is None:
        sql = sys.stdin.read()
    cols, rows = run_sql(store, sql, list(params), timeout=timeout, memory_limit=memory_limit,
                         on_snapshot=lambda msg: click.echo(msg, err=True))
    _print_rows([dict(zip(cols, r)) for r in rows], fmt)


# ----------------------------------------------------------------------------- incremental upkeep


@cli.command()
@store_option
@click.option("--wait", type=float, default=0.0, metavar="SECONDS", help="Wait for another writer to finish.")
@errors_to_lines
def refresh(store, wait):
    """Re-score generated images that training-set changes may have altered (after
    `ingest --no-refresh`, or to finish an interrupted refresh).

    \b
    Example:
      gmv refresh --store my-store
    """
    from query.refresh import refresh as run

    from .store import Store

    with Store.open(store, wait=wait) as s:
        r = run(s, progress=_progress())
    click.echo(f"{r.summary()} in {r.seconds:.1f}s")


@cli.command()
@store_option
@click.argument("ids", nargs=-1)
@click.option("--owner", default=None, help="Forget every training image of this owner.")
@click.option("--source", default=None, metavar="PATTERN", help="Forget training images whose source matches this glob.")
@click.option("--no-refresh", is_flag=True, help="Do not re-score affected generated images now; `gmv refresh` later.")
@click.option("--wait", type=float, default=0.0, metavar="SECONDS", help="Wait for another writer to finish.")
@errors_to_lines
def forget(store, ids, owner, source, no_refresh, wait):
    """Remove training images from Qdrant and the ledger; their credit flows to the next
    contributors. An audit row (ids, count, values they had; no image content) is kept in
    the `forgotten` view.

    \b
    Examples:
      gmv forget 8117a1e5015b8a3a 60937a318b4f9146
      gmv forget --owner alice
      gmv forget --source '/data/scraped/*'
    """
    from query.forget import forget_training

    from .store import Store

    with Store.open(store, wait=wait) as s:
        r = forget_training(s, list(ids), owner=owner, source=source, refresh=not no_refresh, progress=_progress())
    vals = ", ".join(f"{k}: {v:.6g}" for k, v in r.values_before.items()) or "none"
    click.echo(f"forgot {r.removed:,} training images (value they held per set: {vals})")
    click.echo(r.refresh.summary() if r.refresh else "refresh deferred: run `gmv refresh`")


@cli.command("forget-set")
@store_option
@click.argument("set_name")
@click.option("--wait", type=float, default=0.0, metavar="SECONDS", help="Wait for another writer to finish.")
@errors_to_lines
def forget_set_cmd(store, set_name, wait):
    """Remove a generated set: its generated images, scores and values (audited).

    \b
    Example:
      gmv forget-set gan-v1
    """
    from query.forget import forget_set

    from .store import Store

    with Store.open(store, wait=wait) as s:
        r = forget_set(s, set_name)
    click.echo(f"forgot set '{set_name}' ({r.removed:,} generated images)")


@cli.command("forget-generated")
@store_option
@click.argument("ids", nargs=-1, required=True)
@click.option("--set", "set_name", required=True, help="The set the generated images belong to.")
@click.option("--wait", type=float, default=0.0, metavar="SECONDS", help="Wait for another writer to finish.")
@errors_to_lines
def forget_generated_cmd(store, ids, set_name, wait):
    """Remove single generated images from a set; the set's values are updated (m shrinks).

    \b
    Example:
      gmv forget-generated 1cd0b151467cf018 --set gan-v1
    """
    from query.forget import forget_generated

    from .store import Store

    with Store.open(store, wait=wait) as s:
        r = forget_generated(s, set_name, list(ids))
    click.echo(f"forgot {r.removed:,} generated images from set '{set_name}'")


@cli.command()
@store_option
@click.option("--full", is_flag=True, help="Recompute every generated image (default: a sample).")
@click.option("--sample", type=click.IntRange(1), default=200, show_default=True, help="Generated images to recompute.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample.")
@click.option("--wait", type=float, default=0.0, metavar="SECONDS", help="Wait for another writer to finish.")
@errors_to_lines
def verify(store, full, sample, seed, wait):
    """Recompute and compare: Qdrant and ledger ids, running sums, and scores of generated
    images re-matched from their stored vectors. Exits 1 and prints each difference.

    \b
    Examples:
      gmv verify
      gmv verify --full
    """
    from query.verify import verify as run

    from .store import Store

    with Store.open(store, wait=wait) as s:
        r = run(s, sample=None if full else sample, seed=seed)
    for d in r.differences:
        click.echo(f"difference: {d}")
    if not r.ok:
        click.echo(f"Error: {len(r.differences)} difference(s) found ({r.checked_generated:,} generated images recomputed)", err=True)
        sys.exit(EXIT_ERROR)
    click.echo(f"ok: ids agree, sums agree, {r.checked_generated:,} generated images recompute to their stored scores")


@cli.command()
@output_options
@errors_to_lines
def backends(fmt):
    """List the backends (embedder, rerank, quality) with their parameters, and the profiles.

    \b
    Example:
      gmv backends
    """
    from .backends import registry
    from .backends.profiles import PROFILES

    rows = []
    for kind in registry.KINDS:
        for name, cls in registry.available(kind).items():
            rows.append({"kind": kind, "name": name, "params": cls.defaults, "description": cls.description})
    for name, prof in PROFILES.items():
        desc = " + ".join(f"{prof[k]['name']}" for k in ("embedder", "rerank", "quality"))
        rows.append({"kind": "profile", "name": name, "params": {}, "description": f"{desc}: {prof.get('description', '')}"})
    _print_rows(rows, fmt)


@cli.command()
@click.option("--store", "store", default="gmv-demo", show_default=True, metavar="DIR", help="Store folder to create.")
@click.option("--m", "m", type=click.IntRange(10, 10_000), default=100, show_default=True, help="Generated images.")
@click.option("--profile", default=None,
              help="default (pixels + l2 + PIQE quality; needs torch), basic (pixels + l2, no torch), "
                   "offline (EfficientNet-Lite0 recall + l2 + PIQE; slow: ~15-60 min on 2 CPU cores), "
                   "or any `gmv backends` profile [default: default, or basic without torch].")
@click.option("--quick", is_flag=True, help="Use 5,000 training images (seconds, for a smoke test).")
@errors_to_lines
def demo(store, m, profile, quick):
    """Run the main job end to end on MNIST, offline: ingest 60,000 training images, train a
    class-conditional generator, generate m images, value them, print the results.

    \b
    Examples:
      gmv demo
      gmv demo --store /tmp/gmv-demo --quick
    """
    from .demo import run_demo

    run_demo(store, m=m, profile=profile, quick=quick, echo=click.echo)


from .eval.cli import eval_group; cli.add_command(eval_group, "eval")


def main():
    cli()
