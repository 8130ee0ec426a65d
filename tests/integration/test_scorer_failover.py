"""Two real scorer workers share the requests topic; one is killed with SIGKILL (no goodbye
to the group). The other takes over its partitions once the configured session timeout
runs out, so every request is answered and none waits for Faust's 60 s default."""

from __future__ import annotations

import logging
import os
import signal
import struct
import time
from pathlib import Path
from typing import Any

import pytest

from bench.bench_ingest import start_worker, stop_worker, worker_env
from features import InteractionUpdate, ItemUpdate, open_store
from streams import schemas
from streams.broker import ensure_topics
from streams.config import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = [f"u{i}" for i in range(24)]  # keys on every one of the 4 partitions
SESSION_TIMEOUT_S = 6.0
# far below Faust's own 60 s session timeout, well above 6 s plus a rebalance
TAKEOVER_DEADLINE_S = 40.0


async def _catalogue(url: str) -> None:
    """A few items with clicks: the popular list a model-less scorer serves from."""
    store = open_store(url)
    now = int(time.time() * 1000)
    events: list[Any] = [ItemUpdate(f"it{i}", f"i{i}", now, ("c", str(i % 3))) for i in range(30)]
    events += [
        InteractionUpdate(f"x{j}", f"bg{j % 5}", f"i{j % 30}", "click", now, 1.0) for j in range(90)
    ]
    await store.apply_many(events)
    await store.close()


def _partitions(assignment: Any) -> dict[str, list[int]]:
    """Topic -> partitions of a member's assignment: raw consumer-protocol bytes (Faust's
    assignor adds user data kafka-python may fail to decode) or as kafka-python decoded it."""
    if isinstance(assignment, dict):
        return {a["topic"]: list(a["partitions"]) for a in assignment["assigned_partitions"]}
    off, out = 2, {}  # int16 version, then [topic, [partition]], then user data
    (n_topics,) = struct.unpack_from(">i", assignment, off)
    off += 4
    for _ in range(n_topics):
        (size,) = struct.unpack_from(">h", assignment, off)
        topic = bytes(assignment[off + 2 : off + 2 + size]).decode()
        off += 2 + size
        (n,) = struct.unpack_from(">i", assignment, off)
        out[topic] = list(struct.unpack_from(f">{n}i", assignment, off + 4))
        off += 4 + 4 * n
    return out


def _owners(boot: str, group: str) -> list[set[int]]:
    """The requests partitions each member of a stable scorer group holds."""
    from kafka.admin import KafkaAdminClient

    logging.getLogger("kafka").setLevel(logging.ERROR)  # it cannot decode Faust's user data
    admin = KafkaAdminClient(bootstrap_servers=boot)
    try:
        desc = admin.describe_groups([group])[group]
    finally:
        admin.close()
    if desc.get("error") or desc.get("group_state") != "Stable":
        return []
    out = []
    for member in desc.get("members", []):
        assigned = _partitions(member["member_assignment"])
        out.append({p for t, ps in assigned.items() if t.endswith(".requests") for p in ps})
    return out


@pytest.mark.timeout(300)
async def test_killed_scorer_partitions_are_taken_over_within_the_session_timeout(
    services: Any, topic_prefix: str, uid: str, tmp_path: Path
) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    boot = services.kafka_bootstrap
    ensure_topics(Settings(kafka_bootstrap=boot, topic_prefix=topic_prefix, partitions=4))
    await _catalogue(f"{services.redis_url}?namespace=f{uid}")
    env = worker_env(
        services,
        topic_prefix,
        f"f{uid}",
        str(tmp_path / "state"),
        SLATESTREAM_REGISTRY_URL=str(tmp_path / "registry"),
        SLATESTREAM_SESSION_TIMEOUT_S=str(SESSION_TIMEOUT_S),
    )
    logs = [tmp_path / "scorer0.log", tmp_path / "scorer1.log"]
    workers = [start_worker(env, "scorer", log) for log in logs]
    producer = AIOKafkaProducer(bootstrap_servers=boot, acks="all")
    consumer = AIOKafkaConsumer(
        f"{topic_prefix}.recommendations", bootstrap_servers=boot, auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    answered: dict[str, float] = {}

    async def receive(until: float, want: set[str]) -> None:
        while time.monotonic() < until and not want <= answered.keys():
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                for m in msgs:
                    rec = schemas.Recommendation.model_validate_json(m.value)
                    answered.setdefault(rec.request_id, time.monotonic())

    async def ask_everyone(tag: str) -> set[str]:
        rids = set()
        for user in USERS:
            rid = f"{tag}-{user}"
            req = schemas.Request(
                event_id=f"e-{rid}", ts=int(time.time() * 1000), request_id=rid, user_id=user, k=5
            )
            await producer.send(f"{topic_prefix}.requests", req.to_json(), key=user.encode())
            rids.add(rid)
        await producer.flush()
        return rids

    try:
        # both workers up, the group stable with partitions on each of them
        deadline = time.monotonic() + 180
        owners: list[set[int]] = []
        while time.monotonic() < deadline:
            rids = await ask_everyone(f"warm{len(answered)}")
            await receive(time.monotonic() + 3, rids)
            owners = _owners(boot, f"{topic_prefix}-scorer")
            if rids <= answered.keys() and len(owners) == 2 and all(owners):
                break
        assert len(owners) == 2 and all(owners), (owners, [p.read_text()[-2000:] for p in logs])

        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].wait()
        killed_at = time.monotonic()
        after: set[str] = set()
        round_no = 0
        while time.monotonic() < killed_at + TAKEOVER_DEADLINE_S and not (
            after and after <= answered.keys()
        ):
            after |= await ask_everyone(f"after{round_no}")
            round_no += 1
            await receive(time.monotonic() + 1.0, after)
        missing = sorted(after - answered.keys())
        assert not missing, (
            f"{len(missing)} requests sent after the kill unanswered after "
            f"{TAKEOVER_DEADLINE_S} s: {missing[:5]}\n{logs[1].read_text()[-3000:]}"
        )
        assert _owners(boot, f"{topic_prefix}-scorer") == [{0, 1, 2, 3}]
    finally:
        await producer.stop()
        await consumer.stop()
        for w in workers:
            stop_worker(w)
    assert "Traceback" not in logs[1].read_text(errors="replace")
