"""`slatestream replay`: publish a data set as a time-ordered event stream to Kafka."""

from __future__ import annotations

import argparse
import itertools
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

from streams.config import load_settings
from streams.errors import BrokerUnavailable, ConfigError
from streams.kafka_access import KafkaAccess
from streams.topics import topic_name

if TYPE_CHECKING:
    from pydantic import ValidationError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `replay` subcommand."""
    p = sub.add_parser("replay", help="publish ml-100k or a FINN.no slate file to Kafka")
    p.add_argument("--dataset", required=True, choices=["ml-100k", "finn-slates"])
    p.add_argument("path", nargs="?", type=Path, help="finn-slates: data.npz")
    p.add_argument("--itemattr", type=Path, default=None, help="finn-slates: itemattr.npz")
    p.add_argument("--rate", type=float, default=1000.0, help="events per second (0 = max)")
    p.add_argument("--limit", type=int, default=0, help="stop after N events (0 = all)")
    p.set_defaults(func=run)


def _contract_error(dataset: str, n: int, exc: ValidationError) -> str:
    """One line for event `n` of the data set that the event contract refuses."""
    errors = exc.errors()
    if not errors:
        return f"--dataset {dataset}: event {n} does not fit the event contract"
    where = ".".join(str(p) for p in errors[0]["loc"]) or exc.title
    return f"--dataset {dataset}: event {n} does not fit the event contract: {where}: " + str(
        errors[0]["msg"]
    )


def run(args: argparse.Namespace) -> int:
    """Publish the events with kafka-python at the requested rate; print a summary."""
    from kafka import KafkaProducer
    from kafka.errors import KafkaError
    from pydantic import ValidationError

    from models.datasets import DatasetError, load_finn_slates, load_movielens_100k
    from streams.broker import check_broker, ensure_topics, quiet_kafka_logs
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
        first = next(events, None)
    except DatasetError as exc:
        raise ConfigError(f"--dataset {args.dataset}: {exc}") from None
    except ValidationError as exc:
        raise ConfigError(_contract_error(args.dataset, 1, exc)) from None
    if first is None:
        raise ConfigError(f"--dataset {args.dataset}: the data set holds no events to replay")
    quiet_kafka_logs()
    check_broker(settings)
    ensure_topics(settings)
    sent: dict[str, int] = {}
    n = 0
    try:
        # acks=1 is a choice (throughput over idempotent retries), so idempotence is off on purpose
        producer = KafkaProducer(
            **KafkaAccess.of(settings).client_kwargs(),
            linger_ms=5,
            acks=1,
            enable_idempotence=False,
        )
        start = time.monotonic()
        for logical, key, event in itertools.chain([first], events):
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
    except ValidationError as exc:  # data the up-front checks let through
        raise ConfigError(_contract_error(args.dataset, n + 1, exc)) from None
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"replay stopped after {n} events: Kafka at {settings.kafka_bootstrap} failed ({exc})"
        ) from None
    elapsed = time.monotonic() - start
    print(f"replayed {n} events in {elapsed:.1f}s ({n / max(elapsed, 1e-9):.0f}/s): {sent}")
    return 0
