"""Memory-store specifics and the helpers behind the decayed scores (no Redis needed)."""

from __future__ import annotations

import math

import pytest

from features import (
    InteractionUpdate,
    MemoryJoinState,
    StoreConfig,
    StoreURLError,
    open_join_state,
    open_store,
)
from features.base import category_prefixes, decayed_log2, log2_add, value_now
from features.memory import MemoryFeatureStore
from features.redis_store import parse_url, with_namespace

pytestmark = pytest.mark.timeout(10)
T0 = 1_764_000_000_000


def test_log2_helpers_sum_and_decay() -> None:
    a, b = decayed_log2(1.0, T0, 3600), decayed_log2(3.0, T0, 3600)
    assert value_now(log2_add(a, b), T0, 3600) == pytest.approx(4.0)
    assert value_now(log2_add(None, a), T0 + 3_600_000, 3600) == pytest.approx(0.5)
    assert log2_add(-math.inf, a) == a
    assert value_now(a, T0 + 10**12, 1.0) == 0.0  # far future underflows to 0, no error
    assert category_prefixes(["a", "b", "c"]) == ["a", "a/b", "a/b/c"]
    assert category_prefixes([]) == []


def test_store_config_is_validated() -> None:
    with pytest.raises(ValueError):
        StoreConfig(sequence_length=0)
    with pytest.raises(ValueError):
        StoreConfig(popularity_half_life_s=0)
    with pytest.raises(ValueError):
        StoreConfig(dedupe_ttl_s=0)


def test_open_store_by_url() -> None:
    assert isinstance(open_store("memory://"), MemoryFeatureStore)
    with pytest.raises(StoreURLError):
        open_store("rocksdb:///tmp/x")
    assert isinstance(open_join_state("memory://"), MemoryJoinState)


def test_namespace_is_parsed_off_the_redis_url() -> None:
    assert parse_url("redis://h:1/0?namespace=abc") == ("redis://h:1/0", "abc")
    assert parse_url("redis://h:1/2?namespace=x&socket_timeout=3") == (
        "redis://h:1/2?socket_timeout=3",
        "x",
    )
    assert parse_url("redis://h:1/0") == ("redis://h:1/0", "ss")


def test_with_namespace_sets_ours_and_keeps_other_parameters() -> None:
    tls = "rediss://h:1/0?ssl_ca_certs=/x/ca.pem"
    assert parse_url(with_namespace(tls, "n1")) == (
        "rediss://h:1/0?ssl_ca_certs=%2Fx%2Fca.pem",
        "n1",
    )
    assert with_namespace("redis://h:1/0", "n2") == "redis://h:1/0?namespace=n2"
    assert parse_url(with_namespace("redis://h:1/0?namespace=old", "new"))[1] == "new"


async def test_dedupe_window_expires() -> None:
    store = MemoryFeatureStore(StoreConfig(dedupe_ttl_s=60))
    now = [1000.0]
    store.clock = lambda: now[0]
    ev = InteractionUpdate("e1", "u", "i", "click", T0)
    assert await store.update(ev)
    now[0] += 59
    assert not await store.update(ev)
    now[0] += 2  # past the window: the id is forgotten (the store is not a forever-log)
    assert await store.update(ev)
    assert (await store.get("u")).total == 2


async def test_memory_join_state_roundtrip() -> None:
    st = MemoryJoinState()
    await st.save(3, {"a": b"1", "b": b"2"})
    await st.save(3, {"c": b"3"}, ["a"])
    assert await st.load(3) == {"b": b"2", "c": b"3"}
    assert await st.load(4) == {}
    await st.clear()
    assert await st.load(3) == {}
