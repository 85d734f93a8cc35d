"""Attributing an uploaded image (the upload form and `POST /api/match`): the same decode
fences as ingest, the same search as `gmv match`, nothing stored.

The upload is refused before it is read when its declared length passes the limit (413),
and again if the file turns out longer. The embedded Qdrant engine lets one process open
the vectors at a time, so each match opens them for its own length under the store's writer
lock (waiting a few seconds at most) and closes them: writers can run between requests,
and while one runs the answer is 503 naming it. Backends are made once and kept."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

if TYPE_CHECKING:
    from ..sources import Decoded

MAX_K = 500
MAX_RECALL = 20_000


class Matcher:
    def __init__(self, store: Path, wait: float = 5.0, device: str | None = None,
                 ledger_config: dict[str, Any] | None = None) -> None:
        self.store, self.wait, self.device, self.ledger_config = store, wait, device, ledger_config
        self._lock = threading.Lock()  # one match at a time: they share the vectors and backends
        self._backends: dict[str, Any] | None = None

    def prepare(self, shape: tuple[int, int, int] = (28, 28, 1)) -> None:
        """Make the store's backends ahead of the first upload and score one dummy image of
        `shape` with each (a quality metric may import torch, a model compile its kernels, on
        first use: seconds), without the writer lock, which only a match needs."""
        import numpy as np

        from ..backends.named import embed_named
        from ..config import read_config
        from ..store import make_backend

        cfg = read_config(self.store)
        made = {kind: make_backend(kind, spec, self.device)
                for kind, spec in (("embedder", cfg.embedder), ("rerank", cfg.rerank), ("quality", cfg.quality))}
        dummy = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
        embed_named(made["embedder"], made["rerank"], [dummy])
        if made["rerank"].rerank_kind() == "pairwise":  # LPIPS and the like: a network of their own
            made["rerank"].pairwise(dummy, [dummy])
        made["quality"].score([dummy])
        with self._lock:
            self._backends = self._backends or made

    def match(self, decoded: Decoded, k: int, recall: int | None, exact: bool) -> dict[str, Any]:
        from gmv_store.query.attribute import check_sizes, flag_unusual, match_decoded, usual_nearest
        from gmv_store.query.value import require_training

        from ..store import Store

        k, recall = check_sizes(k, recall)
        with self._lock:
            with Store.open_reader(self.store, wait=self.wait, device=self.device, backends=self._backends,
                                   ledger_config=self.ledger_config) as s:
                require_training(s)
                result = flag_unusual(match_decoded(s, [decoded], k, recall, exact)[0], usual_nearest(s.ledger))
                self._backends = {"embedder": s.embedder, "rerank": s.reranker, "quality": s.quality}
        return result


def _int(form: FormData, name: str, default: int | None, top: int) -> int | None:
    raw = str(form.get(name) or "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= top:
        raise HTTPException(400, f"{name} {raw!r}: must be a whole number from 1 to {top:,}")
    return int(raw)


async def read_upload(request: Request) -> tuple[Decoded, int | None, int | None, bool]:
    """(decoded image, k, recall, exact) from a multipart form with the file in `image`."""
    from gmv_store.query.attribute import decode_upload

    limit = request.app.state.cfg.max_upload_bytes
    length = request.headers.get("content-length", "")
    if not length.isdigit():
        raise HTTPException(411, "the upload must declare its length (Content-Length)")
    if int(length) > limit + 64 * 1024:  # the form's own fields and boundaries on top of the file
        raise HTTPException(413, f"upload of {int(length):,} bytes refused: the limit is {limit:,} bytes "
                                 "(gmv serve --max-upload-mb)")
    try:
        form = await request.form(max_files=1, max_fields=8)
    except HTTPException:
        raise
    except Exception as e:  # a malformed multipart body
        raise HTTPException(400, f"unreadable form ({' '.join(str(e).split())[:160]}); send multipart/form-data "
                                 "with the image in the field 'image'") from None
    try:
        file = form.get("image")
        if not isinstance(file, UploadFile):
            raise HTTPException(400, "no file in the form field 'image'")
        data = await file.read(limit + 1)
        if len(data) > limit:
            raise HTTPException(413, f"the image is larger than the limit of {limit:,} bytes (gmv serve --max-upload-mb)")
        k = _int(form, "k", request.app.state.cfg.default_k, MAX_K)
        recall = _int(form, "recall", None, MAX_RECALL)
        exact = str(form.get("exact") or "").lower() in ("1", "true", "on", "yes")
        decoded = await run_in_threadpool(decode_upload, data, file.filename)  # BadInput -> 400
    finally:
        await form.close()
    return decoded, k, recall, exact


async def attribute(request: Request) -> tuple[Decoded, dict[str, Any]]:
    """(decoded image, result object of `gmv match --json`) for the uploaded image."""
    decoded, k, recall, exact = await read_upload(request)
    result = await run_in_threadpool(request.app.state.matcher.match, decoded, k, recall, exact)
    return decoded, result
