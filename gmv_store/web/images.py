"""Images by id only: `/img/training/{contributor_id}.png` and
`/img/generated/{set}/{generated_id}.png`. The id is looked up in the ledger and the pixels
are read from the source recorded there (files, array rows, datasets, shards: whatever
`load_source` reads), so no path ever comes from the client. Scaled to one of a few sizes,
kept in a byte-bounded cache, and sent with an ETag made from the id, which is the content
hash: a browser that has the image gets 304 without the source being read.

A page remembers the sources of the images it lists (reading.Memo), valid while the ledger
stays in the same generation, so its thumbnails skip the ledger; any write ends the
generation and the next request reads the ledger again, so a forgotten image is not served
from memory."""
from __future__ import annotations

import base64
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from ..errors import BadInput
from .render import error
from .routing import Routes

if TYPE_CHECKING:
    import numpy as np

route = Routes()  # this module's addresses, in order (routing.py)

SIZES = (48, 96, 192, 384)
DEFAULT_SIZE = 192
CACHE_BYTES = 64 * 1024 * 1024


def remember(request: Request, generation: Hashable, training: Iterable[dict[str, Any]] = (),
             generated: Iterable[dict[str, Any]] = ()) -> None:
    """Pages call this with the generation they read in (taken before reading) and the
    rows they list: dicts with contributor_id / (set_name, generated_id) and source."""
    items: dict[tuple[str, ...], str] = {("src", "t", r["contributor_id"]): r["source"]
                                         for r in training if r.get("source")}
    items.update({("src", "g", r["set_name"], r["generated_id"]): r["source"] for r in generated if r.get("source")})
    request.app.state.memo.put(generation, items)


class ThumbCache:
    """PNG bytes by (kind, content id, size), least recently used dropped past `limit` bytes."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self.limit, self.used = limit, 0
        self._items: OrderedDict[Hashable, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is not None:
                self._items.move_to_end(key)
            return data

    def put(self, key: Hashable, data: bytes) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = data
            self.used += len(data)
            while self.used > self.limit and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self.used -= len(old)


def scaled_png(pixels: np.ndarray, size: int) -> bytes:
    """Small images (28×28 digits) grow by a whole factor with nearest-neighbour, so pixels
    stay crisp; large ones shrink to fit `size` with Lanczos."""
    from PIL import Image

    from ..images import to_pil

    img = to_pil(pixels)
    w, h = img.size
    side = max(w, h)
    if side * 2 <= size:
        f = size // side
        img = img.resize((w * f, h * f), Image.Resampling.NEAREST)
    elif side > size:
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def data_uri(pixels: np.ndarray, size: int = DEFAULT_SIZE) -> str:
    """An uploaded image shown back on its result page (it is stored nowhere, so no URL)."""
    return "data:image/png;base64," + base64.b64encode(scaled_png(pixels, size)).decode()


def _size(request: Request) -> int:
    raw = request.query_params.get("s", "")
    return int(raw) if raw.isdigit() and int(raw) in SIZES else DEFAULT_SIZE


def _placeholder(size: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (size, size), 224).save(buf, format="PNG")
    return buf.getvalue()


def _send(request: Request, key: tuple[str, ...], lookup: Callable[..., tuple[str, str]], *args: Any) -> Response:
    from ..sources.checked import load_checked

    size = _size(request)
    state = request.app.state
    gen = state.reader.generation()
    source = state.memo.get(gen, ("src", *key))
    if source is None:
        source = state.reader.read(lookup, *args)[0]  # NotFound -> 404 page
        state.memo.put(gen, {("src", *key): source})
    etag = f'"{key[0]}-{key[-1]}-{size}"'  # the id is the content's hash
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    cache: ThumbCache = state.thumbs
    data = cache.get((key[0], key[-1], size))
    if data is None:
        try:
            data = scaled_png(load_checked(source, key[-1], state.cfg.store), size)  # the id: the content hash's first 16 digits
        except BadInput as e:
            # the recorded source moved, vanished or now holds another image (SourceChanged):
            # a grey square keeps the page's layout
            return Response(_placeholder(size), status_code=404, media_type="image/png",
                            headers={"X-Gmv-Error": " ".join(str(e).split())[:200].encode("ascii", "replace").decode()})
        cache.put((key[0], key[-1], size), data)
    return Response(data, media_type="image/png", headers=headers)


@route("/img/training/{contributor_id}.png")
def training_image(request: Request) -> Response:
    from gmv_store.query.browse import is_id, training_source

    cid = request.path_params["contributor_id"]
    if not is_id(cid):
        return error(request, 404, "Not found", "an image id is 16 hex digits (0-9, a-f)")
    return _send(request, ("t", cid), training_source, cid)


@route("/img/generated/{set_name:path}/{generated_id}.png")
def generated_image(request: Request) -> Response:
    from gmv_store.query.browse import generated_source, is_id

    set_name, gid = request.path_params["set_name"], request.path_params["generated_id"]
    if not is_id(gid):
        return error(request, 404, "Not found", "an image id is 16 hex digits (0-9, a-f)")
    return _send(request, ("g", set_name, gid), generated_source, set_name, gid)
