"""The Redis store's error contract without a server: every operation against a port nobody
listens on raises `StoreUnavailable` (what workers handle), never a raw redis-py error."""

from __future__ import annotations

import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from features import InteractionUpdate, StoreUnavailable, open_store
from features.redis_store import RedisFeatureStore

pytestmark = pytest.mark.timeout(30)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


OPS: dict[str, Callable[[Any], Awaitable[object]]] = {
    "apply_many": lambda s: s.apply_many([InteractionUpdate("e1", "u1", "i1", "click", 1, 1.0)]),
    "get_many": lambda s: s.get_many(["u1", "u2"]),
    "recent_and_affinity": lambda s: s.recent_and_affinity(["u1"]),
    "items_many": lambda s: s.items_many(["i1"]),
    "categories": lambda s: s.categories(["i1"]),
    "popular": lambda s: s.popular(10),
    "fresh": lambda s: s.fresh(10),
    "items": lambda s: s.items(),
    "category_list": lambda s: s.category_list(),
    "global_counts": lambda s: s.global_counts(),
    "is_empty": lambda s: s.is_empty(),
}


@pytest.mark.parametrize("op", sorted(OPS))
async def test_every_operation_raises_store_unavailable(op: str) -> None:
    store = open_store(f"redis://127.0.0.1:{_closed_port()}/0?namespace=x")
    assert isinstance(store, RedisFeatureStore)
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailable, match="redis"):
        await OPS[op](store)
    assert time.monotonic() - t0 < 10  # refused at once; a black hole hits the 2 s connect timeout
    await store.close()


def test_client_has_timeouts_unless_the_url_sets_them() -> None:
    store = open_store("redis://127.0.0.1:1/0?namespace=x")
    assert isinstance(store, RedisFeatureStore)
    kw = store.client.connection_pool.connection_kwargs
    assert kw["socket_connect_timeout"] == 2.0 and kw["socket_timeout"] == 10.0
    own = open_store("redis://127.0.0.1:1/0?namespace=x&socket_timeout=3")
    assert isinstance(own, RedisFeatureStore)
    assert own.client.connection_pool.connection_kwargs["socket_timeout"] == 3.0
