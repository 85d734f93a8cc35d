"""Decoding in worker processes (`--workers N`), overlapped with what the caller does with
the images (embedding, writing).

The main process reads the inputs (Parquet batches, tar members, file names: cheap) and
sends items in chunks to the workers, which decode them and hash the pixels (the costly
part). Results come back in submission order, so images, problems and content ids are
exactly those of the in-process path. At most `ahead` items are in flight: memory stays
bounded by the batch size, not by the input.

Workers start from a fresh interpreter (forkserver, else spawn), never by forking the
caller, whose DuckDB, Qdrant and torch threads may hold locks. They ignore Ctrl-C (the main
process handles it) and exit on their own when the main process dies: each holds the read
end of a pipe whose only write end the main process holds, and reads end-of-file the moment
it dies. (A check of its pid does not do: a killed process stays a zombie until its own
parent collects it, and the workers, holding the command's stdout and stderr, would keep a
caller reading them waiting forever.)
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import types
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from itertools import islice
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext

from ..errors import GmvError
from .decode import batched, decode_items, decode_one
from .items import Decoded, Embed, Item, Problem

HELPER_NICE = 5      # how much lower the writer's helpers run (the vectors' reader, the ledger's commit thread)
SERIAL_FIRST = 1024  # decode this many in-process first: small inputs never pay a process start
CHUNK = 64           # items per task: large enough to amortise pickling, small enough to balance


def default_workers() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@contextmanager
def main_hidden() -> Iterator[None]:
    """Start workers without the caller's main script. A fresh interpreter otherwise imports
    it again: a script without an `if __name__ == "__main__":` guard (or one read from stdin)
    would run again in every worker, ingest included. The workers need only gmv_store's own
    modules, which the pickled tasks name."""
    saved = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if saved is not None:
            sys.modules["__main__"] = saved


def worker_context() -> BaseContext:
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if ctx.get_start_method() == "forkserver":
        ctx.set_forkserver_preload(["gmv_store.sources.decode"])  # numpy, PIL: imported once, not per worker
    return ctx


def lower_priority(by: int = HELPER_NICE, thread: bool = False) -> None:
    """Lower the CPU priority of this process (`thread`: of the calling thread only, on
    Linux). Ingest's rate is its writer's engine calls, which hold one core; the processes and
    threads that feed it run lower, so that the scheduler never takes the writer's core for
    them (at 1M rows the engine's calls lost 6 s of 100 to them at the same priority, 3.7 s
    below; docs/speed.md). A hint: where it is not allowed or not known, nothing changes."""
    try:
        if not thread:
            os.nice(by)
        elif sys.platform == "linux":  # a thread's own priority (elsewhere this call takes process ids only)
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + by)
    except (OSError, AttributeError):
        pass


def watch_parent(alive: Connection) -> None:
    """Worker start-up: leave Ctrl-C to the main process, and exit once it is gone (`alive`:
    the read end of the main process's pipe)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        try:
            alive.recv_bytes()  # nothing is ever sent: this returns at end-of-file
        except (EOFError, OSError):
            pass
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def _decode_chunk(items: list[Item], embed: Embed | None = None) -> list[Decoded | Problem]:
    out = [decode_one(it) for it in items]
    good = [d for d in out if isinstance(d, Decoded)]
    if embed is not None and good:
        vectors = embed([d.pixels for d in good])
        for i, d in enumerate(good):
            d.vectors = {name: v[i] for name, v in vectors.items()}
    return out


def decode_parallel(items: Iterable[Item], problems: list[Problem], workers: int, ahead: int = 1024,
                    embed: Embed | None = None) -> Iterator[Decoded]:
    """decode_items(items, problems) with `workers` processes; `ahead`: items in flight.
    `embed` (picklable: images -> named vectors) also runs in the workers, per chunk, and
    fills `Decoded.vectors` (not for the first items, decoded in this process)."""
    it = iter(items)
    head = list(islice(it, SERIAL_FIRST))
    yield from decode_items(head, problems)
    if len(head) < SERIAL_FIRST:
        return
    ctx = worker_context()
    alive, keep = ctx.Pipe(duplex=False)  # `keep` stays here only: its end-of-file tells the workers to go
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=watch_parent, initargs=(alive,))
    pending: deque[Future[list[Decoded | Problem]]] = deque()
    limit = max(2 * workers, -(-ahead // CHUNK))
    try:
        for chunk in batched(it, CHUNK):
            with main_hidden():  # the executor starts its processes inside submit()
                pending.append(pool.submit(_decode_chunk, chunk, embed))
            if len(pending) >= limit:
                yield from _results(pending.popleft(), problems)
        while pending:
            yield from _results(pending.popleft(), problems)
    except BrokenProcessPool as e:
        raise GmvError(f"a decoding worker process died ({e}); fix: run again with --workers 0 to decode in-process "
                       "and see which input fails") from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        keep.close()  # workers still busy with a cancelled chunk exit now
        alive.close()


def _results(future: Future[list[Decoded | Problem]], problems: list[Problem]) -> Iterator[Decoded]:
    for r in future.result():
        if isinstance(r, Problem):
            problems.append(r)
        else:
            yield r
