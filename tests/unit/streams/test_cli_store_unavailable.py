"""A CLI command whose Redis does not answer ends with one clear line and exit code 2."""

from __future__ import annotations

import socket

import pytest

from streams import cli

pytestmark = pytest.mark.timeout(60)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("argv", [["features", "show", "--popular", "5"], ["features", "rebuild"]])
def test_unreachable_store_is_one_line_and_exit_2(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLATESTREAM_STORE_URL", f"redis://127.0.0.1:{_closed_port()}/0")
    monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{_closed_port()}")
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("slatestream: error:") and "\n" not in err and "Traceback" not in err
