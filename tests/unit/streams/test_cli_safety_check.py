"""`slatestream check` pings the feature store it would use (SLATESTREAM_STORE_URL), not only
SLATESTREAM_REDIS_URL: a store that does not answer is one line naming the variable."""

from __future__ import annotations

import socket

import pytest

from streams import cli

pytestmark = pytest.mark.timeout(60)


pytestmark = [pytestmark, pytest.mark.usefixtures("clean_env")]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "url",
    [
        "redis://nohost.invalid/0",
        "redis://127.0.0.1:{port}/0?namespace=ss",  # our own query parameter is no problem
        "redis://:s3cret@127.0.0.1:{port}/0",
    ],
)
def test_store_url_that_does_not_answer(
    url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLATESTREAM_STORE_URL", url.format(port=_closed_port()))
    assert cli.main(["check"]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("slatestream: error: SLATESTREAM_STORE_URL: the feature store at ")
    assert "does not answer after 3 s" in err, err
    assert err.count("\n") == 1 and "s3cret" not in err, err
    assert out == ""


def test_memory_store_is_not_pinged(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check"]) == 0
    assert "store=memory://" in capsys.readouterr().out


def test_features_show_without_a_store_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    """An in-process store would be a fresh, empty one: showing it would say nothing true."""
    assert cli.main(["features", "show", "--user", "u1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "SLATESTREAM_REDIS_URL" in err[0], err
