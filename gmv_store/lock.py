"""One writer per store (embedded Qdrant and DuckDB both allow one writing process)."""
from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

from .errors import StoreLocked

LOCK_FILE = "writer.lock"


class WriterLock:
    def __init__(self, store: Path, wait: float = 0.0):
        self.path = store / LOCK_FILE
        self.fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(self.fd)
                    raise StoreLocked(
                        f"store {store} is in use by {holder}; fix: wait for it to finish or pass --wait SECONDS"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()} {' '.join(os.path.basename(a) for a in sys.argv[:2])}".encode())

    def holder(self) -> str:
        try:
            text = self.path.read_text().strip()
        except OSError:
            text = ""
        pid, _, cmd = text.partition(" ")
        return f"pid {pid} ({cmd})" if pid else "another process"

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def current_holder(store: Path) -> str | None:
    """Who holds the writer lock now, or None if nobody does."""
    path = store / LOCK_FILE
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        except BlockingIOError:
            text = path.read_text().strip()
            pid, _, cmd = text.partition(" ")
            return f"pid {pid} ({cmd})" if pid else "another process"
    finally:
        os.close(fd)
