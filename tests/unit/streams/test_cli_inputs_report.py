"""`slatestream report`: a server that answers "success" with something other than a time
series, and an --out directory that cannot be written, are one error line (exit 2), the
latter before Prometheus is asked. A fake HTTP server stands in for Prometheus."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from streams import cli
from streams.commands import report
from streams.outputs import check_writable_dir


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
    body: bytes,
    fragment: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    http_server: Callable[[bytes], str],
) -> None:
    argv = ["report", "--prometheus", http_server(body), "--out", str(tmp_path / "r")]
    code, _, err = _run(argv, capsys)
    assert code == 2, err
    assert err.startswith("slatestream: error: --prometheus: ") and fragment in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_a_real_matrix_still_parses() -> None:
    body = {"metric": {"policy": "ts"}, "values": [[10, "0.5"], [20, "NaN"], [30, "+Inf"]]}
    assert report._matrix([body]) == [({"policy": "ts"}, [(10.0, 0.5)])]


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
        check_writable_dir(tmp_path / "f" / "sub", "--out")
    check_writable_dir(tmp_path / "new" / "deeper", "--out")  # made later: fine
