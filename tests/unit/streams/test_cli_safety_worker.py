"""A worker refuses to start when its features would be lost (an in-process memory store
behind a real broker) or when its feature store does not answer: one line, exit code 2,
before the broker is even asked. No Kafka or Redis is needed: closed ports stand in."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from streams import cli
from streams.commands import worker
from streams.config import Settings, redacted
from streams.errors import ConfigError
from streams.roles import ROLES

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SLATESTREAM_* setting of the shell leaks in; the broker is a closed port that must
    never be reached (the store errors come first)."""
    for key in list(os.environ):
        if key.startswith("SLATESTREAM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("SLATESTREAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{_closed_port()}")

    def no_broker(settings: Settings, timeout_s: float = 5.0) -> None:
        raise AssertionError("the store must be checked before the broker")

    monkeypatch.setattr(worker, "check_broker", no_broker)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _one_line_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("slatestream: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize("roles", ["features", "joiner", "scorer", "features,joiner", "all"])
def test_store_roles_refuse_an_implicit_memory_store(
    roles: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = _one_line_error(["worker", "--role", roles], capsys)
    assert "SLATESTREAM_REDIS_URL" in err and "SLATESTREAM_STORE_URL" in err, err


@pytest.mark.parametrize("roles", ["features", "scorer", "features,scorer", "joiner,trainer"])
def test_explicit_memory_store_is_refused_for_part_of_the_roles(
    roles: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLATESTREAM_STORE_URL", "memory://")
    err = _one_line_error(["worker", "--role", roles], capsys)
    assert "memory://" in err and "--role all" in err, err


def test_explicit_memory_store_with_every_store_role_and_the_trainer_alone_pass() -> None:
    boot = "127.0.0.1:9"
    memory = Settings(kafka_bootstrap=boot, store_url="memory://")
    worker.require_shared_store(memory, ["features", "joiner", "trainer", "scorer"])
    worker.require_shared_store(memory, ["features", "joiner", "scorer"])
    worker.require_shared_store(Settings(kafka_bootstrap=boot), ["trainer"])
    worker.ping_store(Settings(kafka_bootstrap=boot), ["trainer"])  # no store: nothing to ping


def test_an_unreachable_store_is_one_line_after_a_bounded_wait(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://:s3cret@127.0.0.1:{_closed_port()}/0"
    monkeypatch.setenv("SLATESTREAM_REDIS_URL", url)
    monkeypatch.setattr(worker, "STORE_PING_S", 1.5)
    t0 = time.monotonic()
    err = _one_line_error(["worker", "--role", "features"], capsys)
    assert time.monotonic() - t0 < 10
    assert "SLATESTREAM_REDIS_URL" in err and "does not answer" in err, err
    assert "127.0.0.1" in err and "s3cret" not in err, err  # the URL, without its password


def test_an_unresolvable_store_host_names_the_store_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SLATESTREAM_REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("SLATESTREAM_STORE_URL", "redis://nohost.invalid:6379/0")
    monkeypatch.setattr(worker, "STORE_PING_S", 1.0)
    err = _one_line_error(["worker", "--role", "joiner"], capsys)
    assert "SLATESTREAM_STORE_URL" in err and "nohost.invalid" in err, err


def test_ping_store_waits_for_a_store_that_comes_up(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis still starting is waited for, not refused at the first failed ping."""
    from features.memory import MemoryFeatureStore
    from streams.services import feature_service

    calls: list[int] = []

    class Starting(MemoryFeatureStore):
        async def ping(self) -> bool:
            calls.append(1)
            if len(calls) < 3:
                raise ConnectionError("connection refused")
            return True

    monkeypatch.setattr(feature_service, "open_feature_store", lambda s: Starting())
    settings = Settings(kafka_bootstrap="127.0.0.1:9", redis_url="redis://127.0.0.1:1/0")
    worker.ping_store(settings, ["features"], timeout_s=5.0)
    assert len(calls) == 3


def test_redacted_hides_only_the_password() -> None:
    assert redacted("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redacted("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert redacted("redis://h:1/0?namespace=x") == "redis://h:1/0?namespace=x"


def test_memory_store_with_all_roles_is_only_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9", store_url="memory://")
    worker.require_shared_store(settings, list(ROLES))
    assert "lost when this process stops" in caplog.text
    with pytest.raises(ConfigError):
        worker.require_shared_store(Settings(kafka_bootstrap="127.0.0.1:9"), list(ROLES))


@pytest.mark.parametrize(
    ("seen", "refused"),
    [([[]], False), ([["p-scorer"], []], False), ([["p-scorer"], ["p-scorer"]], True)],
)
def test_a_second_scorer_group_is_refused_only_if_it_stays(
    monkeypatch: pytest.MonkeyPatch, seen: list[list[str]], refused: bool
) -> None:
    """A conflict is checked again after a session timeout (a stopped scorer's membership
    lasts that long) and refused only if it is still there."""
    answers = iter(seen)
    calls: list[tuple[str, str, str]] = []

    def fake_groups(access: object, prefix: str, topic: str, exclude: str) -> list[str]:
        calls.append((prefix, topic, exclude))
        return next(answers)

    slept: list[float] = []
    monkeypatch.setattr("streams.broker.scorer_groups", fake_groups)
    monkeypatch.setattr(worker.time, "sleep", slept.append)
    settings = Settings(kafka_bootstrap="127.0.0.1:9", topic_prefix="p", session_timeout_s=6)
    if refused:
        with pytest.raises(ConfigError, match=r"p-scorer already answer p\.requests"):
            worker.refuse_second_scorer_group(settings, "features-scorer")
    else:
        worker.refuse_second_scorer_group(settings, "features-scorer")
    assert calls[0] == ("p", "p.requests", "p-features-scorer")
    assert len(calls) == len(seen) and slept == [8.0] * (len(seen) - 1)


async def test_a_running_scorer_keeps_checking_for_other_groups(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Two scorers started at the same moment both pass the start-up check: the periodic
    check sets the gauge the SlatestreamScorerGroupsConflict alert reads, and logs."""
    from streams.metrics import SCORER

    found: list[object] = [["p-scorer"]]

    def fake_groups(access: object, prefix: str, topic: str, exclude: str) -> list[str]:
        answer = found[0]
        if isinstance(answer, Exception):
            raise answer
        assert (prefix, topic, exclude) == ("p", "p.requests", "p-features-scorer")
        return list(answer)  # type: ignore[call-overload]

    monkeypatch.setattr("streams.broker.scorer_groups", fake_groups)
    settings = Settings(kafka_bootstrap="127.0.0.1:9", topic_prefix="p")
    gauge = SCORER.other_scorer_groups
    assert await worker.check_scorer_groups(settings, "features-scorer") == ["p-scorer"]
    assert gauge._value.get() == 1
    assert any("p-scorer also answer p.requests" in r.getMessage() for r in caplog.records)
    found[0] = RuntimeError("broker down")
    assert await worker.check_scorer_groups(settings, "features-scorer") == []
    assert gauge._value.get() == 1  # unknown: the last answer stands
    found[0] = []
    assert await worker.check_scorer_groups(settings, "features-scorer") == []
    assert gauge._value.get() == 0


def test_of_the_scorer_groups_the_first_by_name_serves() -> None:
    assert worker.yields_to("p-scorer", ["p-features-scorer"]) == "p-features-scorer"
    assert worker.yields_to("p-features-scorer", ["p-scorer"]) is None
    assert worker.yields_to("p-b-scorer", ["p-c-scorer", "p-a-scorer"]) == "p-a-scorer"
    assert worker.yields_to("p-scorer", []) is None


async def test_a_scorer_stops_only_for_a_first_group_found_twice_in_a_row(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Once is not enough (a stopped worker's membership lingers for a session timeout), nor
    twice with a clean check between; a later group than this one's never stops it."""
    first, later = ["p-features-scorer"], ["p-zz-scorer"]
    answers = iter([first, [], first, later, first, first])

    async def fake_check(settings: Settings, role_group: str) -> list[str]:
        return next(answers)

    slept: list[float] = []

    async def fake_sleep(s: float) -> None:
        slept.append(s)

    stopped: list[int] = []
    monkeypatch.setattr(worker, "check_scorer_groups", fake_check)
    settings = Settings(kafka_bootstrap="127.0.0.1:9", topic_prefix="p", scorer_group_check_s=1.0)
    await worker.watch_scorer_groups(settings, "scorer", fake_sleep, lambda: stopped.append(1))
    assert stopped == [1]
    # found, clean, found, a later group (not first: no), found, found -> stop at the 6th
    assert len(slept) == 6
    assert slept[0] == settings.session_timeout_s + 2.0  # at least a session timeout apart
    assert any("group p-features-scorer keeps answering" in r.getMessage() for r in caplog.records)
    assert next(answers, None) is None
