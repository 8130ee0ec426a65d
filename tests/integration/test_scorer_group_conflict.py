"""A scorer started with another --role list joins another consumer group, which would
receive and answer every request a second time: the worker refuses to start, naming the
group already answering. Once that group's scorer is gone, nothing is reported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.bench_ingest import sigterm_and_wait, start_worker, stop_worker, worker_env
from streams.broker import scorer_groups
from streams.kafka_access import KafkaAccess
from tests.integration.private_redis import free_port
from tests.integration.worker_probe import wait_for_probe

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(240)
def test_a_second_scorer_group_is_refused(
    services: Any, topic_prefix: str, uid: str, tmp_path: Path
) -> None:
    port = free_port()
    env = worker_env(
        services,
        topic_prefix,
        f"g{uid}",
        str(tmp_path / "a"),
        SLATESTREAM_METRICS_PORT=str(port),
        SLATESTREAM_SESSION_TIMEOUT_S="6",
    )
    log = tmp_path / "scorer.log"
    first = start_worker(env, "scorer", log)
    access = KafkaAccess(services.kafka_bootstrap)
    requests = f"{topic_prefix}.requests"
    try:
        wait_for_probe(f"http://127.0.0.1:{port}/readyz", 200, 120, log)
        assert scorer_groups(access, topic_prefix, requests, "") == [f"{topic_prefix}-scorer"]
        second = subprocess.run(
            [sys.executable, "-m", "streams", "worker", "--role", "features,scorer"],
            env={**env, "SLATESTREAM_METRICS_PORT": "0"},
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert second.returncode == 2, second.stderr[-2000:]
        err = [line for line in second.stderr.splitlines() if "error" in line]
        assert len(err) == 1 and f"{topic_prefix}-scorer already answer {requests}" in err[0]
        # its own group is not a conflict, and other prefixes are not looked at
        assert scorer_groups(access, topic_prefix, requests, f"{topic_prefix}-scorer") == []
        assert scorer_groups(access, f"x{topic_prefix}", requests, "") == []
        assert sigterm_and_wait(first, 30) is not None
        assert scorer_groups(access, topic_prefix, requests, "") == []  # left the group
    finally:
        stop_worker(first)
