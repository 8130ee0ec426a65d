"""Which Redis settings the feature store warns about (CONFIG GET values, no server)."""

from __future__ import annotations

import pytest

from features.redis_store import durability_warnings_for

pytestmark = pytest.mark.timeout(10)

SAFE = {"maxmemory": "0", "maxmemory-policy": "noeviction", "appendonly": "yes", "save": ""}


def test_aof_without_a_memory_limit_is_safe() -> None:
    assert durability_warnings_for(SAFE) == []
    # an eviction policy without a limit never evicts
    assert durability_warnings_for({**SAFE, "maxmemory-policy": "allkeys-lru"}) == []


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-ttl", "allkeys-random"])
def test_eviction_under_a_memory_limit_is_reported(policy: str) -> None:
    (msg,) = durability_warnings_for(
        {**SAFE, "maxmemory": "1073741824", "maxmemory-policy": policy}
    )
    assert policy in msg and "noeviction" in msg and "counted twice" in msg


def test_a_full_noeviction_server_is_not_a_durability_problem() -> None:
    assert durability_warnings_for({**SAFE, "maxmemory": "1073741824"}) == []


def test_missing_persistence_says_what_a_restart_loses() -> None:
    (none,) = durability_warnings_for({**SAFE, "appendonly": "no", "save": ""})
    assert "every feature" in none and "features rebuild" in none
    (rdb,) = durability_warnings_for({**SAFE, "appendonly": "no", "save": "3600 1 300 100"})
    assert "since the last RDB snapshot" in rdb
