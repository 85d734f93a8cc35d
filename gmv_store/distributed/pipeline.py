"""The driver's side of `--ray`: discover the inputs here (cheap: names, row and member
references), run decode -> hash -> forwards as Ray Data stages on the cluster, and stream the
results back in input order to the caller, the one writer.

The batches it yields are those of `sources.read_batches` — the same images, problems and
order — with `Decoded.vectors` (and `.quality` when asked) filled by the workers, so the
writer's dedupe, journal and ledger writes are today's, unchanged. Ray Data keeps the input
order (`preserve_order`), and each row's sequence number is checked on arrival: the order in
which workers finish never reaches the writer.
"""
from __future__ import annotations

import contextlib
import pickle
import re
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from ..config import BackendSpec
from ..sources.decode import batched
from ..sources.discover import discover
from ..sources.items import Decoded, Discovery, InputOptions, InputReport, Item, Problem
from ..sources.webdataset import with_bytes
from .cluster import Cluster, connected, require_ray
from .settings import ClusterError, RaySettings
from .stages import PROTOCOL, decode_rows, forwards_for


def ray_batches(paths: list[str], options: InputOptions | None, batch_size: int, report: InputReport, settings: RaySettings,
                specs: dict[str, BackendSpec], with_quality: bool = False,
                device: str | None = None) -> Iterator[list[Decoded]]:
    """`read_batches` on a Ray cluster, with the forwards done there (see the module doc)."""
    found = Discovery()
    n_before = len(report.problems)
    # workers on other machines may not see the shards: tar images travel as bytes, as Parquet rows do
    items = map(with_bytes, discover(paths, options, found))
    try:
        with connected(settings) as cluster:
            decoded = _decoded(items, report.problems, batch_size, settings, cluster,
                               {k: v.model_dump() for k, v in specs.items()}, with_quality, device)
            yield from batched(decoded, batch_size)
    finally:
        report.problems[n_before:n_before] = found.problems
        report.ignored_files += found.ignored


def worker_layout(settings: RaySettings, cluster: Cluster) -> tuple[int, float]:
    """(forward actors, GPUs each): one actor per GPU where the cluster has GPUs, else one
    per CPU; --ray-workers / --ray-gpus-per-worker override."""
    gpus = settings.gpus_per_worker if settings.gpus_per_worker is not None else (1.0 if cluster.gpus else 0.0)
    if gpus > cluster.gpus:
        raise ClusterError(f"--ray-gpus-per-worker {gpus:g}: the cluster has {cluster.gpus:g} GPUs; fix: ask for "
                           "fewer, or 0 to run the forwards on CPUs")
    default = int(cluster.gpus // gpus) if gpus else int(cluster.cpus)
    workers = settings.workers or max(1, default)
    return workers, gpus


def _decoded(items: Iterator[Item], problems: list[Problem], batch_size: int, settings: RaySettings,
             cluster: Cluster, specs: dict[str, dict[str, Any]], with_quality: bool, device: str | None
             ) -> Iterator[Decoded]:
    ray = require_ray()
    workers, gpus = worker_layout(settings, cluster)
    seq = 0  # rows are numbered batches: each comes back as the one due, or the run stops
    for window in _windows(items, batch_size, settings):  # one Dataset per window: bounded driver memory
        start = seq
        with _in_order(ray), _named_failures(settings):  # a Dataset keeps the context it was made in
            rows = [{"seq": seq + i, "items": blob} for i, blob in enumerate(window)]
            ds = ray.data.from_items(rows, override_num_blocks=len(rows))
            ds = ds.map_batches(decode_rows, batch_size=1, batch_format="numpy", num_cpus=1)
            pool = ray.data.ActorPoolStrategy(size=min(workers, len(window)))
            ds = ds.map_batches(forwards_for(specs, with_quality, device), batch_size=1, batch_format="numpy",
                                compute=pool, num_cpus=0 if gpus else 1, num_gpus=gpus or None)
            for out in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=1):
                for s, blob in zip(out["seq"], out["records"]):
                    if int(s) != seq:
                        raise ClusterError(f"Ray returned batch {int(s)} where {seq} was due; fix: report this "
                                           "(nothing of the out-of-order batch was written)")
                    seq += 1
                    for record in pickle.loads(blob):
                        if isinstance(record, Problem):
                            problems.append(record)
                        else:
                            yield record
        if seq - start != len(window):
            raise ClusterError(f"Ray returned {seq - start:,} of the {len(window):,} batches sent; fix: run the "
                               "command again (it resumes)")


def _windows(items: Iterator[Item], batch_size: int, settings: RaySettings) -> Iterator[list[bytes]]:
    """Pickled batches of items, grouped into windows of at most `settings.window` items or
    `settings.window_bytes` (Parquet rows and tar members carry their encoded bytes)."""
    window, size = [], 0
    for batch in batched(items, batch_size):
        blob = pickle.dumps(batch, protocol=PROTOCOL)
        window.append(blob)
        size += len(blob)
        if len(window) * batch_size >= settings.window or size >= settings.window_bytes:
            yield window
            window, size = [], 0
    if window:
        yield window


@contextlib.contextmanager
def _in_order(ray: ModuleType) -> Iterator[None]:
    """Ray Data's results in input order for this run (the setting is per process)."""
    ctx = ray.data.DataContext.get_current()
    saved, ctx.execution_options.preserve_order = ctx.execution_options.preserve_order, True
    try:
        yield
    finally:
        ctx.execution_options.preserve_order = saved


@contextlib.contextmanager
def _named_failures(settings: RaySettings) -> Iterator[None]:
    """A named error raised on a worker (weights that do not match the store, a missing
    model library) comes back in its own words, one line; other Ray failures name the cluster."""
    try:
        yield
    except ClusterError:
        raise
    except Exception as e:  # noqa: BLE001 - Ray wraps what the workers raised
        named = worker_failure(e)
        if named is not None:
            raise ClusterError(named) from None
        raise ClusterError(f"the Ray run on {settings.address} failed ({type(e).__name__}: {_first_line(e)}); fix: "
                           "see the cluster's logs, then run the command again (it resumes)") from None


def worker_failure(e: BaseException) -> str | None:
    """The message of a WorkerFailure raised on a worker, from the text Ray brings back."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [e]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        found: list[str] = re.findall(r"WorkerFailure: (.+)", str(x))
        if found:
            return found[-1].strip()
        cause = getattr(x, "cause", None)
        stack.extend([cause if isinstance(cause, BaseException) else None, x.__cause__, x.__context__])
    return None


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]
