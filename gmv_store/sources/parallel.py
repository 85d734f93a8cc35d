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
from dataclasses import dataclass
from itertools import islice
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

import numpy as np

from ..errors import GmvError
from .decode import batched, decode_items, decode_one
from .items import Decoded, Embed, Item, Problem

HELPER_NICE = 5      # how much lower the writer's helpers run (the vectors' reader, the ledger's commit thread)
SERIAL_FIRST = 1024  # decode this many in-process first: small inputs never pay a process start
PIPE_BYTES = 1 << 20  # Linux's default cap for an unprivileged pipe (/proc/sys/fs/pipe-max-size)
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


def roomy_pipes(pool: ProcessPoolExecutor, size: int = PIPE_BYTES) -> None:
    """Let the pool's pipes hold whole chunks. A worker writes its results into a pipe the
    main process drains on a thread that needs the GIL, which the writer's threads hold in
    turns: through Linux's default 64 KB a chunk of 64 images with their vectors (~400 KB)
    took 7 reads, each waiting for the GIL, while the worker stood blocked in its write
    (1.7 s idle of 7 s with one worker; 0.7 s with 1 MB pipes). A hint: the executor's
    queues are private and the size may be capped by the system; then nothing changes."""
    try:
        import fcntl

        queues: list[Any] = [pool._result_queue, pool._call_queue]  # type: ignore[attr-defined]
        for q in queues:
            fcntl.fcntl(q._reader.fileno(), fcntl.F_SETPIPE_SZ, size)
    except (ImportError, AttributeError, OSError):
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


@dataclass
class DecodedChunk:
    """A worker's results for one chunk, in columns: one pickle of a few lists and two
    matrices, where a list of `Decoded` pickled each image's arrays apart (64 MNIST images
    with two vectors each: 16 µs an image to pickle and 9 to unpickle, against 7 and 2;
    the main process unpickles every chunk, so it is the writer's core that saves)."""

    problems: list[tuple[int, Problem]]  # where in the chunk each problem was
    source: list[str]
    label: list[str | None]
    pixels: list[np.ndarray]
    sha256: list[str]
    meta: list[dict[str, Any] | None]
    vectors: dict[str, np.ndarray] | None  # one matrix per name, a row per decoded image

    def results(self) -> list[Decoded | Problem]:
        """The chunk's results in its items' order, as `decode_one` gives them."""
        decoded = [Decoded(*row) for row in zip(self.source, self.label, self.pixels, self.sha256, self.meta)]
        if self.vectors is not None:
            named = list(self.vectors.items())
            for i, d in enumerate(decoded):
                d.vectors = {name: m[i] for name, m in named}
        out: list[Decoded | Problem] = list(decoded)
        for at, problem in self.problems:
            out.insert(at, problem)
        return out


def _worker_start(alive: Connection) -> None:
    """A decoding worker's start-up: `watch_parent`, and below the writer's priority."""
    watch_parent(alive)
    lower_priority()


def _decode_chunk(items: list[Item], embed: Embed | None = None) -> DecodedChunk:
    out = [decode_one(it) for it in items]
    good = [d for d in out if isinstance(d, Decoded)]
    vectors = embed([d.pixels for d in good]) if embed is not None and good else None
    return DecodedChunk([(i, r) for i, r in enumerate(out) if isinstance(r, Problem)],
                        [d.source for d in good], [d.label for d in good], [d.pixels for d in good],
                        [d.sha256 for d in good], [d.meta for d in good], vectors)


def decode_parallel(items: Iterable[Item], problems: list[Problem], workers: int, ahead: int = 1024,
                    embed: Embed | None = None) -> Iterator[Decoded]:
    """decode_items(items, problems) with `workers` processes; `ahead`: items in flight.
    `embed` (picklable: images -> named vectors) also runs in the workers, per chunk, and
    fills `Decoded.vectors` (not for the first items, decoded in this process)."""
    it = iter(items)
    head = list(islice(it, SERIAL_FIRST))
    if len(head) < SERIAL_FIRST:
        yield from decode_items(head, problems)
        return
    ctx = worker_context()
    alive, keep = ctx.Pipe(duplex=False)  # `keep` stays here only: its end-of-file tells the workers to go
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_start, initargs=(alive,))
    roomy_pipes(pool)
    pending: deque[Future[DecodedChunk]] = deque()
    limit = max(2 * workers, -(-ahead // CHUNK))
    chunks = batched(it, CHUNK)

    def submit(chunk: list[Item]) -> None:
        with main_hidden():  # the executor starts its processes inside submit()
            pending.append(pool.submit(_decode_chunk, chunk, embed))

    try:
        # the workers start (~0.3 s) on what follows the head while it is decoded here; an
        # error reading the inputs is raised after the head, where it was before
        error: Exception | None = None
        try:
            for chunk in islice(chunks, limit - 1):
                submit(chunk)
        except Exception as e:  # noqa: BLE001 - raised below, after the head
            error = e
        yield from decode_items(head, problems)
        if error is not None:
            raise error
        for chunk in chunks:
            submit(chunk)
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


def _results(future: Future[DecodedChunk], problems: list[Problem]) -> Iterator[Decoded]:
    for r in future.result().results():
        if isinstance(r, Problem):
            problems.append(r)
        else:
            yield r
