"""Shared fixtures: a real Kafka broker and Redis server for integration/e2e tests.

Where they come from, first match wins:
1. `SLATESTREAM_TEST_KAFKA_BOOTSTRAP` + `SLATESTREAM_TEST_REDIS_URL` (an existing stack);
2. testcontainers, when a Docker engine answers;
3. the project's own launcher (`deploy.stack`), in a temporary state dir — the CI path. Its
   broker also has a SASL_SSL listener (`Services.secure`) for the security tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Services:
    """Addresses of the real broker and Redis the tests talk to."""

    kafka_bootstrap: str
    redis_url: str
    # SLATESTREAM_* settings (without the prefix) of a SASL_SSL listener on the same broker;
    # None where the broker came from elsewhere
    secure: dict[str, str] | None = None


def _docker_engine() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """A real Kafka broker and Redis server for the whole session."""
    kafka = os.environ.get("SLATESTREAM_TEST_KAFKA_BOOTSTRAP")
    redis_url = os.environ.get("SLATESTREAM_TEST_REDIS_URL")
    if kafka and redis_url:
        yield Services(kafka, redis_url)
        return
    if os.environ.get("SLATESTREAM_TEST_CONTAINERS", "auto") != "off" and _docker_engine():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.redis import RedisContainer

        with KafkaContainer().with_kraft() as k, RedisContainer() as r:
            host, port = r.get_container_host_ip(), r.get_exposed_port(r.port)
            yield Services(k.get_bootstrap_server(), f"redis://{host}:{port}/0")
        return
    from deploy import stack

    # jars are cached in the shared state dir; data lives in a per-session temp dir
    shared = stack.default_state_dir()
    jars = stack.ensure_kafka_jars(shared)
    state_dir = tmp_path_factory.mktemp("stack")
    (state_dir / jars.name).symlink_to(jars)
    state = stack.up(state_dir, secure=True)
    try:
        yield Services(state.kafka_bootstrap, state.redis_url, state.secure_env())
    finally:
        stack.down(state_dir)


@pytest.fixture
def uid() -> str:
    """A unique suffix for topic, group and key names of one test."""
    return uuid.uuid4().hex[:12]


@pytest.fixture
def topic_prefix(uid: str) -> str:
    """A unique topic prefix per test, so tests never see each other's records."""
    return f"t{uid}"


@pytest.fixture
def cli_env(services: Services, topic_prefix: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process `slatestream` commands see the test broker and prefix and no SLATESTREAM_*
    setting of the shell."""
    for key in [k for k in os.environ if k.startswith("SLATESTREAM_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", services.kafka_bootstrap)
    monkeypatch.setenv("SLATESTREAM_TOPIC_PREFIX", topic_prefix)


@pytest.fixture
def redis_client(services: Services) -> Iterator[object]:
    """A redis-py client on the test Redis, on a db flushed before the test."""
    import redis

    client = redis.Redis.from_url(services.redis_url)
    yield client
    client.close()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A private state dir (registry, caches) per test."""
    d = tmp_path / "state"
    d.mkdir()
    return d
