"""The `/metrics` HTTP endpoint of a worker, and a consumer-lag monitor for its group.

`start_metrics_server(settings)` serves every registered metric on
`settings.metrics_host:metrics_port` (loopback by default; port 0 = off). `serve(host, 0)`
binds an ephemeral port (tests, demo). `LagMonitor` is a daemon thread that, every
`interval_s`, reads the group's committed offsets (one admin request) and the end offsets
of its topics' partitions (one ListOffsets request) with kafka-python, and sets
`slatestream_<role>_consumer_lag{topic,partition}`. Scrapes never touch Kafka.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

from streams.config import Settings
from streams.metrics import for_role
from streams.metrics.common import RoleMetrics, instrument_in_place
from streams.runtime import Handler

log = logging.getLogger(__name__)


@dataclass
class MetricsServer:
    """A running `/metrics` endpoint; `url` is what Prometheus scrapes."""

    host: str
    port: int
    _server: Any
    _thread: threading.Thread
    monitors: list[LagMonitor] = field(default_factory=list)

    @property
    def url(self) -> str:
        """http://host:port/metrics"""
        return f"http://{self.host}:{self.port}/metrics"

    @property
    def target(self) -> str:
        """host:port, as written in a Prometheus static_config."""
        return f"{self.host}:{self.port}"

    def close(self) -> None:
        """Stop the lag monitors, stop serving and free the port."""
        for m in self.monitors:
            m.stop()
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
    settings: Settings,
    registry: CollectorRegistry = REGISTRY,
    *,
    roles: Sequence[str] | None = None,
    handlers: Sequence[Handler] = (),
    lag_interval_s: float = 5.0,
) -> MetricsServer | None:
    """Serve /metrics on settings.metrics_host:metrics_port (None when the port is 0).

    With `handlers` (and `roles`, in the same order, as the worker binds them): handlers not
    yet measured are instrumented in place, and when a broker is configured, one
    `LagMonitor` per handler reports the consumer lag of the worker's group
    (`<prefix>-<roles joined by ->`, as `streams.app.create_app` names it).
    """
    if not settings.metrics_port:
        return None
    srv = serve(settings.metrics_host, settings.metrics_port, registry)
    role_names = list(roles or [h.name for h in handlers])
    for i, handler in enumerate(handlers):
        role = role_names[i] if i < len(role_names) else handler.name
        metrics = for_role(role)
        instrument_in_place(handler, metrics)
        if settings.kafka_bootstrap:
            group = group_id(settings, "-".join(role_names))
            srv.monitors.append(
                LagMonitor(
                    metrics, settings.kafka_bootstrap, group, handler.topics, lag_interval_s
                ).start()
            )
    log.info("metrics on %s", srv.url)
    return srv


def group_id(settings: Settings, role_group: str) -> str:
    """The Kafka consumer group of a worker (`streams.app.create_app` names it so)."""
    return f"{settings.topic_prefix}-{role_group}"


class LagReader:
    """Reads a group's lag with two kafka-python clients kept open between reads."""

    def __init__(self, bootstrap: str, group: str, topics: Sequence[str]) -> None:
        self.bootstrap = bootstrap
        self.group = group
        self.topics = list(topics)
        self._admin: Any = None
        self._consumer: Any = None

    def read(self) -> dict[tuple[str, int], int]:
        """Lag per (topic, partition): end offset minus committed (or minus the log start)."""
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap, client_id="slatestream-lag"
            )
            self._consumer = KafkaConsumer(
                bootstrap_servers=self.bootstrap, group_id=None, client_id="slatestream-lag"
            )
        try:
            committed = self._committed()
            tps = [
                TopicPartition(topic, p)
                for topic in self.topics
                for p in sorted(self._consumer.partitions_for_topic(topic) or ())
            ]
            if not tps:
                return {}
            ends = self._consumer.end_offsets(tps)
            begins = self._consumer.beginning_offsets(tps)
        except Exception:
            self.close()  # reconnect on the next read
            raise
        out = {}
        for tp in tps:
            meta = committed.get(tp)
            pos = meta.offset if meta is not None and meta.offset >= 0 else begins.get(tp, 0)
            out[(tp.topic, tp.partition)] = max(0, int(ends.get(tp, 0)) - int(pos))
        return out

    def _committed(self) -> dict[Any, Any]:
        """The group's committed offsets (kafka-python 3.x and 2.x admin APIs)."""
        admin = self._admin
        if hasattr(admin, "list_group_offsets"):  # kafka-python >= 3
            return dict(admin.list_group_offsets({self.group: None}).get(self.group, {}))
        return dict(admin.list_consumer_group_offsets(self.group))

    def close(self) -> None:
        """Close both clients."""
        for client in (self._consumer, self._admin):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._admin = self._consumer = None


def read_lag(bootstrap: str, group: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """One-off lag read of `group` over `topics` (see LagReader)."""
    reader = LagReader(bootstrap, group, topics)
    try:
        return reader.read()
    finally:
        reader.close()


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
        self.reader = LagReader(bootstrap, group, topics)
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
        lag = self.reader.read()
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
        self.reader.close()
