"""Joining the Ray cluster for one command, and checking that it can run gmv's stages:
reachable, the same Ray and Python, and every node with this gmv-store (same code)."""
from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from ..errors import MissingDependency
from .settings import PIP_RAY, ClusterError, RaySettings

LOOPBACK = "127.0.0.1"


def require_ray() -> ModuleType:
    try:
        ray = importlib.import_module("ray")
        importlib.import_module("ray.data")
    except ImportError as e:
        raise MissingDependency(f"--ray needs Ray Data ({e}); fix: {PIP_RAY}") from None
    return ray


@contextlib.contextmanager
def _loopback_kept(keep: bool) -> Iterator[None]:
    """Ray rewrites 127.0.0.1 into this machine's outward address (so that other machines
    can reach a node); a cluster on the loopback, or a private one, must stay there."""
    from ray._private import services

    saved = getattr(services, "resolve_ip_for_localhost", None)  # a private function (Ray 2.60)
    if keep and saved is not None:
        services.resolve_ip_for_localhost = lambda host: host
    try:
        yield
    finally:
        if saved is not None:
            services.resolve_ip_for_localhost = saved


@dataclass
class Cluster:
    nodes: list[dict[str, Any]]   # alive nodes with CPUs or GPUs: {"id", "ip", "cpus", "gpus"}
    cpus: float
    gpus: float


@contextlib.contextmanager
def connected(settings: RaySettings) -> Iterator[Cluster]:
    """Connect (or start a private cluster for `local`), check it, yield it, disconnect."""
    from .quiet import ray_core_logs_dropped

    ray = require_ray()
    started_here = not ray.is_initialized()  # an API caller may have connected already
    # Ray prints the cluster's error events (a lost node, a retried task) on stdout, which is
    # the command's output (`gmv match --json`): they go to stderr instead
    with ray_core_logs_dropped(), contextlib.redirect_stdout(sys.stderr):
        if started_here:
            _init(ray, settings)
        try:
            cluster = _check(ray, settings)
            yield cluster
        finally:
            if started_here and ray.is_initialized():
                ray.shutdown()


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A plain TCP connect first: Ray itself retries an absent head for minutes."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(f"Ray cluster {address} unreachable ({e.strerror or type(e).__name__}); fix: check the "
                           "address `ray start --head` printed (host:port) and that the cluster runs, or use "
                           "--ray local") from None


def _init(ray: ModuleType, settings: RaySettings) -> None:
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
              "configure_logging": True}
    if settings.loopback:
        kwargs["_node_ip_address"] = LOOPBACK
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if settings.address not in ("auto", "local"):
        _reachable(settings.address)
    try:
        with _loopback_kept(settings.loopback):
            if settings.address == "local":
                ray.init(address="local", **kwargs)
            else:
                ray.init(address=settings.address, **kwargs)
    except Exception as e:  # noqa: BLE001 - Ray raises plain exceptions: named here
        raise ClusterError(_init_failure(settings.address, e)) from None
    if os.environ.get("GMV_DEBUG") != "1":
        # Ray Data's progress and error lines are not the command's output: a failure comes
        # back as one named line (GMV_DEBUG=1 keeps them)
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)


def _init_failure(address: str, e: Exception) -> str:
    text = " ".join(str(e).split())
    if "Version mismatch" in text:
        return (f"Ray cluster {address}: Ray/Python version mismatch ({text.removeprefix('Version mismatch: ')[:300]}); "
                f"fix: install the cluster's Ray and Python versions here (or restart the cluster with these)")
    return (f"Ray cluster {address} unreachable ({type(e).__name__}: {text[:200]}); fix: check the address "
            "`ray start --head` printed (host:port), that the cluster runs, or use --ray local")


def _check(ray: ModuleType, settings: RaySettings) -> Cluster:
    nodes = [{"id": n["NodeID"], "ip": n["NodeManagerAddress"], "cpus": n["Resources"].get("CPU", 0.0),
              "gpus": n["Resources"].get("GPU", 0.0)} for n in ray.nodes() if n.get("Alive")]
    working = [n for n in nodes if n["cpus"] or n["gpus"]]
    if not working:
        raise ClusterError(f"Ray cluster {settings.address} has no node with CPUs or GPUs; fix: start worker nodes "
                           "(`ray start --address HOST:PORT`)")
    _check_nodes(ray, working)
    return Cluster(working, sum(n["cpus"] for n in working), sum(n["gpus"] for n in working))


def _check_nodes(ray: ModuleType, nodes: list[dict[str, Any]]) -> None:
    """Every working node imports this gmv-store with the same code as this process."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from .stages import code_fingerprint, node_probe

    want = code_fingerprint()
    probe = ray.remote(num_cpus=0, max_retries=0)(node_probe)
    refs = {n["id"]: probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["id"], soft=False)).remote()
            for n in nodes}
    for n in nodes:
        where = f"node {n['ip']} ({n['id'][:8]})"
        try:
            have, location = ray.get(refs[n["id"]], timeout=120)
        except Exception as e:  # noqa: BLE001 - the task's import failed there
            raise ClusterError(f"{where} cannot run gmv-store's stages ({_cause(e)}); fix: install this gmv-store "
                               f"with its ray extra ({PIP_RAY}, the same version) on every node") from None
        if have != want:
            raise ClusterError(f"{where} runs other gmv-store code ({location}) than this process; fix: install the "
                               "same gmv-store version on every node")


def _cause(e: BaseException) -> str:
    """The last line of a remote traceback: what actually failed there."""
    cause = getattr(e, "cause", None) or e
    lines = [ln.strip() for ln in str(cause).strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else type(cause).__name__)[:240]
