"""CLI safety on the real broker and Redis: `features rebuild --force` leaves the store alone
unless the log holds interactions, and prints nothing on stderr when it succeeds."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from features import ItemUpdate, open_store

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]


def _env(services: Any, prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLATESTREAM_")}
    env["PYTHONPATH"] = str(ROOT)
    env.update(
        SLATESTREAM_KAFKA_BOOTSTRAP=services.kafka_bootstrap,
        SLATESTREAM_REDIS_URL=services.redis_url,
        SLATESTREAM_TOPIC_PREFIX=prefix,
    )
    env.update(extra)
    return env


def _cli(env: dict[str, str], *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def _store_is_empty(url: str, fill: bool = False) -> bool:
    async def go() -> bool:
        store = open_store(url)
        try:
            if fill:
                await store.apply_many([ItemUpdate("e1", "i1", 1, ("a",))])
            return await store.is_empty()
        finally:
            await store.close()

    return asyncio.run(go())


@pytest.mark.parametrize("topic", ["absent", "empty"])
def test_rebuild_force_leaves_the_store_alone_without_interactions(
    services: Any, topic_prefix: str, topic: str
) -> None:
    store = f"{services.redis_url}?namespace={topic_prefix}"
    assert not _store_is_empty(store, fill=True)
    if topic == "empty":
        admin = KafkaAdminClient(bootstrap_servers=services.kafka_bootstrap)
        try:
            admin.create_topics([NewTopic(f"{topic_prefix}.interactions", 2, 1)])
        finally:
            admin.close()
    proc = _cli(_env(services, topic_prefix), "features", "rebuild", "--store", store, "--force")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("slatestream: error: rebuild: topic"), lines
    assert "does not exist" in lines[0] if topic == "absent" else "holds no records" in lines[0]
    assert not _store_is_empty(store)  # untouched


def test_rebuild_force_says_what_it_reads_and_is_quiet_on_stderr(
    services: Any, topic_prefix: str
) -> None:
    store = f"{services.redis_url}?namespace={topic_prefix}"
    assert not _store_is_empty(store, fill=True)
    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap)
    now = int(time.time() * 1000)
    for i in range(12):
        ev: dict[str, object] = {"event_id": f"e{i}", "user_id": f"u{i % 3}", "ts": now}
        ev |= {"item_id": "i1", "type": "click"}
        producer.send(f"{topic_prefix}.interactions", json.dumps(ev).encode(), key=b"u")
    producer.flush()
    producer.close()
    proc = _cli(_env(services, topic_prefix), "features", "rebuild", "--store", store, "--force")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no kafka-python warnings
    assert f"12 {topic_prefix}.interactions" in proc.stdout
    assert ": 12 records, 12 applied" in proc.stdout


def test_worker_on_a_real_broker_refuses_a_memory_store(services: Any, topic_prefix: str) -> None:
    env = _env(services, topic_prefix)
    del env["SLATESTREAM_REDIS_URL"]
    proc = _cli(env, "worker", "--role", "features")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "SLATESTREAM_REDIS_URL / SLATESTREAM_STORE_URL" in lines[0]


def test_worker_with_an_unreachable_redis_gives_up_in_one_line(
    services: Any, topic_prefix: str
) -> None:
    env = _env(services, topic_prefix, SLATESTREAM_REDIS_URL="redis://nohost.invalid:6379/0")
    t0 = time.monotonic()
    proc = _cli(env, "worker", "--role", "features", timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - t0 < 45
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "redis://nohost.invalid:6379/0" in lines[0], lines
