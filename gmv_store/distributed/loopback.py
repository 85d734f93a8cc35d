"""A Ray cluster on this machine's loopback only, for tests, benchmarks and trying `--ray`
without a cluster: `ray start` with every node at 127.0.0.1 (Ray otherwise rewrites that
address into the machine's outward one and listens there), random ports, a private temp
folder, and a stop that ends exactly its own processes (never `ray stop`, which ends every
Ray process of the machine).

    with loopback_cluster(tmp, worker_cpus=[1, 1]) as c:   # head with 0 CPUs + two nodes
        api.ingest(store, paths, ray=c.address)           # with RAY_AUTH_MODE=disabled set here too

    python -m gmv_store.distributed.loopback start ARGS...  # `ray start ARGS` kept on 127.0.0.1
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind((LOOPBACK, 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class LoopbackCluster:
    address: str
    temp_dir: Path
    env: dict[str, str] = field(default_factory=dict)

    def pids(self) -> list[int]:
        """This cluster's processes: those naming its temp folder or GCS address, and their
        children (workers rename themselves `ray::...`)."""
        at_address = re.compile(re.escape(self.address) + r"(?!\d)")
        table: dict[int, tuple[int, str]] = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            table[int(d.name)] = (ppid, cmd)
        own = {pid for pid, (_, cmd) in table.items()
               if pid != os.getpid() and (str(self.temp_dir) in cmd or at_address.search(cmd))}
        grew = True
        while grew:
            kids = {pid for pid, (ppid, _) in table.items() if ppid in own} - own - {os.getpid()}
            grew = bool(kids)
            own |= kids
        return sorted(own)

    def stop(self, grace: float = 3.0) -> list[int]:
        """End this cluster's processes (TERM, then KILL after `grace` s); returns those still
        alive afterwards (none, normally)."""
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
            pids = self.pids()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and _alive(pids):
                time.sleep(0.1)
        return _alive(self.pids())


def _alive(pids: list[int]) -> list[int]:
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            out.append(pid)
    return out


def ray_start(args: list[str], env: dict[str, str]) -> None:
    """`ray start ARGS` through this module, so that 127.0.0.1 stays the node address."""
    r = subprocess.run([sys.executable, "-m", "gmv_store.distributed.loopback", "start", *args], env=env,
                       capture_output=True, text=True, timeout=180)
    if r.returncode != 0:
        raise RuntimeError(f"ray start {' '.join(args)} failed: {(r.stderr or r.stdout)[-2000:]}")


@contextlib.contextmanager
def loopback_cluster(temp_dir: Path, worker_cpus: Sequence[int] = (1,), head_cpus: int = 0,
                     env: dict[str, str] | None = None, worker_env: dict[str, str] | None = None
                     ) -> Iterator[LoopbackCluster]:
    """A head node with `head_cpus` CPUs and one node per entry of `worker_cpus`, all on
    127.0.0.1 with random ports; stopped on exit, also after a failure."""
    temp_dir = Path(temp_dir)
    temp_dir.mkdir(parents=True, exist_ok=True)
    # token auth off, stated (loopback only): Ray otherwise turns it on when ~/.ray/auth_token
    # exists, which a `ray.init()` elsewhere may have written; the driver must state it too
    base = {**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {}), "RAY_TMPDIR": str(temp_dir),
            "RAY_USAGE_STATS_ENABLED": "0"}
    port = free_port()
    cluster = LoopbackCluster(f"{LOOPBACK}:{port}", temp_dir, base)
    common = ["--node-ip-address", LOOPBACK, "--disable-usage-stats", "--dashboard-agent-listen-port",
              str(free_port()), "--metrics-export-port", str(free_port())]
    try:
        ray_start(["--head", "--port", str(port), "--num-cpus", str(head_cpus), "--num-gpus", "0",
                   "--temp-dir", str(temp_dir), "--include-dashboard", "false",
                   "--ray-client-server-port", str(free_port()), *common], base)
        for cpus in worker_cpus:
            ray_start(["--address", cluster.address, "--num-cpus", str(cpus), "--num-gpus", "0", *common],
                      {**base, **(worker_env or {})})
        yield cluster
    finally:
        cluster.stop()


def _main(argv: list[str]) -> None:
    import ray._private.services as services

    services.resolve_ip_for_localhost = lambda host: host  # keep 127.0.0.1 (see the module doc)
    from ray.scripts.scripts import main

    sys.argv = ["ray", *argv]
    main()  # type: ignore[no-untyped-call]  # Ray's click command


if __name__ == "__main__":
    _main(sys.argv[1:])
