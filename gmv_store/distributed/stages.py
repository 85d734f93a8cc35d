"""What runs on the cluster's workers: decoding and hashing (tasks), the model forwards
(actors that build the store's backends once each, with their weight checksums checked
against the store's record there). Rows travel as {"seq", "records"}: `records` a pickled
list of Decoded or Problem, exactly what the in-process input stage makes. One row is one batch of
the writer's: the forwards see the batches the writer's own `--batch-size` makes, not ones
Ray Data's block splits would (a torch model's float bits can depend on its batch)."""
from __future__ import annotations

import hashlib
import importlib
import os
import pickle
import socket
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GmvError
from ..sources.decode import decode_one
from ..sources.items import Decoded, Problem

PROTOCOL = 5  # out-of-band-capable pickles: pixels and vectors copied once


CODE_PACKAGES = ("gmv_store", "gmv_store.ingest", "gmv_store.query")  # what a worker runs must be what the writer runs


def code_fingerprint() -> str:
    """sha256 over the project's Python sources as this process imports them: two processes
    with the same fingerprint compute the same vectors and decode the same way."""
    h = hashlib.sha256()
    for pkg in CODE_PACKAGES:
        init = importlib.import_module(pkg).__file__
        if init is None:  # not reached: each is a regular package, with an __init__.py
            raise RuntimeError(f"{pkg} has no __init__.py to fingerprint from")
        root = Path(init).parent
        for f in sorted(root.rglob("*.py")):
            h.update(f"{f.relative_to(root.parent)}\0".encode())
            h.update(f.read_bytes())
    return h.hexdigest()


def node_probe() -> tuple[str, str]:
    """Run on every node before any work: this node's gmv-store code and where it is."""
    return code_fingerprint(), f"{socket.gethostname()}:{os.path.dirname(os.path.dirname(__file__))}"


def decode_rows(batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Items -> decoded images with their content sha256, or the Problem naming a bad one
    (the same words as in-process: `decode_one`)."""
    return {"seq": batch["seq"], "records": _pickles([[decode_one(it) for it in pickle.loads(blob)]
                                                      for blob in batch["items"]])}


def _pickles(rows: list[list[Decoded | Problem]]) -> np.ndarray:
    out = np.empty(len(rows), dtype=object)
    out[:] = [pickle.dumps(r, protocol=PROTOCOL) for r in rows]
    return out


class WorkerFailure(GmvError):
    """A named error on a worker, with the node it happened on. Ray sends the driver its
    text only (the traceback's last line names it): `pipeline.worker_failure` finds it."""


class Forwards:
    """The model forwards of one actor: the recall (and re-rank) vectors, and the quality
    score when asked. Backends are built once, from the store's recorded specs; a weight
    file that does not match the recorded checksum stops the run (StoreMismatch). Made per
    run by `forwards_for` (the specs travel with the class, not as constructor arguments)."""

    SPECS: dict[str, dict[str, Any]] = {}
    WITH_QUALITY = False
    DEVICE: str | None = None

    def __init__(self) -> None:
        self.error: str | None = None
        try:
            self._build(self.SPECS, self.WITH_QUALITY, self.DEVICE)
        except GmvError as e:  # reported by the first call: a failed actor start is retried by Ray, not named
            self.error = f"worker on node {_node_ip()}: {e}"

    def _build(self, specs: dict[str, dict[str, Any]], with_quality: bool, device: str | None) -> None:
        from ..backends.named import embed_named
        from ..config import BackendSpec
        from ..store import make_backend

        device = device or _actor_device()
        self.embedder = make_backend("embedder", BackendSpec(**specs["embedder"]), device)
        self.reranker = make_backend("rerank", BackendSpec(**specs["rerank"]), device)
        self.quality = make_backend("quality", BackendSpec(**specs["quality"]), device) if with_quality else None
        self._embed = embed_named

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.error:
            raise WorkerFailure(self.error)
        rows = [pickle.loads(blob) for blob in batch["records"]]
        try:
            for records in rows:
                self._forward([r for r in records if isinstance(r, Decoded)])
        except WorkerFailure:
            raise
        except GmvError as e:
            raise WorkerFailure(f"worker on node {_node_ip()}: {e}") from None
        return {"seq": batch["seq"], "records": _pickles(rows)}

    def _forward(self, good: list[Decoded]) -> None:
        if good:
            pixels = [d.pixels for d in good]
            vectors = self._embed(self.embedder, self.reranker, pixels)
            quality = None
            if self.quality:
                quality = np.asarray(self.quality.score(pixels), dtype=np.float64)
                if quality.shape != (len(good),):
                    raise WorkerFailure(f"quality backend '{self.quality.name}' returned {quality.shape} scores "
                                        f"for {len(good)} images")
            for i, d in enumerate(good):
                d.vectors = {name: v[i] for name, v in vectors.items()}
                if quality is not None:
                    d.quality = float(quality[i])  # finite and > 0: checked by the writer, as in-process


def forwards_for(specs: dict[str, dict[str, Any]], with_quality: bool, device: str | None) -> type:
    """A Forwards class carrying one run's backends (pickled by value with the class)."""
    return type("Forwards", (Forwards,), {"SPECS": specs, "WITH_QUALITY": with_quality, "DEVICE": device})


def _actor_device() -> str:
    """cuda when Ray gave this actor a GPU, else cpu (never a GPU it was not given)."""
    import ray

    return "cuda" if ray.get_gpu_ids() else "cpu"


def _node_ip() -> str:
    try:
        import ray

        ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]
        return ip
    except Exception:  # noqa: BLE001 - only for the message
        return socket.gethostname()
