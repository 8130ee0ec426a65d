"""`slatestream worker --role ROLES`: run worker roles as one Faust app on the broker."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from streams.broker import check_broker, ensure_topics
from streams.config import Settings, load_settings, redacted
from streams.errors import ConfigError
from streams.health import WorkerHealth
from streams.health import watch as watch_health
from streams.kafka_access import KafkaAccess
from streams.log_limits import limit_repeats
from streams.roles import build_handlers, parse_roles

#: roles that read or write the feature store, which separate worker processes share
STORE_ROLES = ("features", "joiner", "scorer")
#: how long a starting worker waits for its feature store to answer before giving up
STORE_PING_S = 10.0
#: how far back a starting scorer reads the answers already published (seconds, at least)
ANSWERS_REPLAY_S = 120.0
#: answers read per fetch: noting one costs a JSON parse (~10 µs), not a posterior update
ANSWERS_CHUNK = 500
#: how long a rebalance waits for the answers read-back to catch up (at most)
ANSWERS_CATCH_UP_S = 5.0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the `worker` subcommand."""
    p = sub.add_parser("worker", help="run worker roles (features, joiner, trainer, scorer)")
    p.add_argument("--role", default="all", help="comma-separated roles, or 'all' (default)")
    p.add_argument(
        "--loglevel",
        default=None,
        type=str.lower,
        choices=("debug", "info", "warning", "error", "critical"),
        help="Faust/worker log level (default: SLATESTREAM_LOG_LEVEL, warning)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Validate settings, reach the broker, create topics, and run the worker until stopped."""
    from streams.app import bind_handler, create_app
    from streams.metrics.server import start_metrics_server

    roles = parse_roles(args.role)
    # a broker or Redis outage repeats the same lines (aiokafka: ~100 ERROR lines/s): one per
    # message per 10 s instead
    limit_repeats()
    settings = load_settings()
    require_shared_store(settings, roles)
    ping_store(settings, roles)
    check_broker(settings)
    ensure_topics(settings)
    if "scorer" in roles:
        refuse_second_scorer_group(settings, "-".join(roles))
    # only a scorer has someone waiting on each record: the others batch their fetches
    app = create_app(settings, group="-".join(roles), batch_fetches="scorer" not in roles)
    if "scorer" in roles:
        _watch_scorer_groups(app, settings, "-".join(roles))
    handlers = build_handlers(settings, roles)
    ping = store_pinger(settings, roles)
    health = WorkerHealth(roles, uses_store=ping is not None)
    watch_health(app, health, ping)
    # instruments the handlers in place, watches the group's consumer lag, serves the probes
    server = start_metrics_server(settings, roles=roles, handlers=handlers, health=health)
    if server is not None:
        logging.getLogger(__name__).warning("metrics on %s", server.url)
    _freeze_after_warmup(app)
    _warn_about_store(app, settings, roles)
    for handler in handlers:
        # a handler may cap its batch (the scorer: a slate is published only with its batch)
        size = int(getattr(handler, "max_batch", 1000))
        bind_handler(app, handler, partitions=settings.partitions, batch_size=size)
    _broadcast_to_scorers(app, settings, handlers)
    worker = make_worker(app, worker_loglevel(args.loglevel, settings))
    # everything imported and built so far (torch, faust, the model) lives for the whole
    # run: move it out of the cyclic GC's generations so full collections stay short
    gc.freeze()
    try:
        worker.execute_from_commandline()
    except SystemExit:
        if YIELDED.is_set():  # stopped for another scorer group: not a clean exit
            return EXIT_YIELDED
        raise
    return 0


def refuse_second_scorer_group(settings: Settings, role_group: str) -> None:
    """ConfigError (one line) when a scorer of another consumer group (another --role list)
    already reads the requests: both groups would receive and answer every request. A group
    whose worker just stopped keeps its member for a session timeout, so a conflict is only
    reported if it is still there after one."""
    others, own, requests = _other_scorer_groups(settings, role_group)
    if others:
        log = logging.getLogger(__name__)
        log.warning(
            "scorer group(s) %s read %s; checking again in a session timeout", others, requests
        )
        time.sleep(settings.session_timeout_s + 2.0)
        others, _, _ = _other_scorer_groups(settings, role_group)
    if others:
        raise ConfigError(
            f"consumer group(s) {', '.join(others)} already answer {requests}; this worker's "
            f"group {own} would answer every request a second time. Run every scorer with the "
            "same --role list (one group shares the partitions), or give this deployment its "
            "own SLATESTREAM_TOPIC_PREFIX"
        )


def _other_scorer_groups(settings: Settings, role_group: str) -> tuple[list[str], str, str]:
    """(other scorer groups reading the requests, this worker's group, the requests topic)."""
    from streams.broker import scorer_groups
    from streams.topics import topic_name

    own = f"{settings.topic_prefix}-{role_group}"
    requests = topic_name(settings, "requests")
    access = KafkaAccess.of(settings)
    return scorer_groups(access, settings.topic_prefix, requests, own), own, requests


#: set once this scorer stops because another scorer group keeps serving
YIELDED = threading.Event()
#: the worker's exit code then (as for the start-up refusal: a configuration conflict)
EXIT_YIELDED = 2


def yields_to(own: str, others: Sequence[str]) -> str | None:
    """The group this scorer's group `own` gives way to: of the scorer groups found, the one
    whose name sorts first keeps serving (a rule every group applies alike), None if `own`."""
    first = min([own, *others])
    return None if first == own else first


def _watch_scorer_groups(app: Any, settings: Settings, role_group: str) -> None:
    """Run `watch_scorer_groups` as a task of the app."""

    @app.task
    async def scorer_group_watch() -> None:
        await watch_scorer_groups(settings, role_group)


def _stop_for_another_group() -> None:
    """Stop this worker as SIGTERM does (commits, leaves the group), exit code EXIT_YIELDED."""
    YIELDED.set()
    os.kill(os.getpid(), signal.SIGTERM)


async def watch_scorer_groups(
    settings: Settings,
    role_group: str,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    stop: Callable[[], None] = _stop_for_another_group,
) -> None:
    """Keep checking, while the scorer runs, for scorers of other groups: two started at the
    same moment both pass the start-up check, and each would answer every request. Found
    in two checks in a row, more than a session timeout apart (a stopped worker's membership
    lasts that long), every group but the first by name stops its worker."""
    every = max(settings.scorer_group_check_s, settings.session_timeout_s + 2.0)
    own = f"{settings.topic_prefix}-{role_group}"
    found_before = False
    while True:
        await sleep(every)
        first = yields_to(own, await check_scorer_groups(settings, role_group))
        if first is not None and found_before:
            logging.getLogger(__name__).error(
                "stopping this worker: group %s keeps answering the requests (of the scorer "
                "groups, the first by name serves); start scorers with its --role list",
                first,
            )
            stop()
            return
        found_before = first is not None


async def check_scorer_groups(settings: Settings, role_group: str) -> list[str]:
    """One check: sets `slatestream_scorer_other_scorer_groups` and logs an error naming the
    groups found; a broker error is logged and counts as no answer (the gauge keeps its
    value)."""
    from streams.metrics import SCORER

    log = logging.getLogger(__name__)
    try:
        others, own, requests = await asyncio.to_thread(_other_scorer_groups, settings, role_group)
    except Exception as exc:  # the check must never take the scorer down
        log.warning("could not check for other scorer groups: %s", exc)
        return []
    SCORER.other_scorer_groups.set(len(others))
    if others:
        log.error(
            "consumer group(s) %s also answer %s: every request is answered more than once; "
            "stop them or this group %s",
            ", ".join(others),
            requests,
            own,
        )
    return others


def worker_loglevel(flag: str | None, settings: Settings) -> str:
    """The worker's log level: --loglevel, else SLATESTREAM_LOG_LEVEL (default warning)."""
    return flag or settings.log_level.lower()


def require_shared_store(settings: Settings, roles: Sequence[str]) -> None:
    """ConfigError (one line) when a store role would keep its features in this process's
    memory: the worker commits Kafka offsets once features are stored, so they would be lost
    for good when it stops, and other workers never see them. An explicit
    SLATESTREAM_STORE_URL=memory:// is accepted when every store role runs in this process."""
    used = [r for r in roles if r in STORE_ROLES]
    if not used or not settings.effective_store_url.startswith("memory:"):
        return
    if settings.store_url is None:
        raise ConfigError(
            "SLATESTREAM_REDIS_URL / SLATESTREAM_STORE_URL: not set, so the feature store of "
            f"role(s) {', '.join(used)} would be in this process's memory and lost when it "
            "stops (with the Kafka offsets already committed); set SLATESTREAM_REDIS_URL="
            "redis://host:6379/0 (a throwaway single-process run: --role all with "
            "SLATESTREAM_STORE_URL=memory://)"
        )
    if not set(STORE_ROLES) <= set(roles):
        raise ConfigError(
            "SLATESTREAM_STORE_URL: memory:// is private to one process, so role(s) "
            f"{', '.join(used)} would share features with no other worker; set "
            "SLATESTREAM_REDIS_URL / SLATESTREAM_STORE_URL to redis://host:6379/0 "
            "(memory:// is accepted only with features, joiner and scorer in one process: "
            "--role all)"
        )
    logging.getLogger(__name__).warning(
        "feature store: memory:// (SLATESTREAM_STORE_URL); features are lost when this "
        "process stops, while the Kafka offsets stay committed"
    )


def ping_store(
    settings: Settings, roles: Sequence[str] = STORE_ROLES, timeout_s: float | None = None
) -> None:
    """Wait up to `timeout_s` (default STORE_PING_S) for the store roles' feature store to
    answer a PING, then ConfigError (one line naming the URL and the last error): without it
    a worker whose Redis is wrong or down retries forever and says nothing."""
    url = settings.effective_store_url
    if not any(r in STORE_ROLES for r in roles) or url.startswith("memory:"):
        return
    from streams.services.feature_service import open_feature_store

    async def once(left: float) -> None:
        store = open_feature_store(settings)
        try:
            ping = getattr(store, "ping", None)
            if ping is not None:
                await asyncio.wait_for(ping(), timeout=max(left, 0.1))
        finally:
            await store.close()

    timeout_s = STORE_PING_S if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            asyncio.run(once(deadline - time.monotonic()))
            return
        except Exception as exc:  # redis errors, OSError, timeouts: all mean "not answering"
            last = str(exc) or type(exc).__name__
        if time.monotonic() + 0.5 >= deadline:
            break
        time.sleep(0.5)
    var = "SLATESTREAM_STORE_URL" if settings.store_url else "SLATESTREAM_REDIS_URL"
    raise ConfigError(
        f"{var}: the feature store at {redacted(url)} does not answer after {timeout_s:.0f} s "
        f"({last})"
    )


def store_pinger(
    settings: Settings, roles: Sequence[str]
) -> Callable[[], Coroutine[Any, Any, Any]] | None:
    """A coroutine function pinging the store roles' feature store (its own connection, opened
    on the first call, in the worker's loop); None without store roles or with memory://."""
    if not any(r in STORE_ROLES for r in roles):
        return None
    if settings.effective_store_url.startswith("memory:"):
        return None
    from streams.services.feature_service import open_feature_store

    store: Any = None

    async def ping() -> None:
        nonlocal store
        if store is None:
            store = open_feature_store(settings)
        await store.ping()

    return ping


def make_worker(app: Any, loglevel: str) -> Any:
    """A Faust worker without the terminal spinner: to spin on every log line, Faust sets the
    root logger to DEBUG and leaves it there, so every debug call of aiokafka, Faust and mode
    built a record for nothing (~10% of a scorer's GIL time at 100 requests/s, by py-spy)."""
    import faust

    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.spinner = None
    return worker


WARMUP_S = 20.0


def _freeze_after_warmup(app: Any) -> None:
    """Once the worker has run for WARMUP_S (Faust started, modules imported, the first
    snapshot loaded), move what is alive out of the cyclic GC's view: a full collection
    otherwise rescans those ~150k long-lived objects, a 100-170 ms pause. Only the young
    generations are collected first: a full collection here would be that very pause, in
    live traffic, to free the few hundred objects start-up leaves behind."""

    @app.task
    async def freeze() -> None:
        await asyncio.sleep(WARMUP_S)
        gc.collect(1)
        gc.freeze()
        logging.getLogger(__name__).info("gc: %d objects frozen", gc.get_freeze_count())


def _warn_about_store(app: Any, settings: Settings, roles: Sequence[str]) -> None:
    """Log once, at start, what in Redis's configuration can lose the features and join state
    the writing roles keep there (eviction, no persistence)."""
    if not {"features", "joiner"} & set(roles):
        return

    @app.task
    async def store_check() -> None:
        from streams.services.feature_service import durability_warnings

        for msg in await durability_warnings(settings):
            logging.getLogger(__name__).warning("feature store: %s", msg)


def _answers_first(app: Any, answers: Any, settings: Settings) -> None:
    """At every assignment, wait (bounded) until the answers read-back has caught up with the
    recommendations topic before the new partitions' requests are read: a request the
    previous owner answered but had not committed is then skipped even if the reader lagged."""
    wait_s = min(ANSWERS_CATCH_UP_S, settings.session_timeout_s / 2)

    async def answers_first(sender: Any, /, *args: Any, signal: Any = None, **_: Any) -> None:
        if not await answers.caught_up(wait_s):
            logging.getLogger(__name__).warning(
                "the answers read-back did not catch up within %.0f s of the rebalance: a "
                "request answered just before it may be answered again",
                wait_s,
            )

    app.on_partitions_assigned.connect(answers_first)


def _broadcast_to_scorers(app: Any, settings: Settings, handlers: Sequence[Any]) -> None:
    """Scorers read two topics from every partition, not only their group's share
    (`streams.broadcast`): feedback, to learn their CTR posterior (replaying the last
    `feedback_replay_s` at start), and recommendations, to know which requests any scorer
    has answered (so one delivered again after a failover is not answered twice)."""
    from streams.broadcast import TopicBroadcast
    from streams.topics import topic_name

    access = KafkaAccess.of(settings)
    for handler in handlers:
        # by name: importing the scorer's handler class would load torch into every role
        if getattr(handler, "name", None) != "scorer":
            continue
        handler.learns_feedback = False
        feedback = TopicBroadcast(
            access, topic_name(settings, "feedback"), settings.feedback_replay_s, handler.learn
        )
        app.task(feedback.run)
        # far enough back for a scorer started to replace one that died: its answers not
        # yet committed are at most a session timeout plus a restart old
        replay_s = max(ANSWERS_REPLAY_S, 2 * settings.session_timeout_s)
        answers = TopicBroadcast(
            access,
            topic_name(settings, "recommendations"),
            replay_s,
            handler.note_answer,
            chunk=ANSWERS_CHUNK,
        )
        app.task(answers.run)
        _answers_first(app, answers, settings)
