"""Broker chores done with kafka-python's admin client: reachability check, topic creation."""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Sequence
from typing import Any

from streams.config import Settings
from streams.errors import BrokerUnavailable, ConfigError
from streams.kafka_access import KafkaAccess
from streams.topics import topic_specs

log = logging.getLogger(__name__)


def check_broker(settings: Settings, timeout_s: float = 5.0) -> None:
    """Raise a one-line error naming SLATESTREAM_KAFKA_BOOTSTRAP when no broker answers."""
    if not settings.kafka_bootstrap:
        raise ConfigError("SLATESTREAM_KAFKA_BOOTSTRAP: not set (this command needs a broker)")
    errors = []
    for addr in settings.kafka_bootstrap.split(","):
        host, port = addr.rsplit(":", 1)
        try:
            socket.create_connection((host, int(port)), timeout=timeout_s).close()
            return
        except OSError as exc:
            errors.append(f"{addr}: {exc.strerror or exc}")
    raise BrokerUnavailable(f"SLATESTREAM_KAFKA_BOOTSTRAP: no broker answers ({'; '.join(errors)})")


def admin_client(access: KafkaAccess, timeout_s: float | None = None) -> Any:
    """A kafka-python admin client on the cluster; BrokerUnavailable (one line) when what
    listens there does not answer as Kafka (or refuses the configured TLS/SASL), within
    `timeout_s` where kafka-python supports it."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    kw: dict[str, Any] = {}
    if timeout_s is not None and "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:
        kw["bootstrap_timeout_ms"] = int(timeout_s * 1000)  # kafka-python >= 3
    kafka_log = logging.getLogger("kafka")
    level, propagate = kafka_log.level, kafka_log.propagate
    seen = _LastCause()
    kafka_log.setLevel(logging.ERROR)
    kafka_log.propagate = False  # the one line below says it all
    kafka_log.addHandler(seen)
    try:
        return KafkaAdminClient(**access.client_kwargs(), **kw)
    except KafkaError as exc:
        raise BrokerUnavailable(
            f"SLATESTREAM_KAFKA_BOOTSTRAP: {access.bootstrap} accepts connections but does not "
            f"answer as a Kafka broker{_security_hint(access, seen.cause)} "
            f"({seen.cause or type(exc).__name__})"
        ) from None
    finally:  # a command may have silenced kafka-python for good: keep its choice
        kafka_log.removeHandler(seen)
        kafka_log.setLevel(level)
        kafka_log.propagate = propagate


class _LastCause(logging.Handler):
    """Keeps the first TLS or SASL failure kafka-python logs while it bootstraps: its own
    error is only a timeout, the cause (bad password, unknown CA) is in its log."""

    KEYS = ("Authentication failed", "Handshake failed")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.cause = ""

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        for key in self.KEYS:
            if not self.cause and key in msg:
                cause = msg[msg.index(key) :]
                while cause.count(")") > cause.count("("):  # the wrapping message's
                    cause = cause[: cause.rindex(")")]
                self.cause = cause[:200]


def _security_hint(access: KafkaAccess, cause: str) -> str:
    """What to check, when TLS/SASL is configured (the cause, when kafka-python logged one;
    a broker may also just close the connection on a refused login)."""
    if access.security_protocol == "PLAINTEXT":
        return ""
    hint = f" with SLATESTREAM_KAFKA_SECURITY_PROTOCOL={access.security_protocol}"
    if cause:
        return hint
    checks = ["the listener's protocol"]
    if access.uses_sasl:
        checks.append(f"the {access.sasl_mechanism} user and password")
    if access.uses_ssl:
        checks.append("the CA")
    return f"{hint} (check {', '.join(checks)})"


def quiet_kafka_logs(level: int = logging.ERROR) -> None:
    """Raise kafka-python's loggers to `level` for a command whose own one-line messages say
    what matters (its warnings there are expected noise; CRITICAL also hides its per-connection
    ERROR lines); with -v (debug logging) everything still shows."""
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        logging.getLogger("kafka").setLevel(level)


def ensure_topics(settings: Settings) -> list[str]:
    """Create the pipeline's topics with their partition counts if missing; return created."""
    from kafka.admin import NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    check_broker(settings)
    access = KafkaAccess.of(settings)
    admin = admin_client(access, timeout_s=15.0)
    try:
        existing = set(admin.list_topics())
        new = [
            NewTopic(
                s.name,
                num_partitions=s.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=s.configs,
            )
            for s in topic_specs(settings).values()
            if s.name not in existing
        ]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
            new_parts = {t.name: t.num_partitions for t in new}
            _wait_for_leaders(admin, access, new_parts)
        joined = [topic_specs(settings)[t].name for t in COPARTITIONED]
        if any(name in existing for name in joined):  # created here: equal by the spec
            _check_copartitioned(admin, joined)
        return [t.name for t in new]
    except KafkaError as exc:
        name = type(exc).__name__
        if name == "InvalidReplicationFactorError":
            raise ConfigError(
                f"SLATESTREAM_REPLICATION_FACTOR: the broker refused replication factor "
                f"{settings.replication_factor} (more than the brokers of the cluster?)"
            ) from None
        # kafka-python's message carries the whole request: the error's name and its
        # description are what a user can act on
        detail = getattr(exc, "description", "") or str(exc).split("(", 1)[0]
        raise BrokerUnavailable(
            f"SLATESTREAM_KAFKA_BOOTSTRAP: creating topics failed ({name}: {detail})"[:300]
        ) from None
    finally:
        admin.close()


# the joiner matches a user's impressions and clicks within one partition number, so a
# user's key must land on the same partition of both (same count, same default partitioner)
COPARTITIONED = ("impressions", "interactions")


def partition_counts(admin: Any, names: list[str]) -> dict[str, int]:
    """Partitions of each topic, from the broker's metadata (0 for a topic without any)."""
    return {
        d.get("name", d.get("topic")): len(d.get("partitions", []))  # kafka-python 2.x/3.x
        for d in admin.describe_topics(names)
    }


def held_offsets(settings: Settings, names: Sequence[str]) -> dict[str, dict[int, tuple[int, int]]]:
    """Per topic of `names`, its partitions' (first, end) offsets: {} for a topic the broker
    does not have (nothing is created). A command reads them before it changes anything, so
    a broker that is down or a mistyped prefix is found first. BrokerUnavailable (one line)
    when no Kafka broker answers."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    check_broker(settings)  # a closed port: one line, at once
    access = KafkaAccess.of(settings)
    admin = admin_client(access, timeout_s=10.0)  # a port that is not Kafka: one line
    try:
        existing = set(admin.list_topics())  # a metadata request for all: creates nothing
        counts = partition_counts(admin, [n for n in names if n in existing])
    except KafkaError as exc:
        raise BrokerUnavailable(f"SLATESTREAM_KAFKA_BOOTSTRAP: {access.bootstrap}: {exc}") from None
    finally:
        admin.close()
    out: dict[str, dict[int, tuple[int, int]]] = {name: {} for name in names}
    tps = [TopicPartition(n, p) for n, k in counts.items() for p in range(k)]
    if not tps:
        return out
    # no auto-creation: asking for offsets must not create a topic on a permissive broker
    probe = KafkaConsumer(
        **access.client_kwargs(), enable_auto_commit=False, allow_auto_create_topics=False
    )
    try:
        first, end = probe.beginning_offsets(tps), probe.end_offsets(tps)
    except KafkaError as exc:
        raise BrokerUnavailable(f"SLATESTREAM_KAFKA_BOOTSTRAP: {access.bootstrap}: {exc}") from None
    finally:
        probe.close()
    for tp in tps:
        out[tp.topic][tp.partition] = (first[tp], end[tp])
    return out


def _check_copartitioned(admin: Any, names: list[str]) -> None:
    """ConfigError when topics the joiner reads side by side differ in partition count."""
    counts = partition_counts(admin, names)
    if len(set(counts.values())) > 1:
        listed = ", ".join(f"{name} has {n}" for name, n in counts.items())
        raise ConfigError(
            f"topics must have the same number of partitions ({listed}): the joiner finds a "
            "user's clicks on the partition of the user's impressions; add partitions to the "
            f"smaller (kafka-topics.sh --alter --partitions {max(counts.values())}) or recreate "
            "both with SLATESTREAM_PARTITIONS"
        )


def _wait_for_leaders(
    admin: Any, access: KafkaAccess, partitions: dict[str, int], timeout_s: float = 15.0
) -> None:
    """Wait (bounded) until every partition of the new topics has a leader, so the first
    clients do not log NotLeaderForPartition while the controller is still electing."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            described = admin.describe_topics(list(partitions))
        except Exception:  # metadata not there yet: ask again
            described = []
        led = {  # key names as kafka-python 2.x/3.x report them
            d.get("name", d.get("topic")): sum(
                1 for p in d.get("partitions", []) if p.get("leader_id", p.get("leader", -1)) >= 0
            )
            for d in described
        }
        if all(led.get(name, 0) >= n for name, n in partitions.items()):
            _wait_until_served(access, partitions, deadline)
            return
        time.sleep(0.1)
    log.warning("topics without a leader after %.0f s: %s", timeout_s, sorted(partitions))


def _wait_until_served(access: KafkaAccess, partitions: dict[str, int], deadline: float) -> None:
    """The metadata names a leader before that broker serves the partition: ask each leader
    for its end offsets (kafka-python retries NotLeaderForPartition) until they answer."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.errors import KafkaError

    left_ms = int(max(deadline - time.monotonic(), 1.0) * 1000)
    try:
        consumer = KafkaConsumer(**access.client_kwargs(), enable_auto_commit=False)
    except KafkaError as exc:
        log.warning("new topics not checked: %s", exc)
        return
    try:
        tps = [TopicPartition(t, p) for t, n in partitions.items() for p in range(n)]
        consumer.end_offsets(tps, timeout_ms=left_ms)
    except KafkaError as exc:  # not fatal: clients retry, they only log it
        log.warning("new topics not served yet: %s", exc)
    finally:
        consumer.close()


def scorer_groups(access: KafkaAccess, prefix: str, topic: str, exclude: str) -> list[str]:
    """slatestream scorer groups (`<prefix>-…scorer…`, other than `exclude`) with a member
    assigned partitions of `topic`, by the broker's group descriptions. Two such groups each
    receive every request and each answer it: a second --role list is a second group."""
    admin = admin_client(access, timeout_s=10.0)
    try:
        if not hasattr(admin, "list_groups"):  # kafka-python 2.x: not checked
            return []
        ids = [
            g["group_id"]
            for g in admin.list_groups()
            if g["group_id"] != exclude
            and g["group_id"].startswith(f"{prefix}-")
            and "scorer" in g["group_id"][len(prefix) + 1 :].split("-")
        ]
        if not ids:
            return []
        # Faust's member metadata is not the plain consumer protocol kafka-python decodes: its
        # warning about that is noise (the assignments, read below, decode)
        noisy = logging.getLogger("kafka.admin._groups")
        level = noisy.level
        noisy.setLevel(logging.ERROR)
        try:
            described = admin.describe_groups(ids)
        finally:
            noisy.setLevel(level)
        found = []
        for gid, desc in described.items():
            for member in desc.get("members") or ():
                got = member.get("member_assignment")
                parts = got.get("assigned_partitions", []) if isinstance(got, dict) else []
                if any(p.get("topic") == topic and p.get("partitions") for p in parts):
                    found.append(gid)
                    break
        return sorted(found)
    finally:
        admin.close()
