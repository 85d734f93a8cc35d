"""A Qdrant server that cannot be reached, refuses the key, or goes away mid-command: one
line naming the URL, what failed and the fix; never a traceback, never the key."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from cli_helpers import run as run_cli
from click.testing import CliRunner

from gmv_store.cli import cli


def run(*args, code=1, env=None):
    """Most commands here fail: exit status 1 unless told."""
    return run_cli(*args, code=code, env=env)


class FakeQdrant(BaseHTTPRequestHandler):
    """Just enough of Qdrant's REST API for `gmv init`; `mode` decides what else happens."""

    mode = "ok"
    collections: set = set()
    seen_keys: list = []

    def log_message(self, *a):
        pass

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        type(self).seen_keys.append(self.headers.get("api-key"))
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.mode == "401":
            return self._send(401, {"status": {"error": "Must provide an API key or an Authorization bearer token"}})
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[0] == "collections" and len(parts) == 3 and parts[2] == "exists":
            return self._send(200, {"result": {"exists": parts[1] in self.collections}, "status": "ok", "time": 0})
        if parts[0] == "collections" and len(parts) == 2 and self.command == "PUT":
            self.collections.add(parts[1])
            return self._send(200, {"result": True, "status": "ok", "time": 0})
        # everything else: the server is going away
        return self._send(503, {"status": {"error": "service unavailable"}})

    do_GET = do_PUT = do_POST = do_DELETE = _handle


@pytest.fixture
def fake_server():
    FakeQdrant.collections = set()
    FakeQdrant.seen_keys = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), FakeQdrant)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()


def test_unreachable_server_one_line(tmp_path):
    out = run("init", "--store", tmp_path / "s", "--qdrant-url", "http://127.0.0.1:9")
    assert out.count("\n") == 1 and out.startswith("Error: Qdrant server http://127.0.0.1:9: connection refused")
    assert "fix:" in out and "Traceback" not in out
    assert not (tmp_path / "s").exists()  # nothing half-made


def test_unauthorised_names_the_key_variable_never_the_key(tmp_path, fake_server):
    FakeQdrant.mode = "401"
    secret = "s3cr3t-key-value"
    out = run("init", "--store", tmp_path / "s", "--qdrant-url", fake_server, env={"GMV_QDRANT_API_KEY": secret})
    assert out.count("\n") == 1 and "HTTP 401" in out and "check GMV_QDRANT_API_KEY" in out
    assert secret not in out and secret in FakeQdrant.seen_keys  # sent to the server, never printed
    assert not (tmp_path / "s").exists() or not (tmp_path / "s" / "store.json").exists()
    FakeQdrant.mode = "ok"


def test_server_going_away_mid_command_retries_then_one_line(tmp_path, fake_server, mnist_small):
    FakeQdrant.mode = "ok"
    store = tmp_path / "s"
    run("init", "--store", store, "--qdrant-url", fake_server, code=0)
    np.savez(tmp_path / "t.npz", images=mnist_small[0][:20])
    n_before = len(FakeQdrant.seen_keys)
    out = run("ingest", tmp_path / "t.npz", "--store", store, env={"GMV_QDRANT_RETRIES": "2"})
    assert out.count("\n") == 1 and "HTTP 503" in out and "gave up after 3 attempts" in out, out
    assert len(FakeQdrant.seen_keys) - n_before >= 3  # retried before giving up
    # nothing half-written: the ledger holds no training rows
    from gmv_store.ledger import open_ledger_readonly

    con = open_ledger_readonly(store)
    try:
        assert con.execute("SELECT count(*) FROM training_images").fetchone()[0] == 0
    finally:
        con.close()


def test_debug_switch_shows_the_traceback(tmp_path):
    r = CliRunner().invoke(cli, ["init", "--store", str(tmp_path / "s"), "--qdrant-url", "http://127.0.0.1:9"],
                           env={"GMV_DEBUG": "1"})
    assert r.exit_code != 0 and r.exception is not None and type(r.exception).__name__ == "VectorStoreUnavailable"
