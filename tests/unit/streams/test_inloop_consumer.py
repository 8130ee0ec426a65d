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
from streams.consumer_fixes import FETCH_BATCH_BYTES
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
def test_the_broker_holds_a_fetch_as_configured_for_scorers_and_batching_workers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Faust's 1.5 s hold stalled a draining worker ~1 s whenever the fetch in flight held
    only partitions at their end; both consumer kinds take the settings. A worker nobody
    waits on (`batch_fetches`) has the broker wait for 1 MB or `fetch_batch_ms`."""
    monkeypatch.setenv("SLATESTREAM_STATE_DIR", str(tmp_path))
    cases: list[tuple[dict[str, str], bool, tuple[int, int]]] = [
        ({}, False, (100, 1)),
        ({"SLATESTREAM_FETCH_MAX_WAIT_MS": "25"}, False, (25, 1)),
        (
            {"SLATESTREAM_CONSUMER_THREAD": "true", "SLATESTREAM_FETCH_MAX_WAIT_MS": "40"},
            False,
            (40, 1),
        ),
        ({}, True, (20, FETCH_BATCH_BYTES)),
        ({"SLATESTREAM_FETCH_BATCH_MS": "7"}, True, (7, FETCH_BATCH_BYTES)),
        ({"SLATESTREAM_CONSUMER_THREAD": "true"}, True, (20, FETCH_BATCH_BYTES)),
        # 0: a batching worker fetches as a scorer does
        ({"SLATESTREAM_FETCH_BATCH_MS": "0", "SLATESTREAM_FETCH_MAX_WAIT_MS": "30"}, True, (30, 1)),
    ]
    names = (
        "SLATESTREAM_CONSUMER_THREAD",
        "SLATESTREAM_FETCH_MAX_WAIT_MS",
        "SLATESTREAM_FETCH_BATCH_MS",
    )
    for i, (env, batch, expected) in enumerate(cases):
        for name in names:
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings = load_settings(kafka_bootstrap="127.0.0.1:9")
        app = create_app(settings, group=f"fetch{i}", batch_fetches=batch)
        thread = app.consumer._thread

        async def create(thread: AIOKafkaConsumerThread = thread) -> object:
            return thread._create_consumer(asyncio.get_running_loop())  # never started

        kafka_consumer = app.loop.run_until_complete(create())
        got = (kafka_consumer._fetch_max_wait_ms, kafka_consumer._fetch_min_bytes)  # type: ignore[attr-defined]
        assert got == expected, (env, batch)
