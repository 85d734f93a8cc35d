"""The one progress line of gmv-store: a count and a rate, on stderr, only when wanted.

The pipelines pass `enabled` (the CLI asks on a terminal). Model backends leave it to
`enabled=None`: shown on a terminal for two images or more, and `GMV_PROGRESS=1` / `0`
forces it on / off. A `transient` line (a model's batches inside an ingest) is erased when
it closes instead of leaving a summary.
"""
from __future__ import annotations

import os
import sys
import time


def wanted(total: int | None = None) -> bool:
    """GMV_PROGRESS=1 / 0 decides; else a terminal on stderr and more than one image."""
    flag = os.environ.get("GMV_PROGRESS")
    if flag in ("0", "1"):
        return flag == "1"
    return sys.stderr.isatty() and (total is None or total >= 2)


class Progress:
    def __init__(self, what: str, total: int | None = None, enabled: bool | None = False,
                 transient: bool = False):
        self.what, self.total, self.transient = what, total, transient
        self.enabled = wanted(total) if enabled is None else enabled
        self.n = 0
        self.t0 = time.perf_counter()
        self._last = 0.0
        self._width = 0  # of the line on screen, to erase a transient one

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def update(self, n: int) -> None:
        self.n += n
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last < 0.5:
            return
        self._last = now
        rate = self.n / max(now - self.t0, 1e-9)
        of = f"/{self.total:,}" if self.total else ""
        self._write(f"\r{self.what}: {self.n:,}{of} images, {rate:,.0f}/s   ")

    def close(self) -> None:
        if not (self.enabled and self.n):
            return
        if self.transient:
            if self._width:
                self._write("\r" + " " * self._width + "\r")
            return
        dt = time.perf_counter() - self.t0
        self._write(f"\r{self.what}: {self.n:,} images in {dt:.1f}s ({self.n / max(dt, 1e-9):,.0f}/s)   \n")

    def _write(self, text: str) -> None:
        self._width = max(self._width, len(text))
        sys.stderr.write(text)
        sys.stderr.flush()
