"""Durable state of the impression–click joiner: one small key→bytes map per partition.

The joiner (streams.services.joiner_service) keeps its open impressions in memory and
writes every change through to a `JoinState` before its batch is acknowledged, so a
restarted worker reloads exactly what it had (state survives restarts). Keys are
per partition because a partition is the unit Kafka hands to one worker.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping
from typing import Any


class JoinState(ABC):
    """Per-partition key→bytes persistence for the joiner."""

    @abstractmethod
    async def load(self, partition: int) -> dict[str, bytes]:
        """Everything stored for `partition`."""

    @abstractmethod
    async def save(
        self, partition: int, upserts: Mapping[str, bytes], deletes: Collection[str] = ()
    ) -> None:
        """Write upserts and deletions of one partition; durable on return."""

    @abstractmethod
    async def clear(self) -> None:
        """Forget every partition."""


class MemoryJoinState(JoinState):
    """Dicts in this process (embedded mode, unit tests)."""

    def __init__(self) -> None:
        self.data: dict[int, dict[str, bytes]] = {}

    async def load(self, partition: int) -> dict[str, bytes]:
        """A copy of the partition's map."""
        return dict(self.data.get(partition, {}))

    async def save(
        self, partition: int, upserts: Mapping[str, bytes], deletes: Collection[str] = ()
    ) -> None:
        """Apply upserts, then deletions."""
        part = self.data.setdefault(partition, {})
        part.update(upserts)
        for k in deletes:
            part.pop(k, None)

    async def clear(self) -> None:
        """Drop everything."""
        self.data.clear()


class RedisJoinState(JoinState):
    """One Redis hash per partition: `<namespace>:join:<name>:<partition>`."""

    def __init__(self, client: Any, namespace: str, name: str) -> None:
        self.client = client
        self.prefix = f"{namespace}:join:{name}"

    def _key(self, partition: int) -> str:
        return f"{self.prefix}:{partition}"

    async def load(self, partition: int) -> dict[str, bytes]:
        """HGETALL of the partition's hash."""
        from features.redis_store import as_unavailable

        with as_unavailable():
            rows = await self.client.hgetall(self._key(partition))
        return {(k.decode() if isinstance(k, bytes) else k): v for k, v in rows.items()}

    async def save(
        self, partition: int, upserts: Mapping[str, bytes], deletes: Collection[str] = ()
    ) -> None:
        """HSET + HDEL in one MULTI/EXEC round trip."""
        if not upserts and not deletes:
            return
        from features.redis_store import as_unavailable

        key = self._key(partition)
        with as_unavailable():
            async with self.client.pipeline(transaction=True) as pipe:
                if upserts:
                    pipe.hset(key, mapping=dict(upserts))
                if deletes:
                    pipe.hdel(key, *deletes)
                await pipe.execute()

    async def clear(self) -> None:
        """UNLINK every partition hash."""
        keys = [k async for k in self.client.scan_iter(match=f"{self.prefix}:*", count=1000)]
        if keys:
            await self.client.unlink(*keys)


def join_state_for(store: object, name: str = "joiner") -> JoinState:
    """Join state next to a feature store: the same Redis (and namespace), else in memory."""
    from features.redis_store import RedisFeatureStore

    if isinstance(store, RedisFeatureStore):
        return RedisJoinState(store.client, store.namespace, name)
    return MemoryJoinState()


def open_join_state(url: str, name: str = "joiner") -> JoinState:
    """Join state by URL: `memory://` or `redis://…?namespace=…`."""
    from features import open_store

    return join_state_for(open_store(url), name)
