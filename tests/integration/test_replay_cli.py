"""`slatestream replay` publishes a FINN.no-shaped file to the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from tests.unit.streams.test_replay import make_finn

pytestmark = [pytest.mark.integration]


@pytest.mark.timeout(120)
def test_replay_finn_file_to_kafka(services, topic_prefix: str, tmp_path: Path) -> None:
    data, attr = make_finn(tmp_path)
    env = {
        **os.environ,
        "SLATESTREAM_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "SLATESTREAM_TOPIC_PREFIX": topic_prefix,
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams",
            "replay",
            "--dataset",
            "finn-slates",
            str(data),
            "--itemattr",
            str(attr),
            "--rate",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=100,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert "replayed 59 events" in proc.stdout
    consumer = KafkaConsumer(
        f"{topic_prefix}.impressions",
        bootstrap_servers=services.kafka_bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
        group_id=f"{topic_prefix}-t",
    )
    got = [m for m in consumer]
    consumer.close()
    assert len(got) == 11


@pytest.mark.timeout(60)
def test_replay_bad_path_is_one_line_error(services, tmp_path: Path) -> None:
    env = {**os.environ, "SLATESTREAM_KAFKA_BOOTSTRAP": services.kafka_bootstrap}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams",
            "replay",
            "--dataset",
            "finn-slates",
            str(tmp_path / "missing.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
