"""The application: settings, routes, the guard (auth.py) and the error handlers.

Every route reads; none writes. Named library errors become one readable line with the
status it deserves (404 unknown id or set, 400 bad request or refused SQL, 503 store busy
or damaged, 409 a store that cannot do it yet); anything unexpected is a 500 page naming
only its type, with the traceback in the server's log.
"""
from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..errors import GmvError
from ..options import DEFAULT_K, DEFAULT_SQL_TIMEOUT_S
from . import auth, images, jsonapi, pages
from .attribution import Matcher
from .images import ThumbCache
from .reading import Memo, Reader
from .render import error, one_line, status_of

STATIC = Path(__file__).parent / "static"


@dataclass(frozen=True)
class Settings:
    store: Path
    token: str | None = None          # None: no token asked (loopback only)
    loopback_only: bool = False       # answer only Host: localhost / 127.0.0.1 / ::1 (+ extra_hosts)
    extra_hosts: tuple[str, ...] = field(default=())
    max_upload_bytes: int = 10_000_000
    sql_timeout: float = DEFAULT_SQL_TIMEOUT_S
    sql_memory_limit: str | None = None
    match_wait: float = 5.0           # seconds an upload waits for a writer to finish
    default_k: int = DEFAULT_K
    device: str | None = None
    hold_s: float = 0.0               # keep a ledger connection open this long after a read (reading.py)
    warm_up: bool = False             # at start, in the background: MNIST's array, the upload's backends


# Starlette tries them in this order (each module's in the order it defines them)
ROUTES = [*pages.route.routes, *images.route.routes, *jsonapi.route.routes, *auth.route.routes,
          Mount("/static", StaticFiles(directory=STATIC), name="static")]


async def on_gmv_error(request: Request, exc: GmvError) -> Response:
    status, title = status_of(exc)
    headers = {"Retry-After": "10"} if status == 503 else None
    return error(request, status, title, one_line(exc), headers=headers)


async def on_http_error(request: Request, exc: HTTPException) -> Response:
    titles = {404: "Not found", 405: "Method not allowed", 411: "Length required", 413: "Upload too large"}
    message = "no page at this address" if exc.status_code == 404 else exc.detail
    return error(request, exc.status_code, titles.get(exc.status_code, "Bad request"), message,
                 headers=getattr(exc, "headers", None))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    # Starlette raises the exception again after this page is sent: the ASGI server logs it
    return error(request, 500, "Unexpected error", f"unexpected {type(exc).__name__}; the traceback is in the "
                                                   "server's log")


def _warm_up(reader: Reader, matcher: Matcher) -> None:
    """In the background as the server starts, what would otherwise slow the first requests:
    one training image read (a dataset source such as `mnist:train#i` loads its whole array
    once, ~2 s) and the backends an upload needs, each run once on a dummy image of the
    training images' shape (a quality metric imports torch on its first score)."""
    from ..ledger.lookups import training_shape_sample
    from ..sources import load_source

    shape = (28, 28, 1)
    try:
        row = reader.read(training_shape_sample)
        if row:
            shape = (row[1], row[2], row[3]) if row[1] >= 8 and row[2] >= 8 else shape
            load_source(row[0], reader.store)
    except Exception:  # nothing to warm, or a source that is gone: the pages will say so
        pass
    try:
        matcher.prepare(shape)
    except Exception:  # e.g. missing weights: the upload reports it
        pass


def create_app(settings: Settings) -> Starlette:
    """The ASGI app for one store (checked now: StoreNotFound if there is none)."""
    from ..config import read_config

    read_config(settings.store)
    reader = Reader(settings.store, settings.sql_memory_limit, hold=settings.hold_s)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if settings.warm_up:
            threading.Thread(target=_warm_up, args=(reader, app.state.matcher), daemon=True,
                             name="gmv-warm-up").start()
        yield
        reader.close()  # no ledger connection outlives the server

    # each handler takes the type it is registered for (Starlette's type says Exception)
    handlers: dict[Any, Callable[[Request, Any], Awaitable[Response]]] = {
        GmvError: on_gmv_error, HTTPException: on_http_error, Exception: on_unexpected}
    app = Starlette(routes=ROUTES, middleware=[Middleware(auth.Guard)], lifespan=lifespan, exception_handlers=handlers)
    app.state.cfg = settings
    app.state.reader = reader
    app.state.thumbs = ThumbCache()
    app.state.memo = Memo()
    app.state.matcher = Matcher(settings.store, wait=settings.match_wait, device=settings.device,
                                ledger_config=reader.config)
    return app
