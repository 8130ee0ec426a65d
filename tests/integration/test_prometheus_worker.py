"""A real Prometheus server scrapes a running worker under load.

The Debian `prometheus` binary (deploy/dev.sh installs it) is started on a free loopback
port with a generated config that scrapes the worker every second and loads the project's
rules (deploy/prometheus/rules.yml). The worker is `slatestream worker --role all` (all four
roles in one process, memory feature store) on the real broker; the test produces items,
interactions and recommendation requests, then asks Prometheus with PromQL for throughput,
latency quantiles, freshness and consumer lag — raw and through the recording rules — and
renders the report panels from it.
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
from streams.commands.report import fetch_series

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
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture
def worker(services, topic_prefix, tmp_path) -> Iterator[tuple[str, str]]:
    """The worker process (all roles); yields (metrics target host:port, topic prefix)."""
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
        "SLATESTREAM_RELOAD_INTERVAL_S": "0.5",
        "SLATESTREAM_ATTRIBUTION_WINDOW_MS": "1000",
    }
    env.pop("SLATESTREAM_REDIS_URL", None)
    env["SLATESTREAM_STORE_URL"] = "memory://"  # one process holds every store role
    log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "streams", "worker", "--role", "all"],
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
        "  - job_name: slatestream-all\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
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
    """Items once, then every 0.1 s 20 interactions (0.2 s old) and 20 requests."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)

    def send(logical: str, key: str, event: dict) -> None:
        producer.send(f"{prefix}.{logical}", key=key.encode(), value=json.dumps(event).encode())

    now = int(time.time() * 1000)
    for j in range(40):
        item = {"event_id": f"it{j}", "ts": now, "item_id": f"i{j}", "category": f"c{j % 4}"}
        send("items", f"i{j}", item)
    i = 0
    while not stop.is_set():
        now = int(time.time() * 1000)
        for _ in range(20):
            user, item_id = f"u{i % 30}", f"i{(i * 7) % 40}"
            send(
                "interactions",
                user,
                {"event_id": f"e{i}", "ts": now - 200, "user_id": user, "item_id": item_id}
                | {"type": "click"},
            )
            send(
                "requests",
                user,
                {"event_id": f"q{i}", "ts": now, "request_id": f"q{i}", "user_id": user, "k": 5},
            )
            i += 1
        producer.flush()
        sent[0] = i
        time.sleep(0.1)
    producer.close()


def _positive(base: str, expr: str) -> list[dict]:
    return [s for s in promql(base, expr) if float(s["value"][1]) > 0]


@pytest.mark.timeout(90)
def test_prometheus_scrapes_worker_under_load(services, worker, prometheus, tmp_path) -> None:
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
                prometheus, "sum by (topic) (rate(slatestream_features_events_in_total[10s]))"
            ),
            45,
            "features events_in rate",
        )
        assert {r["metric"]["topic"] for r in rates} <= {
            f"{prefix}.interactions",
            f"{prefix}.items",
            f"{prefix}.impressions",
        }
        wait_for(
            lambda: _positive(prometheus, "slatestream:scorer_recommendations:rate1m"),
            20,
            "recording rule: slates served per policy",
        )
        # latency quantiles: scorer requests (rule) and batch processing (raw PromQL)
        p99 = wait_for(
            lambda: _positive(prometheus, "slatestream:scorer_request_seconds:p99_1m"),
            15,
            "scorer request p99",
        )
        p50 = _positive(prometheus, "slatestream:scorer_request_seconds:p50_1m")
        assert p50 and float(p50[0]["value"][1]) <= float(p99[0]["value"][1]) < 10
        batch = _positive(
            prometheus,
            "histogram_quantile(0.99, sum by (le)"
            " (rate(slatestream_features_batch_seconds_bucket[15s])))",
        )
        assert batch and float(batch[0]["value"][1]) < 10
        # freshness: event time -> features updated (events are 0.2 s old when sent) ...
        fresh = wait_for(
            lambda: _positive(prometheus, "slatestream:features_freshness_seconds:p50_1m"),
            15,
            "features freshness p50",
        )
        assert float(fresh[0]["value"][1]) < 60
        # impressions (the scorer's own slates) are ms old and pull the median down; the
        # interactions, 0.2 s old when sent, must still show in the upper quantile
        fresh99 = _positive(
            prometheus,
            "histogram_quantile(0.99, sum by (le)"
            " (rate(slatestream_features_freshness_seconds_bucket[1m])))",
        )
        assert fresh99 and 0.1 <= float(fresh99[0]["value"][1]) < 60
        # ... and snapshot written by the trainer -> loaded by the scorer
        wait_for(
            lambda: _positive(prometheus, "slatestream_scorer_snapshot_load_seconds_count"),
            30,
            "scorer loaded a snapshot",
        )
        wait_for(lambda: _positive(prometheus, "slatestream_trainer_model_version"), 5, "version")
        # consumer lag: one series per (topic, partition) of the worker's group
        lag = wait_for(
            lambda: promql(prometheus, "slatestream_scorer_consumer_lag"), 15, "lag series"
        )
        parts = {(s["metric"]["topic"], s["metric"]["partition"]) for s in lag}
        assert {(f"{prefix}.requests", "0"), (f"{prefix}.requests", "1")} <= parts
        assert all(float(s["value"][1]) >= 0 for s in lag)
    finally:
        stop.set()
        load.join(timeout=10)
    assert sent[0] > 0
    up = promql(prometheus, 'up{job="slatestream-all"}')
    assert up and up[0]["value"][1] == "1"

    # the report command renders the panels from this Prometheus
    from streams.cli import main

    out = tmp_path / "report"
    assert main(["report", "--prometheus", prometheus, "--range", "2m", "--out", str(out)]) == 0
    series = fetch_series(prometheus, 120)
    assert any(k.startswith("Scorer request latency") for k in series)
    assert (out / "panels.png").stat().st_size > 20_000
