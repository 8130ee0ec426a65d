"""`slatestream replay`: publish a data set as a time-ordered event stream to Kafka."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from streams.config import load_settings
from streams.errors import ConfigError
from streams.topics import topic_name


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `replay` subcommand."""
    p = sub.add_parser("replay", help="publish ml-100k or a FINN.no slate file to Kafka")
    p.add_argument("--dataset", required=True, choices=["ml-100k", "finn-slates"])
    p.add_argument("path", nargs="?", type=Path, help="finn-slates: data.npz")
    p.add_argument("--itemattr", type=Path, default=None, help="finn-slates: itemattr.npz")
    p.add_argument("--rate", type=float, default=1000.0, help="events per second (0 = max)")
    p.add_argument("--limit", type=int, default=0, help="stop after N events (0 = all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Publish the events with kafka-python at the requested rate; print a summary."""
    from kafka import KafkaProducer

    from models.datasets import DatasetError, load_finn_slates, load_movielens_100k
    from streams.broker import check_broker, ensure_topics
    from streams.replay import finn_events, movielens_events

    if math.isnan(args.rate) or args.rate < 0:
        raise ConfigError(f"--rate must be >= 0 (0 = as fast as possible), not {args.rate}")
    if args.limit < 0:
        raise ConfigError(f"--limit must be >= 0 (0 = all), not {args.limit}")
    if args.dataset == "ml-100k" and (args.path is not None or args.itemattr is not None):
        raise ConfigError(
            "--dataset ml-100k takes no data.npz path or --itemattr (finn-slates only)"
        )
    if args.dataset == "finn-slates" and args.path is None:
        raise ConfigError("finn-slates needs the path of data.npz")
    settings = load_settings()
    # the data set is read before the broker is asked: a bad file is reported first
    try:
        if args.dataset == "ml-100k":
            events = movielens_events(load_movielens_100k())
        else:
            events = finn_events(load_finn_slates(args.path, args.itemattr))
    except DatasetError as exc:
        raise ConfigError(f"--dataset {args.dataset}: {exc}") from None
    check_broker(settings)
    ensure_topics(settings)
    producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, linger_ms=5, acks=1)
    sent: dict[str, int] = {}
    start = time.monotonic()
    n = 0
    for logical, key, event in events:
        producer.send(topic_name(settings, logical), event.to_json(), key=key.encode())
        sent[logical] = sent.get(logical, 0) + 1
        n += 1
        if args.rate > 0:
            ahead = n / args.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        if args.limit and n >= args.limit:
            break
    producer.flush()
    producer.close()
    elapsed = time.monotonic() - start
    print(f"replayed {n} events in {elapsed:.1f}s ({n / max(elapsed, 1e-9):.0f}/s): {sent}")
    return 0
