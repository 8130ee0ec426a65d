"""Settings declared once, read from `SLATESTREAM_*` env variables, validated at start."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from streams.errors import ConfigError

ENV_PREFIX = "SLATESTREAM_"

DEFAULT_EVENT_WEIGHTS: dict[str, float] = {
    "view": 0.2,
    "click": 1.0,
    "rating": 1.0,
    "add_to_cart": 2.0,
    "purchase": 4.0,
}

#: the slate policies a scorer can serve or shadow (streams.services.scorer_service)
POLICY_NAMES = ("in-slate-ts", "ts", "greedy", "epsilon-greedy", "random")


def _known_policies(names: Any) -> None:
    for name in names:
        if name not in POLICY_NAMES:
            raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}")


_HOSTPORT = re.compile(r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
_TOPIC_PREFIX = re.compile(r"^[A-Za-z0-9._\-]{1,100}$")


def _check_url(value: str, schemes: tuple[str, ...], example: str) -> str:
    parsed = urlparse(value)
    if parsed.scheme not in schemes:
        raise ValueError(f"invalid URL {value!r} (expected {example})")
    if parsed.scheme in ("redis", "rediss") and not parsed.hostname:
        raise ValueError(f"invalid URL {value!r}: no host (expected {example})")
    try:
        _ = parsed.port
    except ValueError as exc:
        raise ValueError(f"invalid URL {value!r}: bad port (expected {example})") from exc
    db = parsed.path.strip("/")
    if parsed.scheme in ("redis", "rediss") and db and not db.isdigit():
        # redis-py would read a non-numeric path as database 0: writes would land elsewhere
        raise ValueError(f"invalid URL {value!r}: the database must be a number (/0, /1, …)")
    return value


def redacted(url: str) -> str:
    """`url` without its password, fit for an error line or a log."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    host = parsed.netloc.rsplit("@", 1)[-1]
    user = f"{parsed.username}:***@" if parsed.username else ":***@"
    return parsed._replace(netloc=user + host).geturl()


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """All configuration of every worker; one object, frozen, validated when built."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers host:port[,host:port]; unset = embedded"
    )
    kafka_security_protocol: str = Field(
        default="PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    kafka_sasl_mechanism: str = Field(
        default="PLAIN", description="SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
    )
    kafka_sasl_username: str | None = Field(default=None, description="SASL user name")
    kafka_sasl_password: SecretStr | None = Field(
        default=None, description="SASL password (never printed or logged)"
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description="CA bundle (PEM) that signed the brokers' certificates (default: the system's)",
    )
    kafka_ssl_certfile: Path | None = Field(
        default=None, description="Client certificate (PEM) for mutual TLS"
    )
    kafka_ssl_keyfile: Path | None = Field(
        default=None, description="... and its private key (PEM)"
    )
    kafka_ssl_check_hostname: bool = Field(
        default=True, description="Check the broker's certificate names its host"
    )
    redis_url: str | None = Field(
        default=None, description="Redis URL of the feature store and the joiner's open slates"
    )
    store_url: str | None = Field(
        default=None, description="Feature store URL (redis://… or memory://); default redis_url"
    )
    topic_prefix: str = Field(default="slatestream", description="Prefix of every topic name")
    partitions: int = Field(default=4, ge=1, le=1024, description="Partitions per data topic")
    replication_factor: int = Field(default=1, ge=1, le=16, description="Topic replication")
    session_timeout_s: float = Field(
        default=10.0,
        ge=6.0,  # Kafka brokers refuse less by default (group.min.session.timeout.ms)
        le=1800.0,
        description="Seconds until a silent worker (crash, kill -9) loses its partitions",
    )
    scorer_group_check_s: float = Field(
        default=60.0,
        ge=1.0,
        le=3600.0,
        description="A running scorer looks for scorers of other consumer groups this often; "
        "found twice in a row, every group but the one whose name sorts first stops (exit 2)",
    )
    event_retention_ms: int | None = Field(
        default=None,
        description="Retention of the interactions and impressions topics the workers create "
        "(-1 = forever, else at least 60000; unset = the broker's default)",
    )
    max_event_bytes: int = Field(
        default=65536, ge=256, le=16 * 1024 * 1024, description="Larger payloads go to the DLQ"
    )
    max_clock_skew_ms: int = Field(
        default=86_400_000, ge=0, description="Events further in the future go to the DLQ"
    )
    attribution_window_ms: int = Field(
        default=30 * 60 * 1000, ge=1, description="Clicks after an impression within this count"
    )
    event_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_EVENT_WEIGHTS),
        description="Interaction type -> weight (JSON); unknown types go to the DLQ",
    )
    feedback_replay_s: float = Field(
        default=600.0,
        ge=0.0,
        le=7 * 86400.0,
        description="Feedback a starting scorer relearns its CTR posterior from (seconds back)",
    )
    sequence_length: int = Field(default=50, ge=1, le=10_000, description="Recent items kept")
    popularity_half_life_s: float = Field(default=3600.0, gt=0, description="Popularity decay")
    affinity_half_life_s: float = Field(default=7 * 86400.0, gt=0, description="Affinity decay")
    dedupe_ttl_s: int = Field(default=7 * 86400, ge=1, description="How long event_ids are kept")
    registry_url: str | None = Field(
        default=None, description="Model registry: directory path (default under state_dir)"
    )
    state_dir: Path = Field(
        default=Path.home() / ".cache" / "slatestream", description="Caches and local stack data"
    )
    policy: str = Field(default="in-slate-ts", description="Default slate policy of the scorer")
    request_timeout_ms: int = Field(
        default=0,
        ge=0,
        le=3_600_000,
        description="A request older than this when the scorer reaches it (its ts, by the "
        "scorer's clock) is answered at once with error 'expired', no slate (0 = never; a "
        "request's own timeout_ms wins)",
    )
    policy_arms: dict[str, float] = Field(
        default_factory=dict,
        description="A/B split policy -> weight (JSON); empty = all traffic to `policy`",
    )
    shadow_policies: list[str] = Field(
        default_factory=list, description="Policies that rank every request without serving"
    )
    ts_temperature: float = Field(
        default=1.0,
        gt=0,
        le=10,
        description="Item-CTR Thompson draws from Beta(a/T, b/T); T < 1 explores less",
    )
    model_kind: str = Field(default="bayes-gru", description="Trainer model: gru or bayes-gru")
    model_dim: int = Field(default=64, ge=4, le=1024, description="Item embedding size")
    train_every_events: int = Field(default=256, ge=1, description="Gradient step every N events")
    train_every_ms: float = Field(default=500.0, gt=0, description="... or every T ms")
    snapshot_every_s: float = Field(default=10.0, gt=0, description="Snapshot every T seconds")
    reload_interval_s: float = Field(default=1.0, ge=0, description="Scorer snapshot polling")
    candidates_model: int = Field(
        default=100, ge=0, le=10_000, description="Scorer candidates: the model's top N"
    )
    candidates_popular: int = Field(
        default=30, ge=0, le=10_000, description="... plus the N most popular items now"
    )
    candidates_fresh: int = Field(
        default=10, ge=0, le=10_000, description="... plus the N newest catalogue items"
    )
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        le=10_000,
        description="Longest time the broker holds a scorer's fetch for data (Faust: 1500; "
        "every worker's with SLATESTREAM_FETCH_BATCH_MS=0); partitions not in a fetch in "
        "flight wait for it",
    )
    fetch_batch_ms: int = Field(
        default=20,
        ge=0,
        le=10_000,
        description="Workers without the scorer role: the broker holds a fetch until 1 MB "
        "is there or this many ms passed (fewer, fuller fetches and store writes; freshness "
        "+ at most this); 0: fetch as the scorer does",
    )
    consumer_thread: bool = Field(
        default=False,
        description="Run Faust's Kafka consumer in its own thread (Faust's way) instead of "
        "on the worker's event loop",
    )
    exclude_interacted: bool = Field(
        default=True, description="Scorer leaves out items in the user's recent sequence"
    )
    exclude_shown_slates: int = Field(
        default=1, ge=0, le=100, description="... and the items of the user's last N slates"
    )
    metrics_host: str = Field(default="127.0.0.1", description="Bind address of /metrics")
    metrics_port: int = Field(default=0, ge=0, le=65535, description="/metrics port (0 = off)")
    log_level: str = Field(
        default="WARNING",
        description="Log level of commands and workers (a worker's --loglevel overrides it)",
    )

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = [p.strip() for p in value.replace("kafka://", "").split(",")]
        for part in parts:
            if not _HOSTPORT.match(part) or not 0 < int(part.rsplit(":", 1)[1]) < 65536:
                raise ValueError(f"invalid broker address {part!r} (expected host:port)")
        return ",".join(parts)

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism")
    @classmethod
    def _kafka_choice(cls, value: str, info: Any) -> str:
        from streams.kafka_access import SASL_MECHANISMS, SECURITY_PROTOCOLS

        known = (
            SECURITY_PROTOCOLS if info.field_name == "kafka_security_protocol" else SASL_MECHANISMS
        )
        choice = value.strip().upper()
        if choice not in known:
            raise ValueError(f"unknown value {value!r} (one of {', '.join(known)})")
        return choice

    @field_validator(
        "kafka_ssl_cafile",
        "kafka_ssl_certfile",
        "kafka_ssl_keyfile",
        "kafka_sasl_username",
        "kafka_sasl_password",
        mode="before",
    )
    @classmethod
    def _unset_if_empty(cls, value: Any) -> Any:
        return None if value == "" else value  # `VAR=` unsets it, as for the URLs

    @field_validator("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
    @classmethod
    def _tls_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{str(value)!r} is not a readable file")
        return value

    @model_validator(mode="after")
    def _kafka_security(self) -> Settings:
        from streams.kafka_access import SASL_PROTOCOLS, TLS_PROTOCOLS

        protocol = self.kafka_security_protocol
        sasl = protocol in SASL_PROTOCOLS
        if sasl and not (self.kafka_sasl_username and self.kafka_sasl_password):
            raise ValueError(
                f"SLATESTREAM_KAFKA_SECURITY_PROTOCOL={protocol} needs "
                "SLATESTREAM_KAFKA_SASL_USERNAME and SLATESTREAM_KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.kafka_sasl_username or self.kafka_sasl_password):
            raise ValueError(
                "SLATESTREAM_KAFKA_SASL_USERNAME/PASSWORD are set but "
                f"SLATESTREAM_KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL "
                "(SASL_SSL or SASL_PLAINTEXT)"
            )
        tls = [
            name
            for name in ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")
            if getattr(self, name) is not None
        ]
        if tls and protocol not in TLS_PROTOCOLS:
            raise ValueError(
                f"{ENV_PREFIX}{tls[0].upper()} is set but SLATESTREAM_KAFKA_SECURITY_PROTOCOL="
                f"{protocol} does not use TLS (SSL or SASL_SSL)"
            )
        if self.kafka_ssl_keyfile is not None and self.kafka_ssl_certfile is None:
            raise ValueError(
                "SLATESTREAM_KAFKA_SSL_KEYFILE needs SLATESTREAM_KAFKA_SSL_CERTFILE "
                "(the key's certificate)"
            )
        return self

    @field_validator("event_retention_ms")
    @classmethod
    def _retention(cls, value: int | None) -> int | None:
        if value is not None and value != -1 and value < 60_000:
            raise ValueError("-1 (forever) or at least 60000 ms (a minute)")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        return _check_url(value, ("redis", "rediss", "unix"), "redis://host:port/db")

    @field_validator("store_url")
    @classmethod
    def _store(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        return _check_url(value, ("redis", "rediss", "unix", "memory"), "redis://… or memory://")

    @field_validator("registry_url")
    @classmethod
    def _registry(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if "://" in value:  # a URL would become a local directory named after it
            raise ValueError(
                f"{value!r} is a URL; the registry is a directory path shared by the trainer "
                "and the scorers (other backends are not implemented)"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level {value!r} ({', '.join(LOG_LEVELS)})")
        return level

    @field_validator("topic_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if not _TOPIC_PREFIX.match(value):
            raise ValueError(f"invalid topic prefix {value!r} (letters, digits, . _ -)")
        return value

    @field_validator("event_weights")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("at least one interaction type is needed")
        for name, weight in value.items():
            bad = not math.isfinite(weight) or weight < 0  # NaN < 0 is False
            if not re.match(r"^[a-z][a-z0-9_]{0,31}$", name) or bad:
                raise ValueError(f"bad event weight {name!r}={weight!r}")
        return value

    @field_validator("policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        _known_policies([value])
        return value

    @field_validator("policy_arms")
    @classmethod
    def _arms(cls, value: dict[str, float]) -> dict[str, float]:
        _known_policies(value)
        weights = value.values()
        if value and (any(not w >= 0 for w in weights) or not math.isfinite(sum(weights))):
            raise ValueError("arm weights must be finite and >= 0")
        if value and sum(weights) <= 0:
            raise ValueError("arm weights need a positive sum")
        return value

    @field_validator("shadow_policies")
    @classmethod
    def _shadows(cls, value: list[str]) -> list[str]:
        _known_policies(value)
        return value

    @field_validator("model_kind")
    @classmethod
    def _model_kind(cls, value: str) -> str:
        if value not in ("gru", "bayes-gru"):
            raise ValueError(f"unknown model kind {value!r} (gru or bayes-gru)")
        return value

    @property
    def arms(self) -> dict[str, float]:
        """The A/B split of the scorer: `policy_arms`, or all traffic to `policy`."""
        return dict(self.policy_arms) if self.policy_arms else {self.policy: 1.0}

    @property
    def effective_store_url(self) -> str:
        """The feature store URL: explicit store_url, else redis_url, else in-memory."""
        return self.store_url or self.redis_url or "memory://"

    @property
    def effective_registry(self) -> str:
        """Where model snapshots live (a directory shared by trainer and scorers)."""
        return self.registry_url or str(self.state_dir / "registry")


def settings_kwargs(env: Mapping[str, str]) -> dict[str, str]:
    """The `Settings` keyword arguments that the SLATESTREAM_* variables of `env` name (for
    settings written as variables, e.g. by `stack up`, without putting them in os.environ)."""
    return {k[len(ENV_PREFIX) :].lower(): v for k, v in env.items() if k.startswith(ENV_PREFIX)}


def load_settings(**overrides: Any) -> Settings:
    """Build settings from env + overrides; raise ConfigError naming the env variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = str(err["msg"]).removeprefix("Value error, ")
        if not err["loc"]:  # a check across settings: its message names them
            raise ConfigError(msg) from None
        raise ConfigError(f"{ENV_PREFIX}{str(err['loc'][0]).upper()}: {msg}") from None
    except SettingsError as exc:
        m = re.search(r'field "(\w+)"', str(exc))
        name = f"{ENV_PREFIX}{m.group(1).upper()}" if m else "settings"
        raise ConfigError(f"{name}: not valid JSON") from None
