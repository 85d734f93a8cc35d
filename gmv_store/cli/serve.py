"""`gmv serve`: the read-only browser UI (gmv_store.web) on a local port."""
from __future__ import annotations

import ipaddress
import socket
import sys

import click

from ..errors import GmvError, MissingDependency
from ..options import SqlOptions
from .options import errors_to_lines, record_option, store_option

TOKEN_ENV = "GMV_SERVE_TOKEN"
HOLD_S = 2.0  # a ledger connection kept open after a read, for the rest of a page's requests (web/reading.py)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, made here so a busy port is one clear line (and port 0 picks
    a free one whose number can be printed)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as e:
        sock.close()
        raise GmvError(f"cannot listen on {host}:{port} ({e.strerror}); fix: choose another --port, or --port 0 "
                       "for any free one") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@click.command()
@store_option
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback needs a token and is warned about.")
@click.option("--port", type=click.IntRange(0, 65535), default=8377, show_default=True, help="Port (0: any free one).")
@click.option("--token", envvar=TOKEN_ENV, default=None, show_envvar=True,
              help="Require `Authorization: Bearer TOKEN` (browsers: log in once at /login). Never printed or stored.")
@click.option("--max-upload-mb", type=click.FloatRange(0.01, 1000), default=10, show_default=True,
              help="Largest image the attribution form accepts.")
@record_option(SqlOptions, "timeout", "--sql-timeout", show_default=True, metavar="SECONDS",
               help="Time limit of a query on the SQL page (0 = none).")
@click.option("--sql-memory-limit", default=None, metavar="SIZE", help="Memory cap of SQL queries [default: 25%].")
@click.option("--match-wait", type=click.FloatRange(min=0), default=5, show_default=True, metavar="SECONDS",
              help="How long an attribution waits for a running writer before answering 503.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda", "mps"]), default=None,
              help="Where model backends run for attribution [default: auto].")
@errors_to_lines
def serve(store: str | None, host: str, port: int, token: str | None, max_upload_mb: float, sql_timeout: float,
          sql_memory_limit: str | None, match_wait: float, device: str | None) -> None:
    """Serve a read-only web UI of the store: overview, sets (leaderboard with thumbnails,
    value histogram, owners, ρ), generated images with their top-k contributors,
    contributors, owners, an "attribute an image" upload form (`gmv match`, nothing
    stored), read-only SQL, and JSON under /api/. Reads the writer's snapshot while a
    writer runs; attribution waits for the writer (--match-wait), then answers 503.

    Listens on 127.0.0.1 by default and then answers only requests addressed to localhost.
    Another --host exposes the store to the network: it needs --token (or GMV_SERVE_TOKEN).

    \b
    Examples:
      gmv serve --store gmv-demo                     # then open http://127.0.0.1:8377/
      gmv serve --store my-store --port 0            # any free port
      GMV_SERVE_TOKEN=$(openssl rand -hex 16) gmv serve --store my-store --host 0.0.0.0
    """
    try:
        import uvicorn

        from ..web import Settings, create_app
    except ImportError as e:
        raise MissingDependency(f"the web UI needs {e.name}; fix: pip install 'gmv-store[web]'") from None
    from ..config import default_store_path

    loopback = is_loopback(host)
    if token is not None and not token.strip():
        raise GmvError(f"--token / {TOKEN_ENV} is empty; fix: give a secret, e.g. $(openssl rand -hex 16)")
    if not loopback:
        click.echo(f"warning: --host {host} exposes the store to every machine that can reach this address "
                   "(plain http: use a TLS proxy beyond a trusted network)", err=True)
        if token is None:
            raise GmvError(f"--host {host} needs a token; fix: set {TOKEN_ENV} (e.g. export {TOKEN_ENV}="
                           "$(openssl rand -hex 16)) or pass --token, or serve on 127.0.0.1")
    root = default_store_path(store)
    app = create_app(Settings(store=root, token=token, loopback_only=token is None,
                              extra_hosts=(host,) if loopback else (), max_upload_bytes=int(max_upload_mb * 1e6),
                              sql_timeout=sql_timeout, sql_memory_limit=sql_memory_limit, match_wait=match_wait,
                              device=device, hold_s=HOLD_S, warm_up=True))
    sock = bind(host, port)
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"gmv serve: store {root.absolute()} read-only at http://{shown}:{sock.getsockname()[1]}/ "
               f"(Ctrl-C stops it)")
    if token is not None:
        click.echo("requests need the token: `Authorization: Bearer …` for scripts, or log in once at /login")
    sys.stdout.flush()  # whoever started us (a script, a test) reads the address now, not at exit
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, server_header=False))
    server.run(sockets=[sock])
