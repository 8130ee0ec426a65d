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
