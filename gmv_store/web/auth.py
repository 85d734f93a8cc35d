"""Who may ask, and what every answer carries.

- A bearer token (`gmv serve --token` / GMV_SERVE_TOKEN), required on every route but the
  login form and the stylesheet when one is set (always when serving beyond loopback).
  Scripts send `Authorization: Bearer TOKEN`; a browser posts it once to /login and gets
  an HttpOnly, SameSite=Strict cookie holding an HMAC of it — the token itself is never
  stored, printed or logged.
- Without a token the server answers only requests addressed to a loopback name (Host
  header), so a web page elsewhere cannot reach it through DNS rebinding.
- Every response: Content-Security-Policy (no inline or foreign scripts, no framing),
  nosniff, no referrer, and Server-Timing with the time spent in the app.
"""
from __future__ import annotations

import hashlib
import hmac
import time

from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .render import error, page
from .routing import Routes

route = Routes()  # this module's addresses, in order (routing.py)

COOKIE = "gmv_session"
OPEN_PATHS = ("/login", "/static/")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"gmv-serve-session", hashlib.sha256).hexdigest()


def authorized(request: Request, token: str) -> bool:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    cookie = request.cookies.get(COOKIE, "")
    return bool(cookie) and hmac.compare_digest(cookie.encode(), session_value(token).encode())


def host_name(request: Request) -> str:
    host = request.headers.get("host", "")
    if host.startswith("["):
        return host[: host.find("]") + 1]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        t0 = time.perf_counter()
        cfg = request.app.state.cfg
        request.state.notes = []
        path = request.url.path
        if cfg.loopback_only and host_name(request) not in LOOPBACK_NAMES + cfg.extra_hosts:
            resp = error(request, 421, "Wrong host", "this server answers only requests to localhost / 127.0.0.1 "
                                                     "(start it with --host and a token to serve other names)")
        elif cfg.token is not None and not path.startswith(OPEN_PATHS) and not authorized(request, cfg.token):
            if path.startswith("/api/"):
                resp = error(request, 401, "Token required", "send the header `Authorization: Bearer TOKEN` "
                                                             "(the token given to gmv serve)",
                             headers={"WWW-Authenticate": 'Bearer realm="gmv"'})
            else:
                resp = page(request, "login.html", status=401, next=_next(request), failed=False)
        else:
            resp = await call_next(request)
        for k, v in HEADERS.items():
            resp.headers.setdefault(k, v)
        resp.headers["Server-Timing"] = f"app;dur={1000 * (time.perf_counter() - t0):.1f}"
        return resp


def _next(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return target if target.startswith("/") and not target.startswith("//") else "/"


@route("/login", methods=["GET", "POST"])
async def login(request: Request) -> Response:
    cfg = request.app.state.cfg
    if request.method == "GET" or cfg.token is None:
        return page(request, "login.html", next=_safe(request.query_params.get("next")), failed=False)
    form = await request.form(max_files=0, max_fields=4)
    nxt = _safe(str(form.get("next") or "/"))
    if not hmac.compare_digest(str(form.get("token") or "").encode(), cfg.token.encode()):
        return page(request, "login.html", status=401, next=nxt, failed=True)
    resp = RedirectResponse(nxt, status_code=303)
    resp.set_cookie(COOKIE, session_value(cfg.token), httponly=True, samesite="strict", path="/")
    return resp


@route("/logout")
async def logout(request: Request) -> Response:
    resp = RedirectResponse("/login", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


def _safe(target: str | None) -> str:
    """Only a path on this server (no //host, no scheme) is followed after login."""
    t = target or "/"
    return t if t.startswith("/") and not t.startswith("//") and "\\" not in t else "/"
