"""The Faust consumer fast path the feature worker relies on is installed by create_app."""

from __future__ import annotations

import pytest

from streams.app import _fast_drain_messages, create_app, install_fast_drain
from streams.config import Settings

pytestmark = pytest.mark.timeout(30)


def test_create_app_installs_the_fast_consumer_loop(tmp_path: object) -> None:
    from faust.transport.consumer import Consumer

    create_app(Settings(kafka_bootstrap="127.0.0.1:9", state_dir=tmp_path), group="t")
    assert Consumer._drain_messages is _fast_drain_messages
    assert install_fast_drain()  # idempotent


async def test_bind_handler_forwards_partition_revocations(tmp_path: object) -> None:
    from faust.types import TP

    from streams.app import bind_handler

    got: list[set[tuple[str, int]]] = []

    class Stateful:
        name = "stateful"
        topics = ("a.interactions",)

        async def handle(self, records: object) -> list[object]:
            return []

        async def on_partitions_revoked(self, tps: set[tuple[str, int]]) -> None:
            got.append(tps)

    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", state_dir=tmp_path), group="r")
    bind_handler(app, Stateful())  # type: ignore[arg-type]
    await app.on_partitions_revoked.send({TP("a.interactions", 2)})
    assert got == [{("a.interactions", 2)}]
