"""Faust's aiokafka consumer on the worker's loop: chosen by default, Faust's thread on
request, and calls made directly on the app's loop (no second loop, no thread)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import faust
import pytest
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

from streams.app import create_app
from streams.config import load_settings
from streams.inloop_consumer import InLoopConsumerThread

AppOf = Callable[[str], faust.App]


@pytest.fixture
def app_of(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AppOf:
    """A Faust app of group `name` on a closed port (nothing connects until it starts)."""
    monkeypatch.setenv("SLATESTREAM_STATE_DIR", str(tmp_path))
    return lambda name: create_app(load_settings(kafka_bootstrap="127.0.0.1:9"), group=name)


@pytest.mark.timeout(20)
def test_the_consumer_runs_on_the_apps_loop_unless_the_thread_is_asked_for(
    monkeypatch: pytest.MonkeyPatch, app_of: AppOf
) -> None:
    app = app_of("inloop")
    thread = app.consumer._thread
    assert isinstance(thread, InLoopConsumerThread)
    assert thread.thread_loop is app.loop is thread.parent_loop

    monkeypatch.setenv("SLATESTREAM_CONSUMER_THREAD", "true")
    app = app_of("threaded")
    thread = app.consumer._thread
    assert type(thread) is AIOKafkaConsumerThread
    assert thread.thread_loop is not app.loop  # Faust's own loop in its own thread

    monkeypatch.delenv("SLATESTREAM_CONSUMER_THREAD")
    app = app_of("again")
    assert isinstance(app.consumer._thread, InLoopConsumerThread)


@pytest.mark.timeout(20)
def test_calls_run_directly_on_the_calling_loop_and_thread(app_of: AppOf) -> None:
    app = app_of("calls")
    thread = app.consumer._thread
    seen: list[tuple[object, object]] = []

    def sync_call(x: int, *, y: int) -> int:
        seen.append((threading.current_thread(), asyncio.get_running_loop()))
        return x + y

    async def async_call(x: int) -> int:
        seen.append((threading.current_thread(), asyncio.get_running_loop()))
        await asyncio.sleep(0)
        return x * 2

    async def main() -> tuple[int, int, list[int]]:
        cast: list[int] = []

        async def record(v: int) -> None:
            cast.append(v)

        a = await thread.call_thread(sync_call, 1, y=2)
        b = await thread.call_thread(async_call, 5)
        await thread.cast_thread(record, 7)
        for _ in range(3):
            await asyncio.sleep(0)
        return a, b, cast

    loop = app.loop
    a, b, cast = loop.run_until_complete(main())
    assert (a, b, cast) == (3, 10, [7])
    assert seen == [(threading.main_thread(), loop)] * 2


@pytest.mark.timeout(20)
def test_the_broker_holds_a_fetch_at_most_the_configured_wait(
    monkeypatch: pytest.MonkeyPatch, app_of: AppOf
) -> None:
    """Faust's 1.5 s hold stalled a draining worker ~1 s whenever the fetch in flight held
    only partitions at their end; both consumer kinds take the setting."""
    for thread_env, wait_env, expected in (
        (None, None, 100),
        (None, "25", 25),
        ("true", "40", 40),
    ):
        if thread_env is None:
            monkeypatch.delenv("SLATESTREAM_CONSUMER_THREAD", raising=False)
        else:
            monkeypatch.setenv("SLATESTREAM_CONSUMER_THREAD", thread_env)
        if wait_env is None:
            monkeypatch.delenv("SLATESTREAM_FETCH_MAX_WAIT_MS", raising=False)
        else:
            monkeypatch.setenv("SLATESTREAM_FETCH_MAX_WAIT_MS", wait_env)
        app = app_of(f"wait{expected}")
        thread = app.consumer._thread

        async def create(thread: AIOKafkaConsumerThread = thread) -> object:
            return thread._create_consumer(asyncio.get_running_loop())  # never started

        kafka_consumer = app.loop.run_until_complete(create())
        assert kafka_consumer._fetch_max_wait_ms == expected  # type: ignore[attr-defined]
