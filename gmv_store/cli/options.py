"""What every command shares: options written once, output rendering and the edge where
named library errors become one line `Error: ...` (exit 1)."""
from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from ..errors import GmvError
from ..options import default_of, limit_of

if TYPE_CHECKING:
    from gmv_store.ingest.index import IndexReport
    from gmv_store.query.refresh import RefreshReport

F = TypeVar("F", bound=Callable[..., Any])

EXIT_ERROR, EXIT_SKIPPED, EXIT_INTERRUPTED = 1, 3, 130
DEBUG_ENV = "GMV_DEBUG"


def record_option(record: type, name: str, *decls: str, **attrs: Any) -> Callable[[F], F]:
    """A click option for option `name` of a record of gmv_store/options.py: its default (unless
    given) and its limit (click.IntRange / FloatRange) come from the record."""
    limit = limit_of(record, name)
    if limit is not None and limit.whole:
        attrs["type"] = click.IntRange(_whole(limit.lo), _whole(limit.hi))
    elif limit is not None:
        attrs["type"] = click.FloatRange(limit.lo, limit.hi)
    attrs.setdefault("default", default_of(record, name))  # `gmv index`: None, "leave as it is"
    return click.option(*decls, **attrs)


def _whole(bound: float | None) -> int | None:
    return None if bound is None else int(bound)


def store_option(f: F) -> F:
    return click.option("--store", "store", envvar="GMV_STORE", default=None, metavar="DIR",
                        help="Store folder [env GMV_STORE; default ./gmv-store-data].")(f)


def wait_option(f: F) -> F:
    return click.option("--wait", type=float, default=0.0, metavar="SECONDS",
                        help="Wait this long for another writer to finish instead of failing.")(f)


def output_options(f: F) -> F:
    """--json / --csv / --table, written once for every command that prints rows."""
    f = click.option("--csv", "fmt", flag_value="csv", help="Output CSV.")(f)
    f = click.option("--json", "fmt", flag_value="json", help="Output one JSON array of objects.")(f)
    f = click.option("--table", "fmt", flag_value="table", default=True, help="Output a readable table (default).")(f)
    return f


def no_refresh_option(which: str) -> Callable[[F], F]:
    """--no-refresh of `ingest` and `forget` (the option `refresh=False` of the API)."""
    return click.option("--no-refresh", is_flag=True,
                        help=f"Do not re-score {which} generated images now; `gmv refresh` later.")


def input_options(record: type) -> Callable[[F], F]:
    """How images are read and where models run: `ingest` and `value` (their `record`)."""
    return functools.partial(_input_options, record)


def _input_options(record: type, f: F) -> F:
    f = click.option("--meta", multiple=True, metavar="KEY=VALUE", help="Metadata stored with each image (repeatable).")(f)
    f = click.option("--label", default=None, help="One label for every image (class or prompt).")(f)
    f = click.option("--label-from", type=click.Choice(["parent"]), default=None,
                     help="Take each file's label from its parent folder name.")(f)
    f = click.option("--label-column", default=None, metavar="NAME",
                     help="Parquet: the label column [default: label, when present]; WebDataset: the .json key.")(f)
    f = click.option("--image-column", default=None, metavar="NAME",
                     help="Parquet: the image column (bytes or {bytes, path}) [default: the first such column]; "
                          "WebDataset: the image extension (png, jpg, ...).")(f)
    f = record_option(record, "batch_size", "--batch-size", help="Images per batch.")(f)
    f = wait_option(f)
    f = click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=None,
                     help="Where model backends run [default: auto = cuda, else mps, else cpu].")(f)
    return f


def ray_options(record: type) -> Callable[[F], F]:
    """--ray ADDRESS and its sizes: `ingest`, `value`, `match` (their `record`; docs/scale-out.md)."""
    return functools.partial(_ray_options, record)


def _ray_options(record: type, f: F) -> F:
    f = record_option(record, "ray_gpus_per_worker", "--ray-gpus-per-worker", "ray_gpus_per_worker", metavar="G",
                      help="GPUs per forward actor [default: 1 where the cluster has GPUs, else 0].")(f)
    f = record_option(record, "ray_workers", "--ray-workers", "ray_workers", metavar="N",
                      help="Forward actors on the cluster [default: one per GPU, else one per CPU].")(f)
    f = click.option("--ray", "ray", envvar="GMV_RAY_ADDRESS", default=None, metavar="ADDRESS",
                     help="Decode, hash and run the models on a Ray cluster: host:port (as `ray start --head` "
                          "prints it), auto, or local (a private one for this command) [env GMV_RAY_ADDRESS]; "
                          "this process still writes. Needs gmv-store[ray].")(f)
    return f


def _one_line(e: BaseException) -> str:
    text = " ".join((e.for_cli() if isinstance(e, GmvError) else str(e)).split()) or type(e).__name__
    return text[:400]


def errors_to_lines(f: F) -> F:
    """Named errors and anticipated OS failures become one line; anything else too, with the
    way to see its traceback (GMV_DEBUG=1 lets every exception through)."""
    @functools.wraps(f)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return f(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except GmvError as e:
            if os.environ.get(DEBUG_ENV) == "1":
                raise
            click.echo(f"Error: {_one_line(e)}", err=True)
            sys.exit(EXIT_ERROR)
        except BrokenPipeError:
            # the reader of our output went away (`gmv status | head`): end quietly, as other
            # tools do; stdout goes to /dev/null so that the exit's flush cannot fail again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(EXIT_ERROR)
        except KeyboardInterrupt:
            click.echo("Interrupted: finished batches are kept; run the same command again to complete it.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except OSError as e:
            if os.environ.get(DEBUG_ENV) == "1":
                raise
            where = f"{e.filename}: " if getattr(e, "filename", None) else ""
            click.echo(f"Error: {where}{e.strerror or _one_line(e)}; fix: check the path, its permissions and free space",
                       err=True)
            sys.exit(EXIT_ERROR)
        except Exception as e:  # noqa: BLE001 - the edge: no traceback reaches the user
            if os.environ.get(DEBUG_ENV) == "1":
                raise
            click.echo(f"Error: unexpected {type(e).__name__}: {_one_line(e)}; run again with {DEBUG_ENV}=1 for the "
                       "traceback and report it", err=True)
            sys.exit(EXIT_ERROR)

    return wrapper  # type: ignore[return-value]


def progress() -> bool:
    return sys.stderr.isatty()


def note(msg: str) -> None:
    click.echo(msg, err=True)


def report_problems(report: Any) -> int:
    """Notes and skipped inputs of a report on stderr; the exit status (3 when some were skipped)."""
    for n in getattr(report, "notes", ()):
        click.echo(f"note: {n}", err=True)
    for p in report.problems:
        click.echo(f"skipped: {p.where}: {p.reason}", err=True)
    return EXIT_SKIPPED if report.problems else 0


def print_rows(rows: list[dict[str, Any]], fmt: str) -> None:
    from ..output import render

    click.echo(render(rows, fmt))


def parse_params(pairs: Iterable[str]) -> dict[str, dict[str, Any]]:
    """-p STAGE.NAME=VALUE pairs -> {stage: {name: value}}; values parse as JSON when they can."""
    out: dict[str, dict[str, Any]] = {"embedder": {}, "rerank": {}, "quality": {}}
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


def parse_meta(pairs: Iterable[str]) -> dict[str, str]:
    meta = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--meta")
        meta[key] = value
    return meta


def index_lines(r: IndexReport | None, always: bool = False) -> list[str]:
    """What an index step did, for ingest and `gmv index`."""
    if r is None or r.mode == "exact":
        return ["index: none (this store searches exactly; `gmv init --index hnsw` makes one that indexes)"] if always else []
    refreshed = cast("RefreshReport | None", r.refresh)
    if not r.changed:
        lines = [f"index: up to date ({r.indexed_points:,} of {r.points:,} points indexed; segments below the "
                 "threshold are searched exactly)"] if always else []
        return lines + ([refreshed.summary()] if refreshed is not None else [])
    lines = [f"index: built in {r.seconds:.1f}s ({r.indexed_points:,} of {r.points:,} points indexed)"]
    if r.rechecked:
        lines.append(f"index: {r.rechecked:,} stored matches queued to be checked against the new index")
    if refreshed is not None:
        lines.append(refreshed.summary())
    return lines
