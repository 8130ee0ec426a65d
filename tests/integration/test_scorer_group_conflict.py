"""A scorer started with another --role list joins another consumer group, which would
receive and answer every request a second time: the worker refuses to start, naming the
group already answering. Once that group's scorer is gone, nothing is reported."""

from __future__ import annotations

import subprocess
import sys
import time
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


@pytest.mark.timeout(300)
def test_of_two_scorer_groups_started_together_one_stops(
    services: Any, topic_prefix: str, uid: str, tmp_path: Path
) -> None:
    """Started at the same moment, both may pass the start-up check; the running check then
    stops every group but the first by name (exit 2). If one was up first, the other is
    refused at start (exit 2). Either way one group is left answering."""
    env = worker_env(
        services,
        topic_prefix,
        f"g{uid}",
        str(tmp_path / "a"),
        SLATESTREAM_METRICS_PORT="0",
        SLATESTREAM_SESSION_TIMEOUT_S="6",
        SLATESTREAM_SCORER_GROUP_CHECK_S="1",
    )
    logs = {"scorer": tmp_path / "a.log", "features,scorer": tmp_path / "b.log"}
    procs = {
        "scorer": start_worker(env, "scorer", logs["scorer"]),
        "features,scorer": start_worker(
            {**env, "SLATESTREAM_STATE_DIR": str(tmp_path / "b")},
            "features,scorer",
            logs["features,scorer"],
        ),
    }
    access = KafkaAccess(services.kafka_bootstrap)
    requests = f"{topic_prefix}.requests"
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
        stopped = [r for r, p in procs.items() if p.poll() is not None]
        assert len(stopped) == 1, {r: logs[r].read_text()[-2000:] for r in procs}
        (gone,) = stopped
        (left,) = [r for r in procs if r != gone]
        text = logs[gone].read_text()
        assert procs[gone].returncode == 2, text[-2000:]
        if "stopping this worker" in text:  # both started: the first group by name serves
            assert gone == "scorer" and f"group {topic_prefix}-features-scorer keeps" in text
        else:  # the other was up first: refused at start
            assert "already answer" in text, text[-2000:]
        own = f"{topic_prefix}-{left.replace(',', '-')}"
        until = time.monotonic() + 30  # the stopped group's member has left (SIGTERM path)
        while scorer_groups(access, topic_prefix, requests, "") != [own]:
            assert time.monotonic() < until, scorer_groups(access, topic_prefix, requests, "")
            time.sleep(0.5)
        assert procs[left].poll() is None  # the other keeps serving
    finally:
        for p in procs.values():
            stop_worker(p)
