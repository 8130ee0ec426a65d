"""`slatestream stack up|down|status`: the local Kafka (KRaft) + Redis stack."""

from __future__ import annotations

import argparse
from pathlib import Path

from deploy import stack
from streams.errors import StackError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `stack` subcommand."""
    p = sub.add_parser("stack", help="start/stop a local Kafka + Redis on loopback")
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--state-dir", type=Path, default=None, help="default ~/.cache/slatestream")
    p.add_argument("--kafka-port", type=int, default=None, help="default: a free port")
    p.add_argument("--redis-port", type=int, default=None, help="default: a free port")
    p.add_argument(
        "--secure",
        action="store_true",
        help="up: also a SASL_SSL listener (own CA, SCRAM-SHA-512 user); up/status: its settings",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Carry out the stack action; print `KEY=value` lines a shell can eval."""
    for flag, port in (("--kafka-port", args.kafka_port), ("--redis-port", args.redis_port)):
        if port is not None and not 1 <= port <= 65535:
            raise StackError(f"{flag} must be a TCP port in 1..65535, not {port}")
    if args.kafka_port is not None and args.kafka_port == args.redis_port:
        raise StackError("--kafka-port and --redis-port must differ")
    if args.state_dir is not None and args.state_dir.exists() and not args.state_dir.is_dir():
        raise StackError(f"--state-dir {args.state_dir}: exists and is not a directory")
    if args.action == "up":
        state = stack.up(
            args.state_dir,
            kafka_port=args.kafka_port,
            redis_port=args.redis_port,
            secure=args.secure,
        )
        print(state.env_lines(secure=args.secure))
        return 0
    if args.action == "down":
        stopped = stack.down(args.state_dir)
        print("# stack stopped" if stopped else "# no stack running")
        return 0
    alive = stack.status(args.state_dir)
    recorded = stack.read_state(args.state_dir)
    if alive is None or recorded is None:
        print("# no stack recorded")
        return 1
    print(recorded.env_lines(secure=args.secure))
    for name, ok in alive.items():
        print(f"# {name}: {'up' if ok else 'DOWN'}")
    return 0 if all(alive.values()) else 1
