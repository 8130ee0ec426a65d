"""`slatestream check`: validate settings and reach the configured broker, Redis and feature
store."""

from __future__ import annotations

import argparse
import asyncio
import sys

from streams.broker import admin_client, check_broker
from streams.commands.worker import ping_store
from streams.config import load_settings, redacted
from streams.kafka_access import KafkaAccess

CHECK_PING_S = 3.0  # how long `check` waits for the feature store to answer


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `check` subcommand."""
    p = sub.add_parser("check", help="validate settings; check broker and Redis answer")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the effective configuration; errors name the setting in one line."""
    settings = load_settings()
    access = KafkaAccess.of(settings) if settings.kafka_bootstrap else None
    if access is not None:
        check_broker(settings)
        # a port that accepts connections may still not be Kafka (e.g. Redis's port)
        admin_client(access, timeout_s=10.0).close()
    if not settings.effective_store_url.startswith("memory:"):
        # the workers' own start-up ping (SLATESTREAM_REDIS_URL only matters as the store's
        # default), with a shorter wait
        ping_store(settings, timeout_s=CHECK_PING_S)
        from streams.services.feature_service import durability_warnings

        for msg in asyncio.run(durability_warnings(settings)):
            print(f"slatestream: warning: {msg}", file=sys.stderr)
    print(f"kafka_bootstrap={settings.kafka_bootstrap or '(embedded)'}")
    if access is not None:
        security = access.security_protocol
        if access.uses_sasl:
            security += f" ({access.sasl_mechanism}, user {access.sasl_username})"
        print(f"kafka_security={security}")
    print(f"store={redacted(settings.effective_store_url)}")
    print(f"topic_prefix={settings.topic_prefix}")
    return 0
