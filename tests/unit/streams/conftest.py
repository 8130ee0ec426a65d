"""Fixtures the CLI tests share: a clean SLATESTREAM_* environment, a directory nobody may
write in, and a tiny HTTP server answering every GET with one body."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SLATESTREAM_* setting of the shell leaks in (the data-set cache stays); state goes
    to the test's tmp dir."""
    for key in list(os.environ):
        if key.startswith("SLATESTREAM_") and key != "SLATESTREAM_DATA_DIR":
            monkeypatch.delenv(key)
    monkeypatch.setenv("SLATESTREAM_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory nobody may write in: mode 555 for a normal user; root ignores modes, so
    there the read-only /sys stands in."""
    if os.geteuid() == 0:
        if not Path("/sys").is_dir():
            pytest.skip("running as root without /sys: no unwritable directory to test with")
        yield Path("/sys")
        return
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        yield d
    finally:
        d.chmod(0o755)


@pytest.fixture
def http_server() -> Iterator[Callable[[bytes], str]]:
    """Start servers that answer every GET with `body`; returns their URLs; all shut down
    after the test."""
    servers: list[http.server.HTTPServer] = []

    def start(body: bytes) -> str:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
