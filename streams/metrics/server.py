"""The `/metrics` HTTP endpoint of a worker, and a consumer-lag monitor for its group.

`start_metrics_server(settings)` serves every registered metric on
`settings.metrics_host:metrics_port` (loopback by default; port 0 = off). `serve(host, 0)`
binds an ephemeral port (tests, demo). `LagMonitor` is a daemon thread that, every
`interval_s`, reads the group's committed offsets (one OffsetFetch) and the end offsets of
its topics' partitions (one ListOffsets) with kafka-python's admin client, and sets
`slatestream_<role>_consumer_lag{topic,partition}` of every role the worker runs. Scrapes
never touch Kafka.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import REGISTRY, CollectorRegistry, make_wsgi_app

from streams.config import Settings
from streams.errors import ConfigError
from streams.health import WorkerHealth
from streams.kafka_access import KafkaAccess
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


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a scrape in flight never holds the worker's exit


class _V6Server(_Server):
    address_family = socket.AF_INET6


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes and probes are not worth a log line each."""


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    registry: CollectorRegistry = REGISTRY,
    health: WorkerHealth | None = None,
) -> MetricsServer:
    """Serve `registry` on http://host:port/metrics (port 0 = an ephemeral free port), and
    with `health` the probes /healthz (live) and /readyz (ready): JSON, 200 or 503."""
    metrics_app = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if health is not None and path in ("/healthz", "/readyz"):
            ok, details = health.liveness() if path == "/healthz" else health.readiness()
            body = json.dumps(details).encode()
            start(
                "200 OK" if ok else "503 Service Unavailable",
                [("Content-Type", "application/json"), ("Content-Length", str(len(body)))],
            )
            return [body]
        return metrics_app(environ, start)  # type: ignore[no-any-return]

    server_cls = _V6Server if ":" in host else _Server
    server = make_server(host, port, app, server_cls, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True)
    thread.start()
    return MetricsServer(host, int(server.server_address[1]), server, thread)


def start_metrics_server(
    settings: Settings,
    registry: CollectorRegistry = REGISTRY,
    *,
    roles: Sequence[str] | None = None,
    handlers: Sequence[Handler] = (),
    lag_interval_s: float = 5.0,
    health: WorkerHealth | None = None,
) -> MetricsServer | None:
    """Serve /metrics on settings.metrics_host:metrics_port (None when the port is 0).

    With `handlers` (and `roles`, in the same order, as the worker binds them): handlers not
    yet measured are instrumented in place, and when a broker is configured, one
    `LagMonitor` reports the consumer lag of the worker's group (`<prefix>-<roles joined
    by ->`, as `streams.app.create_app` names it) into each role's gauge.
    """
    if not settings.metrics_port:
        return None
    try:
        srv = serve(settings.metrics_host, settings.metrics_port, registry, health)
    except OSError as exc:  # port taken (another worker on this host), address not local
        taken = exc.errno == errno.EADDRINUSE
        raise ConfigError(
            f"SLATESTREAM_METRICS_{'PORT' if taken else 'HOST'}: cannot serve /metrics on "
            f"{settings.metrics_host}:{settings.metrics_port} ({exc.strerror or exc}); "
            + (
                "give each worker on a host its own port"
                if taken
                else "give an address of this host (127.0.0.1, 0.0.0.0)"
            )
        ) from None
    role_names = list(roles or [h.name for h in handlers])
    targets = []
    for i, handler in enumerate(handlers):
        metrics = for_role(role_names[i] if i < len(role_names) else handler.name)
        instrument_in_place(handler, metrics)
        targets.append((metrics, list(handler.topics)))
    if settings.kafka_bootstrap and targets:
        group = group_id(settings, "-".join(role_names))
        srv.monitors.append(
            LagMonitor(KafkaAccess.of(settings), group, targets, lag_interval_s).start()
        )
    log.info("metrics on %s", srv.url)
    return srv


def group_id(settings: Settings, role_group: str) -> str:
    """The Kafka consumer group of a worker (`streams.app.create_app` names it so)."""
    return f"{settings.topic_prefix}-{role_group}"


class LagReader:
    """Reads a group's lag with one admin client kept open between reads.

    kafka-python >= 3: partitions (cached), committed offsets and end offsets all come from
    the admin client (3 small requests per read). kafka-python 2.x: a group-less consumer
    answers the end offsets.
    """

    def __init__(self, access: KafkaAccess, group: str, topics: Sequence[str]) -> None:
        self.access = access
        self.group = group
        self.topics = list(dict.fromkeys(topics))
        self._admin: Any = None
        self._consumer: Any = None
        self._parts: list[Any] = []
        self._reads = 0

    def read(self) -> dict[tuple[str, int], int]:
        """Lag per (topic, partition): end offset minus committed (or minus the log start)."""
        from kafka import KafkaAdminClient

        if self._admin is None:
            self._admin = KafkaAdminClient(
                **self.access.client_kwargs(), client_id="slatestream-lag"
            )
        try:
            if not self._parts or self._reads % 60 == 0:  # partitions rarely change
                self._parts = self._partitions()
            self._reads += 1
            if not self._parts:
                return {}
            committed = self._committed()
            missing = [tp for tp in self._parts if getattr(committed.get(tp), "offset", -1) < 0]
            ends, begins = self._offsets(self._parts, missing)
        except Exception:
            self.close()  # reconnect on the next read
            raise
        out = {}
        for tp in self._parts:
            meta = committed.get(tp)
            pos = meta.offset if meta is not None and meta.offset >= 0 else begins.get(tp, 0)
            out[(tp.topic, tp.partition)] = max(0, int(ends.get(tp, 0)) - int(pos))
        return out

    def _partitions(self) -> list[Any]:
        from kafka import TopicPartition

        if hasattr(self._admin, "list_partition_offsets"):  # kafka-python >= 3
            found = []
            for t in self._admin.describe_topics(self.topics):
                for p in sorted(x["partition_index"] for x in t.get("partitions") or ()):
                    found.append(TopicPartition(t["name"], p))
            return found
        consumer = self._legacy_consumer()
        return [
            TopicPartition(t, p)
            for t in self.topics
            for p in sorted(consumer.partitions_for_topic(t) or ())
        ]

    def _offsets(self, tps: list[Any], missing: list[Any]) -> tuple[dict[Any, int], dict[Any, int]]:
        if hasattr(self._admin, "list_partition_offsets"):  # kafka-python >= 3
            from kafka.admin import OffsetSpec

            ends = self._admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in tps})
            begins = (
                self._admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in missing})
                if missing
                else {}
            )
            return (
                {tp: int(v.offset) for tp, v in ends.items()},
                {tp: int(v.offset) for tp, v in begins.items()},
            )
        consumer = self._legacy_consumer()
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(missing) if missing else {}
        return dict(ends), dict(begins)

    def _legacy_consumer(self) -> Any:
        if self._consumer is None:
            from kafka import KafkaConsumer

            self._consumer = KafkaConsumer(
                **self.access.client_kwargs(), group_id=None, client_id="slatestream-lag"
            )
        return self._consumer

    def _committed(self) -> dict[Any, Any]:
        """The group's committed offsets (kafka-python 3.x and 2.x admin APIs)."""
        admin = self._admin
        if hasattr(admin, "list_group_offsets"):  # kafka-python >= 3
            return dict(admin.list_group_offsets({self.group: None}).get(self.group, {}))
        return dict(admin.list_consumer_group_offsets(self.group))

    def close(self) -> None:
        """Close the clients."""
        for client in (self._consumer, self._admin):
            if client is not None:
                with contextlib.suppress(Exception):
                    client.close()
        self._admin = self._consumer = None
        self._parts = []


def read_lag(access: KafkaAccess, group: str, topics: Sequence[str]) -> dict[tuple[str, int], int]:
    """One-off lag read of `group` over `topics` (see LagReader)."""
    reader = LagReader(access, group, topics)
    try:
        return reader.read()
    finally:
        reader.close()


class LagMonitor:
    """Daemon thread refreshing `consumer_lag` gauges of one group every `interval_s`.

    `targets` pairs each role's metrics with the topics it consumes: one reader covers the
    group, and each role's gauge gets the partitions of its own topics.
    """

    def __init__(
        self,
        access: KafkaAccess,
        group: str,
        targets: Sequence[tuple[RoleMetrics, Sequence[str]]],
        interval_s: float = 5.0,
    ) -> None:
        self.group = group
        self.targets = [(m, set(topics)) for m, topics in targets]
        self.interval_s = interval_s
        self.reader = LagReader(access, group, [t for _, ts in targets for t in ts])
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
            for metrics, topics in self.targets:
                if topic in topics:
                    metrics.consumer_lag.labels(topic=topic, partition=str(part)).set(value)
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
