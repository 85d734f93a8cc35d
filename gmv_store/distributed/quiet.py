"""Ray's C++ core logs on the driver's stderr, dropped for the length of a run.

Ray Data notes on every actor pool that its constructor arguments sit in the object store
(`core_worker.cc ... max_restarts > 0`), as an error-level line the user cannot act on;
the same lines stay in the session's log files. Everything else written to stderr passes
through unchanged. GMV_DEBUG=1 keeps them all.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator

RAY_CORE_LINE = re.compile(rb"^\[\d{4}-\d\d-\d\d [\d:,.]+ [DIWEF] \d+ \d+\] \S+\.(cc|h):\d+: ")


@contextlib.contextmanager
def ray_core_logs_dropped() -> Iterator[None]:
    if os.environ.get("GMV_DEBUG") == "1":
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (e.g. captured by a test runner): nothing to filter
        yield
        return
    read_end, write_end = os.pipe()
    os.dup2(write_end, 2)
    os.close(write_end)
    pump = threading.Thread(target=_pump, args=(read_end, saved), daemon=True)
    pump.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the pump drains and stops
        pump.join(timeout=5)
        os.close(saved)


def _pump(read_end: int, out: int) -> None:
    with os.fdopen(read_end, "rb", buffering=0) as pipe:
        pending = b""
        while chunk := pipe.read(65536):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            _write(out, [ln for ln in lines if not RAY_CORE_LINE.match(ln)])
        if pending and not RAY_CORE_LINE.match(pending):
            _write(out, [pending])


def _write(out: int, lines: list[bytes]) -> None:
    """Keep draining even when the real stderr is gone: a full pipe would block every writer."""
    if lines:
        with contextlib.suppress(OSError):
            os.write(out, b"\n".join(lines) + b"\n")
