"""`slatestream worker --role ROLES`: run worker roles as one Faust app on the broker."""

from __future__ import annotations

import argparse
import gc
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
    from streams.metrics.server import start_metrics_server

    roles = parse_roles(args.role)
    settings = load_settings()
    check_broker(settings)
    ensure_topics(settings)
    app = create_app(settings, group="-".join(roles))
    handlers = build_handlers(settings, roles)
    # instruments the handlers in place and watches the group's consumer lag
    server = start_metrics_server(settings, roles=roles, handlers=handlers)
    if server is not None:
        logging.getLogger(__name__).warning("metrics on %s", server.url)
    for handler in handlers:
        # a handler may cap its batch (the scorer: a slate is published only with its batch)
        size = int(getattr(handler, "max_batch", 1000))
        bind_handler(app, handler, partitions=settings.partitions, batch_size=size)
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    # everything imported and built so far (torch, faust, the model) lives for the whole
    # run: move it out of the cyclic GC's generations so full collections stay short
    gc.freeze()
    worker.execute_from_commandline()
    return 0
