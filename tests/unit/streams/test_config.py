"""Settings: env names, defaults, and one-line errors that name the setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from streams.config import load_settings
from streams.errors import ConfigError


@pytest.mark.timeout(10)
def test_defaults_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    monkeypatch.setenv("SLATESTREAM_REDIS_URL", "redis://127.0.0.1:6379/0")
    s = load_settings()
    assert s.topic_prefix == "slatestream"
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.effective_store_url == "redis://127.0.0.1:6379/0"
    monkeypatch.delenv("SLATESTREAM_REDIS_URL")
    assert load_settings().effective_store_url == "memory://"
    assert (s.candidates_model, s.candidates_popular, s.candidates_fresh) == (100, 30, 10)


@pytest.mark.timeout(30)
def test_scorer_candidate_settings_reach_the_scorer(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.handlers.scorer import ScorerHandler
    from streams.roles import build_handlers

    monkeypatch.setenv("SLATESTREAM_CANDIDATES_MODEL", "40")
    monkeypatch.setenv("SLATESTREAM_CANDIDATES_POPULAR", "0")
    monkeypatch.setenv("SLATESTREAM_CANDIDATES_FRESH", "5")
    monkeypatch.setenv("SLATESTREAM_TS_TEMPERATURE", "0.125")
    monkeypatch.setenv("SLATESTREAM_EXCLUDE_INTERACTED", "false")
    monkeypatch.setenv("SLATESTREAM_EXCLUDE_SHOWN_SLATES", "3")
    [handler] = build_handlers(load_settings(store_url="memory://"), ["scorer"])
    assert isinstance(handler, ScorerHandler)
    cfg = handler.service.config
    assert (cfg.candidates_model, cfg.candidates_popular, cfg.candidates_fresh) == (40, 0, 5)
    assert handler.service.posterior.ctr.temperature == 0.125
    assert (cfg.exclude_interacted, cfg.exclude_shown_slates) == (False, 3)


@pytest.mark.timeout(30)
def test_session_timeout_reaches_the_faust_app(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    """A crashed worker's partitions move after SLATESTREAM_SESSION_TIMEOUT_S (default 10 s),
    not after Faust's own 60 s; a heartbeat every second (a leaving member is noticed soon)."""
    from streams.app import create_app

    monkeypatch.setenv("SLATESTREAM_STATE_DIR", str(tmp_path))
    app = create_app(load_settings(kafka_bootstrap="127.0.0.1:9"), group="t")
    assert (app.conf.broker_session_timeout, app.conf.broker_heartbeat_interval) == (10.0, 1.0)
    monkeypatch.setenv("SLATESTREAM_SESSION_TIMEOUT_S", "6")
    app = create_app(load_settings(kafka_bootstrap="127.0.0.1:9"), group="u")
    assert (app.conf.broker_session_timeout, app.conf.broker_heartbeat_interval) == (6.0, 1.0)


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("env", "value", "needle"),
    [
        ("SLATESTREAM_REDIS_URL", "http://x", "SLATESTREAM_REDIS_URL"),
        ("SLATESTREAM_REDIS_URL", "redis://:abc", "SLATESTREAM_REDIS_URL"),
        ("SLATESTREAM_KAFKA_BOOTSTRAP", "nohostport", "SLATESTREAM_KAFKA_BOOTSTRAP"),
        ("SLATESTREAM_KAFKA_BOOTSTRAP", "h:99999", "SLATESTREAM_KAFKA_BOOTSTRAP"),
        ("SLATESTREAM_TOPIC_PREFIX", "bad prefix!", "SLATESTREAM_TOPIC_PREFIX"),
        ("SLATESTREAM_PARTITIONS", "0", "SLATESTREAM_PARTITIONS"),
        ("SLATESTREAM_STORE_URL", "mongodb://x", "SLATESTREAM_STORE_URL"),
        ("SLATESTREAM_EVENT_WEIGHTS", "{not json", "SLATESTREAM_EVENT_WEIGHTS"),
        ("SLATESTREAM_CANDIDATES_MODEL", "-1", "SLATESTREAM_CANDIDATES_MODEL"),
        ("SLATESTREAM_TS_TEMPERATURE", "0", "SLATESTREAM_TS_TEMPERATURE"),
        ("SLATESTREAM_SESSION_TIMEOUT_S", "3", "SLATESTREAM_SESSION_TIMEOUT_S"),
        ("SLATESTREAM_POLICY_ARMS", '{"ts": -1}', "SLATESTREAM_POLICY_ARMS"),
        ("SLATESTREAM_POLICY_ARMS", '{"ts": 0}', "SLATESTREAM_POLICY_ARMS"),
        # redis-py would read these as database 0: the writes would land in another database
        ("SLATESTREAM_REDIS_URL", "redis://127.0.0.1:6379/abc", "SLATESTREAM_REDIS_URL"),
        ("SLATESTREAM_STORE_URL", "redis://h:6379/1x", "SLATESTREAM_STORE_URL"),
        # would become a local directory named "redis:/…": trainer and scorers never meet
        ("SLATESTREAM_REGISTRY_URL", "redis://127.0.0.1:6379/1", "SLATESTREAM_REGISTRY_URL"),
        ("SLATESTREAM_LOG_LEVEL", "garbage", "SLATESTREAM_LOG_LEVEL"),
    ],
)
def test_invalid_settings_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, needle: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SLATESTREAM_REDIS_URL": "ftp://nope"}, "SLATESTREAM_REDIS_URL"),
        ({"SLATESTREAM_KAFKA_BOOTSTRAP": "127.0.0.1:1"}, "SLATESTREAM_KAFKA_BOOTSTRAP"),
    ],
)
def test_cli_prints_one_line_not_a_traceback(env: dict[str, str], needle: str) -> None:
    import os

    proc = subprocess.run(
        [sys.executable, "-m", "streams", "check"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0] and "Traceback" not in proc.stderr


def test_valid_urls_and_log_levels_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLATESTREAM_REDIS_URL", "redis://127.0.0.1:6379/3")
    monkeypatch.setenv("SLATESTREAM_STORE_URL", "redis://127.0.0.1:6379")
    monkeypatch.setenv("SLATESTREAM_REGISTRY_URL", "/shared/registry")
    monkeypatch.setenv("SLATESTREAM_LOG_LEVEL", "info")
    s = load_settings()
    assert s.redis_url == "redis://127.0.0.1:6379/3" and s.log_level == "INFO"
    assert s.effective_registry == "/shared/registry"


@pytest.mark.timeout(60)
def test_cli_log_level_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    from streams import cli

    monkeypatch.setenv("SLATESTREAM_LOG_LEVEL", "nonsense")
    assert cli.main(["check"]) == 2  # refused before the command runs
    root = logging.getLogger()
    old = root.level, list(root.handlers)
    root.handlers.clear()  # basicConfig configures only an unconfigured root logger
    try:
        monkeypatch.setenv("SLATESTREAM_LOG_LEVEL", "error")
        monkeypatch.delenv("SLATESTREAM_KAFKA_BOOTSTRAP", raising=False)
        monkeypatch.delenv("SLATESTREAM_REDIS_URL", raising=False)
        monkeypatch.delenv("SLATESTREAM_STORE_URL", raising=False)
        cli.main(["check"])
        assert root.level == logging.ERROR
    finally:
        root.setLevel(old[0])
        root.handlers[:] = old[1]


def test_settings_kwargs_names_the_fields_of_prefixed_variables() -> None:
    from streams.config import settings_kwargs

    env = {"SLATESTREAM_KAFKA_SASL_USERNAME": "u", "SLATESTREAM_TOPIC_PREFIX": "p", "HOME": "/x"}
    assert settings_kwargs(env) == {"kafka_sasl_username": "u", "topic_prefix": "p"}
