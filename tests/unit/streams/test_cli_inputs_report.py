"""`slatestream report`: a server that answers "success" with something other than a time
series, and an --out directory that cannot be written, are one error line (exit 2), the
latter before Prometheus is asked. A fake HTTP server stands in for Prometheus."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams import cli
from streams.commands import report


def _http_server(body: bytes) -> tuple[http.server.HTTPServer, str]:
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
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def _ok(data: object) -> bytes:
    return json.dumps({"status": "success", "data": data}).encode()


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "body, fragment",
    [
        (_ok({"resultType": "scalar", "result": [1764000000, "1"]}), "a 'scalar' result"),
        (_ok({"resultType": "string", "result": [1764000000, "x"]}), "a 'string' result"),
        (_ok({"resultType": "matrix", "result": [{"metric": {}}]}), "has no 'values'"),
        (_ok({"resultType": "matrix", "result": [{"values": []}]}), "has no 'metric'"),
        (_ok({"result": {"a": 1}}), "not a list"),
        (_ok({"result": [7]}), "not an object"),
        (_ok({"result": [{"metric": {}, "values": [[1, "x"]]}]}), "could not convert"),
        (_ok({"result": [{"metric": {}, "values": [[1]]}]}), "not a [time, value] pair"),
        (_ok({"result": [{"metric": {}, "values": 3}]}), "'values' is not a list"),
    ],
)
def test_success_without_a_time_series_is_one_line(
    body: bytes, fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server, url = _http_server(body)
    try:
        code, _, err = _run(["report", "--prometheus", url, "--out", str(tmp_path / "r")], capsys)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 2, err
    assert err.startswith("slatestream: error: --prometheus: ") and fragment in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_real_matrix_still_parses() -> None:
    body = {"metric": {"policy": "ts"}, "values": [[10, "0.5"], [20, "NaN"], [30, "+Inf"]]}
    assert report._matrix([body]) == [({"policy": "ts"}, [(10.0, 0.5)])]


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


@pytest.mark.timeout(30)
def test_unwritable_out_is_one_line_before_prometheus_is_asked(
    unwritable_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("Prometheus must not be queried with an unwritable --out")

    monkeypatch.setattr(report, "fetch_series", refuse)
    out = unwritable_dir / "slatestream-report"
    code, _, err = _run(["report", "--prometheus", "http://127.0.0.1:1", "--out", str(out)], capsys)
    assert code == 2
    assert err.startswith(f"slatestream: error: --out {out}: cannot write in {unwritable_dir}")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_out_under_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("")
    with pytest.raises(report.SlatestreamError, match="is not a directory"):
        report.check_writable_dir(tmp_path / "f" / "sub", "--out")
    report.check_writable_dir(tmp_path / "new" / "deeper", "--out")  # made later: fine
