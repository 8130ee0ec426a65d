"""`slatestream replay`: a FINN.no file the contract cannot carry (a slate over 1,000 items) or
with no events is one error line before the broker is touched; a successful replay prints no
kafka-python warning; a broker failure mid-replay is one line. No broker needed (fakes)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from models.datasets import DatasetError, SlateData, npz_bytes
from streams import broker, cli
from streams.replay import MAX_SLATE_ITEMS, check_finn, finn_events


@pytest.fixture(autouse=True)
def _env(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """No SLATESTREAM_* setting of the shell leaks in; the broker is a closed port."""
    monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:1")


def _arrays(u: int, t: int, k: int, length: int | None = None) -> dict[str, np.ndarray]:
    return {
        "slate": np.arange(2, 2 + u * t * k).reshape(u, t, k) if u * t else np.zeros((u, t, k)),
        "click": np.full((u, t), 1),
        "click_idx": np.zeros((u, t), int),
        "slate_lengths": np.full((u, t), k if length is None else length),
        "interaction_type": np.ones((u, t), int),
    }


def _finn(tmp: Path, arrays: dict[str, np.ndarray]) -> Path:
    path = tmp / "data.npz"
    path.write_bytes(npz_bytes(**arrays))
    return path


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if the command reaches the broker (it must stop before)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the broker must not be asked for a bad file")

    monkeypatch.setattr(broker, "check_broker", refuse)
    monkeypatch.setattr(broker, "ensure_topics", refuse)


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.timeout(30)
@pytest.mark.usefixtures("no_broker")
@pytest.mark.parametrize(
    "arrays, fragment",
    [
        (_arrays(2, 2, MAX_SLATE_ITEMS + 1), "has a slate of 1001 items; the event contract"),
        (_arrays(0, 0, 5), "holds no slates"),
        (_arrays(2, 2, 5, length=0), "holds no slates"),
    ],
)
def test_unpublishable_or_empty_finn_file_is_one_line_before_the_broker(
    arrays: dict[str, np.ndarray], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _finn(tmp_path, arrays)
    code, out, err = _main(["replay", "--dataset", "finn-slates", str(path)], capsys)
    assert code == 2, err
    assert err.startswith("slatestream: error: --dataset finn-slates: ") and fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err and out == ""


def test_check_finn_allows_the_limit_and_finn_events_checks_eagerly() -> None:
    ok = SlateData(**_arrays(1, 1, MAX_SLATE_ITEMS))  # type: ignore[arg-type]
    check_finn(ok)
    wide = SlateData(**_arrays(1, 1, MAX_SLATE_ITEMS + 1))  # type: ignore[arg-type]
    with pytest.raises(DatasetError, match="at most 1000"):
        finn_events(wide)  # raised at the call, not when the stream is first read


class _FakeProducer:
    """Stands in for kafka-python's producer: warns as it does for acks=1, records sends."""

    instances: ClassVar[list[_FakeProducer]] = []
    fail_send = False

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.sent: list[tuple[str, bytes]] = []
        if config.get("enable_idempotence") is not False:
            logging.getLogger("kafka.producer.kafka").warning("Idempotence will be disabled")
        logging.getLogger("kafka.conn").warning("some connection chatter")
        _FakeProducer.instances.append(self)

    def send(self, topic: str, value: bytes, key: bytes) -> None:
        if _FakeProducer.fail_send:
            from kafka.errors import KafkaTimeoutError

            raise KafkaTimeoutError("Failed to update metadata after 60.0 secs.")
        self.sent.append((topic, value))

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def fake_kafka(monkeypatch: pytest.MonkeyPatch) -> type[_FakeProducer]:
    import kafka

    monkeypatch.setattr(broker, "check_broker", lambda settings: None)
    monkeypatch.setattr(broker, "ensure_topics", lambda settings: None)
    monkeypatch.setattr(kafka, "KafkaProducer", _FakeProducer)
    monkeypatch.setattr(logging.getLogger("kafka"), "level", logging.NOTSET)
    _FakeProducer.instances = []
    _FakeProducer.fail_send = False
    return _FakeProducer


@pytest.mark.timeout(30)
def test_successful_replay_shows_no_kafka_warning(
    fake_kafka: type[_FakeProducer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = _finn(tmp_path, _arrays(2, 3, 4))
    argv = ["replay", "--dataset", "finn-slates", str(path), "--rate", "0"]
    code, out, err = _main(argv, capsys)
    assert code == 0, err
    assert out.startswith("replayed 6 events")
    assert [r for r in caplog.records if r.name.startswith("kafka")] == []
    (producer,) = fake_kafka.instances
    assert producer.config["enable_idempotence"] is False and len(producer.sent) == 6


@pytest.mark.timeout(30)
def test_broker_failure_during_replay_is_one_line(
    fake_kafka: type[_FakeProducer], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_kafka.fail_send = True
    path = _finn(tmp_path, _arrays(2, 3, 4))
    code, _, err = _main(["replay", "--dataset", "finn-slates", str(path)], capsys)
    assert code == 2
    assert err.startswith("slatestream: error: replay stopped after 0 events: Kafka at ")
    assert err.count("\n") == 1 and "Traceback" not in err
