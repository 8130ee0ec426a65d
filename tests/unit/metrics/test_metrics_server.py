"""The /metrics endpoint: serves the registry over HTTP on loopback, settings pick the port."""

from __future__ import annotations

import socket
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from streams.config import Settings
from streams.errors import ConfigError
from streams.metrics.scorer import ScorerMetrics
from streams.metrics.server import group_id, serve, start_metrics_server

pytestmark = pytest.mark.timeout(20)


def test_serve_exposes_registry_on_loopback() -> None:
    reg = CollectorRegistry()
    m = ScorerMetrics(reg)
    m.observe_served("ts", 0.01, k=3)
    srv = serve("127.0.0.1", 0, reg)
    try:
        assert srv.port > 0 and srv.target == f"127.0.0.1:{srv.port}"
        body = urllib.request.urlopen(srv.url, timeout=5).read().decode()
        assert 'slatestream_scorer_recommendations_total{policy="ts"} 1.0' in body
        assert "slatestream_scorer_request_seconds_bucket" in body
    finally:
        srv.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(srv.url, timeout=2)


def test_settings_pick_port_and_zero_means_off() -> None:
    assert start_metrics_server(Settings(metrics_port=0)) is None
    srv = serve("127.0.0.1", 0, CollectorRegistry())
    port = srv.port
    srv.close()
    reg = CollectorRegistry()
    ScorerMetrics(reg)
    started = start_metrics_server(Settings(metrics_port=port), reg)
    assert started is not None
    try:
        assert started.host == "127.0.0.1" and started.port == port
        assert b"slatestream_scorer" in urllib.request.urlopen(started.url, timeout=5).read()
    finally:
        started.close()
    assert group_id(Settings(topic_prefix="abc"), "scorer") == "abc-scorer"


def test_a_taken_metrics_port_is_one_config_error_naming_the_variable() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = int(taken.getsockname()[1])
        settings = Settings(metrics_port=port)
        with pytest.raises(ConfigError, match=f"SLATESTREAM_METRICS_PORT: .*127.0.0.1:{port}"):
            start_metrics_server(settings, CollectorRegistry())


def test_an_address_not_of_this_host_names_the_host_variable() -> None:
    settings = Settings(metrics_host="203.0.113.7", metrics_port=_free_port())
    with pytest.raises(ConfigError, match=r"SLATESTREAM_METRICS_HOST: .*203\.0\.113\.7"):
        start_metrics_server(settings, CollectorRegistry())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
