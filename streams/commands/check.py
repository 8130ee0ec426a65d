"""`slatestream check`: validate settings and reach the configured broker, Redis and feature
store."""

from __future__ import annotations

import argparse
import asyncio
import sys

from streams.broker import admin_client, check_broker
from streams.config import load_settings, redacted
from streams.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `check` subcommand."""
    p = sub.add_parser("check", help="validate settings; check broker and Redis answer")
    p.set_defaults(func=run)


def _ping(url: str, var: str) -> None:
    """ConfigError naming `var` when the Redis at `url` does not answer a PING in ~3 s (the
    feature store's own `namespace` query parameter is not redis-py's, so it is dropped)."""
    import redis

    from features.redis_store import parse_url

    try:
        client = redis.Redis.from_url(parse_url(url)[0], socket_timeout=3, socket_connect_timeout=3)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        raise ConfigError(f"{var}: Redis does not answer at {redacted(url)} ({exc})") from None


def run(args: argparse.Namespace) -> int:
    """Print the effective configuration; errors name the setting in one line."""
    settings = load_settings()
    if settings.kafka_bootstrap:
        check_broker(settings)
        # a port that accepts connections may still not be Kafka (e.g. Redis's port)
        admin_client(settings.kafka_bootstrap, timeout_s=10.0).close()
    if settings.redis_url:
        _ping(settings.redis_url, "SLATESTREAM_REDIS_URL")
    store = settings.effective_store_url
    if not store.startswith("memory:"):
        if store != settings.redis_url:  # a feature store of its own (SLATESTREAM_STORE_URL)
            _ping(store, "SLATESTREAM_STORE_URL")
        from streams.services.feature_service import durability_warnings

        for msg in asyncio.run(durability_warnings(settings)):
            print(f"slatestream: warning: {msg}", file=sys.stderr)
    print(f"kafka_bootstrap={settings.kafka_bootstrap or '(embedded)'}")
    print(f"store={redacted(settings.effective_store_url)}")
    print(f"topic_prefix={settings.topic_prefix}")
    return 0
