"""`features rebuild --force` checks the log before it clears the store: a broker that is
down, or an interactions topic that is absent or empty, leaves the store untouched."""

from __future__ import annotations

import socket

import pytest

from features import ItemUpdate, open_store
from streams.commands import features as cmd
from streams.config import Settings
from streams.errors import BrokerUnavailable, SlatestreamError

pytestmark = pytest.mark.timeout(60)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _filled_store():  # type: ignore[no-untyped-def]
    store = open_store("memory://")
    await store.apply_many([ItemUpdate("e1", "i1", 1, ("a",))])
    assert not await store.is_empty()
    return store


async def test_broker_down_leaves_the_store_untouched() -> None:
    store = await _filled_store()
    settings = Settings(kafka_bootstrap=f"127.0.0.1:{_closed_port()}")
    with pytest.raises(BrokerUnavailable, match="SLATESTREAM_KAFKA_BOOTSTRAP"):
        await cmd.rebuild(settings, store, force=True)
    assert not await store.is_empty()


@pytest.mark.parametrize(
    ("held", "message"),
    [
        ({}, "does not exist"),  # a mistyped prefix: no such topic
        ({0: (0, 0), 1: (0, 0)}, "holds no records"),
        ({0: (7, 7)}, "holds no records"),  # retention deleted everything
    ],
)
async def test_absent_or_empty_interactions_topic_leaves_the_store_untouched(
    held: dict[int, tuple[int, int]], message: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(kafka_bootstrap="127.0.0.1:9", topic_prefix="typo")

    def fake_held(s: Settings) -> dict[str, dict[int, tuple[int, int]]]:
        return {"typo.items": {}, "typo.impressions": {}, "typo.interactions": held}

    monkeypatch.setattr(cmd, "_held", fake_held)
    store = await _filled_store()
    with pytest.raises(SlatestreamError, match=message) as info:
        await cmd.rebuild(settings, store, force=True)
    assert "typo.interactions" in str(info.value) and "not touched" in str(info.value)
    assert not await store.is_empty()


def test_cli_broker_down_is_one_line_and_store_untouched(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The CLI path (a redis store would be needed; the store's clear must never run)."""
    from streams import cli

    cleared: list[bool] = []

    class Store:
        async def is_empty(self) -> bool:
            return False

        async def clear(self) -> None:
            cleared.append(True)

        async def close(self) -> None:
            pass

    monkeypatch.setattr(cmd, "open_store", lambda url, cfg=None: Store())
    monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", f"127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("SLATESTREAM_STORE_URL", "redis://127.0.0.1:1/0")
    assert cli.main(["features", "rebuild", "--force"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("slatestream: error: SLATESTREAM_KAFKA_BOOTSTRAP"), err
    assert err.count("\n") == 1
    assert not cleared
