"""A progress line with a rate, on stderr, only when asked (the CLI asks on a terminal)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, what: str, total: int | None = None, enabled: bool = False):
        self.what, self.total, self.enabled = what, total, enabled
        self.n = 0
        self.t0 = time.perf_counter()
        self._last = 0.0

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
        sys.stderr.write(f"\r{self.what}: {self.n:,}{of} images, {rate:,.0f}/s   ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.n:
            dt = time.perf_counter() - self.t0
            sys.stderr.write(f"\r{self.what}: {self.n:,} images in {dt:.1f}s ({self.n / max(dt, 1e-9):,.0f}/s)   \n")
            sys.stderr.flush()
