"""The `/metrics` HTTP endpoint of a worker, and a consumer-lag monitor for its group.

`start_metrics_server(settings)` serves every registered metric on
`settings.metrics_host:metrics_port` (loopback by default; port 0 = off). `serve(host, 0)`
binds an ephemeral port (tests, demo). `LagMonitor` is a daemon thread that, every
`interval_s`, reads the group's committed offsets (one admin request) and the end offsets
of its topics' partitions (one ListOffsets request) with kafka-python, and sets
`slatestream_<role>_consumer_lag{topic,partition}`. Scrapes never touch Kafka.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from streams.config import Settings
from streams.metrics.common import RoleMetrics

log = logging.getLogger(__name__)


@dataclass
class MetricsServer:
    """A running `/metrics` endpoint; `url` is what Prometheus scrapes."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """http://host:port/metrics"""
        return f"http://{self.host}:{self.port}/metrics"

    @property
    def target(self) -> str:
        """host:port, as written in a Prometheus static_config."""
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(
    host: str = "127.0.0.1", port: int = 0, registry: CollectorRegistry = REGISTRY
) -> MetricsServer:
    """Serve `registry` on http://host:port/metrics (port 0 = an ephemeral free port)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host, int(server.server_address[1]), server, thread)


def start_metrics_server(
    settings: Settings, registry: CollectorRegistry = REGISTRY
) -> MetricsServer | None:
    """The worker's endpoint on settings.metrics_host:metrics_port; None when the port is 0."""
    if not settings.metrics_port:
        return None
    srv = serve(settings.metrics_host, settings.metrics_port, registry)
    log.info("metrics on %s", srv.url)
    return srv


def group_id(settings: Settings, role_group: str) -> str:
    """The Kafka consumer group of a worker (`streams.app.create_app` names it so)."""
    return f"{settings.topic_prefix}-{role_group}"


def read_lag(bootstrap: str, group: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """Lag per (topic, partition) of `group`: end offset minus committed (or minus 0)."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="slatestream-lag")
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, client_id="slatestream-lag"
    )
    try:
        committed = admin.list_consumer_group_offsets(group)
        tps: list[TopicPartition] = []
        for topic in topics:
            parts = consumer.partitions_for_topic(topic) or set()
            tps.extend(TopicPartition(topic, p) for p in sorted(parts))
        if not tps:
            return {}
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(tps)
        out = {}
        for tp in tps:
            meta = committed.get(tp)
            pos = meta.offset if meta is not None and meta.offset >= 0 else begins.get(tp, 0)
            out[(tp.topic, tp.partition)] = max(0, int(ends.get(tp, 0)) - int(pos))
        return out
    finally:
        consumer.close()
        admin.close()


class LagMonitor:
    """Daemon thread refreshing `metrics.consumer_lag` for a group every `interval_s`."""

    def __init__(
        self,
        metrics: RoleMetrics,
        bootstrap: str,
        group: str,
        topics: Sequence[str],
        interval_s: float = 5.0,
    ) -> None:
        self.metrics = metrics
        self.bootstrap = bootstrap
        self.group = group
        self.topics = list(topics)
        self.interval_s = interval_s
        self.last: dict[tuple[str, int], int] = {}
        self.refreshes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lag-{group}", daemon=True)

    def start(self) -> LagMonitor:
        """Start polling; returns self."""
        self._thread.start()
        return self

    def refresh(self) -> dict[tuple[str, int], int]:
        """Read lag once and set the gauges (also called by the thread)."""
        lag = read_lag(self.bootstrap, self.group, self.topics)
        for (topic, part), value in lag.items():
            self.metrics.consumer_lag.labels(topic=topic, partition=str(part)).set(value)
        self.last = lag
        self.refreshes += 1
        return lag

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as exc:  # the broker may be restarting: keep the last values
                log.warning("consumer lag of %s not read: %s", self.group, exc)
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        """Stop polling and wait for the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
