"""`slatestream demo` refuses, in one line and before it loads or starts anything: a negative
seed, a report directory it cannot write, Kafka mode without a shared Redis store (or with
one that does not answer), and `--stack local` next to a different SLATESTREAM_KAFKA_BOOTSTRAP."""

from __future__ import annotations

import argparse
import socket
import tempfile
from pathlib import Path

import pytest

from streams import cli
from streams.commands import demo, worker

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _no_run(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """No SLATESTREAM_* setting of the shell leaks in; the demo must never start its run."""
    from deploy import stack
    from streams.demo.world import World

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the demo must not start here")

    monkeypatch.setattr(World, "movielens", refuse)
    monkeypatch.setattr(stack, "up", refuse)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str], *frags: str) -> str:
    capsys.readouterr()
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("slatestream: error: ") and err.count("\n") == 1, err
    for frag in frags:
        assert frag in err, err
    return err


def test_negative_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["demo", "--out", str(tmp_path / "r"), "--seed", "-1"]
    _one_line_error(argv, capsys, "--seed must be >= 0")


def test_out_below_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "f").write_text("")
    argv = ["demo", "--out", str(tmp_path / "f" / "report")]
    _one_line_error(argv, capsys, "--out", "is not a directory")


def test_out_that_refuses_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A read-only directory (chmod does not stop root, so the write itself is refused)."""

    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    argv = ["demo", "--out", str(tmp_path / "report")]
    _one_line_error(argv, capsys, "--out", "Permission denied")


def test_the_out_check_leaves_nothing_behind(tmp_path: Path) -> None:
    from streams.outputs import check_writable_dir

    out = tmp_path / "a" / "b"
    check_writable_dir(out, "--out")  # not made yet: its nearest existing parent is probed
    assert list(tmp_path.iterdir()) == []
    out.mkdir(parents=True)
    check_writable_dir(out, "--out")
    assert list(out.iterdir()) == []


def test_kafka_mode_without_redis(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{_closed_port()}")
    argv = ["demo", "--out", str(tmp_path / "r"), "--no-progress"]
    _one_line_error(argv, capsys, "SLATESTREAM_REDIS_URL: not set")
    monkeypatch.setenv("SLATESTREAM_STORE_URL", "memory://")  # explicit: still not shared
    _one_line_error(argv, capsys, "SLATESTREAM_REDIS_URL: not set")


def test_kafka_mode_with_a_redis_that_does_not_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("SLATESTREAM_REDIS_URL", f"redis://127.0.0.1:{_closed_port()}/0")
    monkeypatch.setattr(worker, "STORE_PING_S", 1.0)
    argv = ["demo", "--out", str(tmp_path / "r"), "--no-progress"]
    _one_line_error(argv, capsys, "SLATESTREAM_REDIS_URL", "does not answer")


def test_stack_local_with_another_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from deploy import stack

    monkeypatch.setattr(stack, "read_state", lambda state_dir=None: None)
    monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", "broker.example:9092")
    monkeypatch.setenv("SLATESTREAM_REDIS_URL", "redis://127.0.0.1:1/0")
    argv = ["demo", "--out", str(tmp_path / "r"), "--stack", "local"]
    _one_line_error(argv, capsys, "--stack local conflicts", "broker.example:9092")


def test_stack_local_with_the_local_stacks_own_exports(monkeypatch: pytest.MonkeyPatch) -> None:
    """`eval "$(slatestream stack up)"` then `demo --stack local`: the same broker, accepted."""
    from deploy import stack

    state = stack.StackState("127.0.0.1:9092", "redis://127.0.0.1:6379/0", 10, 11, "/x")
    monkeypatch.setattr(stack, "read_state", lambda state_dir=None: state)
    monkeypatch.setattr(stack, "status", lambda state_dir=None: {"kafka": True, "redis": True})
    args = argparse.Namespace(stack="local")
    demo._check_stack_flag(args, "127.0.0.1:9092")
    with pytest.raises(Exception, match="conflicts"):
        demo._check_stack_flag(args, "127.0.0.1:9093")
