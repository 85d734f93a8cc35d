"""What `--ray ADDRESS`, `--ray-workers` and `--ray-gpus-per-worker` ask for (no ray import)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BadInput, GmvError

ENV_ADDRESS = "GMV_RAY_ADDRESS"
PIP_RAY = "pip install 'gmv-store[ray]'"
# one Ray Dataset per window of items: the driver holds one window, never the whole input
# (a window's actors build their models once; a larger window amortises that better)
WINDOW = 100_000
WINDOW_BYTES = 256 << 20  # Parquet rows and tar members travel with their encoded bytes


class ClusterError(GmvError):
    """The Ray cluster cannot run the work: unreachable, another Ray version, a node without
    this gmv-store, a worker whose weights differ from the store's record."""


@dataclass(frozen=True)
class RaySettings:
    address: str                         # host:port (as `ray start --head` prints it), auto, or local
    workers: int | None = None           # forward actors [default: one per GPU, else one per CPU]
    gpus_per_worker: float | None = None  # [default: 1 where the cluster has GPUs, else 0]
    window: int = WINDOW
    window_bytes: int = WINDOW_BYTES

    @property
    def loopback(self) -> bool:
        """A private cluster or one on this machine's loopback: kept on 127.0.0.1."""
        host = self.address.rpartition(":")[0]
        return self.address == "local" or host in ("127.0.0.1", "localhost")


def ray_settings(address: str | None, workers: int | None = None, gpus_per_worker: float | None = None,
                 window: int = WINDOW) -> RaySettings | None:
    """Checked settings, or None without an address (the in-process path)."""
    if not address:
        if workers is not None or gpus_per_worker is not None:
            raise BadInput("--ray-workers / --ray-gpus-per-worker need --ray ADDRESS (host:port, auto or local)")
        return None
    address = address.strip()
    if address not in ("auto", "local") and not re.fullmatch(r"[\w.\-\[\]:]+:\d{1,5}", address):
        raise BadInput(f"--ray {address!r}: expected host:port (as `ray start --head` prints it), auto or local")
    if workers is not None and workers < 1:
        raise BadInput(f"--ray-workers {workers}: must be at least 1")
    if gpus_per_worker is not None and gpus_per_worker < 0:
        raise BadInput(f"--ray-gpus-per-worker {gpus_per_worker}: must be 0 or more")
    if window < 1:
        raise BadInput(f"window {window}: must be at least 1")
    return RaySettings(address, workers, gpus_per_worker, window)
