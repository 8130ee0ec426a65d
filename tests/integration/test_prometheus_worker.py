"""A real Prometheus server scrapes a running trainer worker under load.

The Debian `prometheus` binary (deploy/dev.sh installs it) is started on a free loopback
port with a generated config that scrapes the worker every second and loads the project's
rules (deploy/prometheus/rules.yml). The worker is the Faust app + real TrainerHandler +
/metrics endpoint (tests/integration/prom_worker.py); the test produces interactions and
feedback to the real broker, then asks Prometheus with PromQL for throughput, latency
quantiles, freshness and consumer lag, through the recording rules too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.stack import free_port

pytestmark = [pytest.mark.integration, pytest.mark.prometheus]

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"


def promql(base: str, expr: str) -> list[dict]:
    """Instant query; the result vector."""
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    body = json.loads(urllib.request.urlopen(url, timeout=5).read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(pred, timeout: float, what: str, every: float = 0.5):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture
def worker(services, topic_prefix, tmp_path) -> Iterator[tuple[str, str]]:
    """The trainer worker process; yields (metrics target host:port, topic prefix)."""
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SLATESTREAM_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "SLATESTREAM_TOPIC_PREFIX": topic_prefix,
        "SLATESTREAM_PARTITIONS": "2",
        "SLATESTREAM_METRICS_PORT": str(port),
        "SLATESTREAM_STATE_DIR": str(tmp_path / "state"),
        "SLATESTREAM_MODEL_DIM": "8",
        "SLATESTREAM_TRAIN_EVERY_EVENTS": "32",
        "SLATESTREAM_SNAPSHOT_EVERY_S": "2",
    }
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("prom_worker.py"))],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        target = f"127.0.0.1:{port}"

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "worker.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://{target}/metrics", timeout=1)
                return True
            except OSError:
                return False

        wait_for(up, 60, "worker /metrics")
        yield target, topic_prefix
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def prometheus(worker, tmp_path) -> Iterator[str]:
    """A real Prometheus on a free loopback port scraping the worker; yields its base URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed (bash deploy/dev.sh setup installs it)")
    target, _ = worker
    port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        "  - job_name: slatestream-trainer\n"
        f"    static_configs: [{{targets: ['{target}'], labels: {{role: trainer}}}}]\n"
    )
    log = open(tmp_path / "prometheus.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={cfg}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            assert proc.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            try:
                return urllib.request.urlopen(f"{base}/-/ready", timeout=1).status == 200
            except OSError:
                return False

        wait_for(ready, 30, "prometheus ready")
        yield base
    finally:
        _stop(proc)
        log.close()


def _produce(bootstrap: str, prefix: str, stop: threading.Event, sent: list[int]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    i = 0
    while not stop.is_set():
        now = int(time.time() * 1000)
        for _ in range(50):
            user, item = f"u{i % 40}", f"i{(i * 7) % 60}"
            inter = {"event_id": f"e{i}", "ts": now, "user_id": user, "item_id": item}
            inter["type"] = "click"
            producer.send(
                f"{prefix}.interactions", key=user.encode(), value=json.dumps(inter).encode()
            )
            fb = {
                "event_id": f"f{i}",
                "ts": now - 200,
                "user_id": user,
                "request_id": f"r{i}",
                "slate": [item, f"i{(i * 7 + 1) % 60}", f"i{(i * 7 + 2) % 60}"],
                "served_at": now - 1200,
                "clicks": [
                    {
                        "position": 0,
                        "item_id": item,
                        "type": "click",
                        "delay_ms": 500,
                        "event_id": f"c{i}",
                    }
                ],
                "window_ms": 1000,
            }
            producer.send(f"{prefix}.feedback", key=user.encode(), value=json.dumps(fb).encode())
            i += 1
        producer.flush()
        sent[0] = i
        time.sleep(0.1)
    producer.close()


def _positive(base: str, expr: str) -> list[dict]:
    return [s for s in promql(base, expr) if float(s["value"][1]) > 0]


@pytest.mark.timeout(90)
def test_prometheus_scrapes_worker_under_load(services, worker, prometheus) -> None:
    _, prefix = worker
    stop, sent = threading.Event(), [0]
    load = threading.Thread(
        target=_produce, args=(services.kafka_bootstrap, prefix, stop, sent), daemon=True
    )
    load.start()
    try:
        # throughput per topic, straight from the counters and through the recording rule
        rates = wait_for(
            lambda: _positive(
                prometheus, "sum by (topic) (rate(slatestream_trainer_events_in_total[10s]))"
            ),
            45,
            "events_in rate",
        )
        assert {r["metric"]["topic"] for r in rates} <= {
            f"{prefix}.interactions",
            f"{prefix}.feedback",
        }
        wait_for(
            lambda: len(_positive(prometheus, "slatestream:trainer_events_in:rate1m")) == 2,
            20,
            "recording rule slatestream:trainer_events_in:rate1m for both topics",
        )
        # latency quantiles of batch processing
        p99 = wait_for(
            lambda: _positive(prometheus, "slatestream:trainer_batch_seconds:p99_1m"),
            15,
            "batch p99",
        )
        p50 = _positive(
            prometheus,
            "histogram_quantile(0.5, sum by (le)"
            " (rate(slatestream_trainer_batch_seconds_bucket[15s])))",
        )
        assert p50 and float(p50[0]["value"][1]) <= float(p99[0]["value"][1])
        assert float(p99[0]["value"][1]) < 10
        # freshness: feedback event time -> trainer learned it (events are ~0.2 s old at send)
        fresh = wait_for(
            lambda: _positive(prometheus, "slatestream:trainer_freshness_seconds:p50_1m"),
            15,
            "freshness p50",
        )
        assert 0.2 <= float(fresh[0]["value"][1]) < 60
        # the model learns and snapshots: loss and model version are exposed
        wait_for(
            lambda: _positive(prometheus, "slatestream_trainer_train_events_total"), 15, "train"
        )
        wait_for(
            lambda: _positive(prometheus, "slatestream_trainer_model_version"), 20, "a snapshot"
        )
        # consumer lag: one series per (topic, partition) of the worker's group
        lag = wait_for(
            lambda: promql(prometheus, "slatestream_trainer_consumer_lag"), 15, "lag series"
        )
        parts = {(s["metric"]["topic"], s["metric"]["partition"]) for s in lag}
        assert {(f"{prefix}.feedback", "0"), (f"{prefix}.feedback", "1")} <= parts
        assert all(float(s["value"][1]) >= 0 for s in lag)
    finally:
        stop.set()
        load.join(timeout=10)
    assert sent[0] > 0
    up = promql(prometheus, 'up{job="slatestream-trainer"}')
    assert up and up[0]["value"][1] == "1"
