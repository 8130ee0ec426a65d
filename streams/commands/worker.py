"""`slatestream worker --role ROLES`: run worker roles as one Faust app on the broker."""

from __future__ import annotations

import argparse
import logging

from streams.broker import check_broker, ensure_topics
from streams.config import load_settings
from streams.roles import build_handlers, parse_roles


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `worker` subcommand."""
    p = sub.add_parser("worker", help="run worker roles (features, joiner, trainer, scorer)")
    p.add_argument("--role", default="all", help="comma-separated roles, or 'all' (default)")
    p.add_argument("--loglevel", default="warning", help="Faust/worker log level")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate settings, reach the broker, create topics, and run the worker until stopped."""
    import faust

    from streams.app import bind_handler, create_app
    from streams.metrics import for_role, instrument
    from streams.metrics.server import LagMonitor, group_id, start_metrics_server

    roles = parse_roles(args.role)
    settings = load_settings()
    check_broker(settings)
    ensure_topics(settings)
    app = create_app(settings, group="-".join(roles))
    handlers = build_handlers(settings, roles)
    for handler in handlers:
        bind_handler(app, instrument(handler), partitions=settings.partitions)
    server = start_metrics_server(settings)
    if server is not None:
        logging.getLogger(__name__).warning("metrics on %s", server.url)
        group = group_id(settings, "-".join(roles))
        for handler in handlers:
            LagMonitor(
                for_role(handler.name), settings.kafka_bootstrap or "", group, list(handler.topics)
            ).start()
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0
