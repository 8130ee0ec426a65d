"""One behavioural suite for every FeatureStore backend: memory and real Redis."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from features import (
    ALL,
    IMPRESSIONS,
    FeatureStore,
    ImpressionUpdate,
    InteractionUpdate,
    ItemUpdate,
    StoreConfig,
    UserFeatures,
    open_store,
)

T0 = 1_764_000_000_000  # epoch ms
HOUR = 3_600_000
CFG = StoreConfig(sequence_length=5, popularity_half_life_s=3600.0, affinity_half_life_s=3600.0)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, uid: str) -> AsyncIterator[FeatureStore]:
    """The store under test: memory, or Redis (unique namespace, deleted afterwards)."""
    if request.param == "memory":
        s = open_store("memory://", CFG)
    else:
        services = request.getfixturevalue("services")
        s = open_store(f"{services.redis_url}?namespace=c{uid}", CFG)
    yield s
    await s.clear()
    await s.close()


_n = 0


def click(user: str, item: str, ts: int, type: str = "click", w: float = 1.0, eid: str = "") -> Any:
    global _n
    _n += 1
    return InteractionUpdate(eid or f"e{_n}", user, item, type, ts, w)


def item(i: str, path: tuple[str, ...], ts: int = T0, eid: str = "", **kw: Any) -> ItemUpdate:
    global _n
    _n += 1
    return ItemUpdate(eid or f"m{_n}", i, ts, path, **kw)


pytestmark = pytest.mark.timeout(60)


async def test_unknown_user_and_item_are_empty(store: FeatureStore) -> None:
    u = await store.get("nobody")
    assert u.recent == [] and u.counts == {} and u.affinity == {} and u.total == 0
    it = await store.item("nothing")
    assert not it.known and it.counts == {} and it.popularity == 0.0
    assert await store.is_empty()
    assert await store.popular(10) == [] and await store.fresh(10) == []
    assert await store.global_counts() == {}


async def test_sequence_is_capped_newest_last_with_type_and_ts(store: FeatureStore) -> None:
    evs = [click("u1", f"i{k}", T0 + k, "view" if k % 2 else "click") for k in range(8)]
    await store.apply_many(evs[:3])
    await store.apply_many(evs[3:])
    u = await store.get("u1")
    assert u.recent_items == ["i3", "i4", "i5", "i6", "i7"]
    assert [(e.type, e.ts) for e in u.recent] == [
        ("view", T0 + 3),
        ("click", T0 + 4),
        ("view", T0 + 5),
        ("click", T0 + 6),
        ("view", T0 + 7),
    ]
    assert u.counts == {"click": 4, "view": 4, ALL: 8}
    # a list at the cap grows by one and is trimmed back; a list reaching it exactly is kept
    await store.apply_many([click("u1", "i8", T0 + 8)])
    await store.apply_many([click("u2", f"j{k}", T0 + k) for k in range(5)])
    u1, u2 = (await store.get_many(["u1", "u2"])).values()
    assert u1.recent_items == ["i4", "i5", "i6", "i7", "i8"]
    assert u2.recent_items == [f"j{k}" for k in range(5)]


def _recent(u: UserFeatures) -> list[tuple[str, str, int]]:
    return [(e.item_id, e.type, e.ts) for e in u.recent]


async def test_a_late_event_lands_at_its_event_time(store: FeatureStore) -> None:
    """A late interaction (a mobile client flushing its buffer) goes where its ts puts it,
    not at the end: the scorer's GRU must not take an old click as the latest action."""
    await store.apply_many([click("u1", "a", T0), click("u1", "c", T0 + 2 * HOUR)])
    await store.apply_many([click("u1", "d", T0 + 3 * HOUR)])
    await store.apply_many([click("u1", "b", T0 + HOUR, "view")])
    u = await store.get("u1")
    assert _recent(u) == [
        ("a", "click", T0),
        ("b", "view", T0 + HOUR),
        ("c", "click", T0 + 2 * HOUR),
        ("d", "click", T0 + 3 * HOUR),
    ]
    assert (await store.recent_and_affinity(["u1"]))["u1"][0] == ["a", "b", "c", "d"]
    await store.apply_many([click("u1", "z", T0 - 24 * HOUR)])  # a day late, list not full
    assert (await store.get("u1")).recent_items == ["z", "a", "b", "c", "d"]
    await store.apply_many([click("u1", "e", T0 + 4 * HOUR)])  # in order again: appended
    assert (await store.get("u1")).recent_items == ["a", "b", "c", "d", "e"]
    # ts are compared as numbers, exactly: 12 vs 13 digits, 1 ms apart near 1.8e12
    big = 1_799_999_999_998
    await store.apply_many(
        [click("u2", "n13", 1_000_000_000_001), click("u2", "n12", 999_999_999_999)]
    )
    await store.apply_many([click("u2", "b2", big + 1), click("u2", "b1", big)])
    assert (await store.get("u2")).recent_items == ["n12", "n13", "b1", "b2"]


async def test_events_with_the_same_ts_keep_their_arrival_order(store: FeatureStore) -> None:
    """Ties keep arrival order, so replaying the same log gives the same list."""
    await store.apply_many(
        [click("u1", "a", T0), click("u1", "b", T0 + 10), click("u1", "c", T0 + 10)]
    )
    await store.apply_many([click("u1", "x", T0 + 5), click("u1", "d", T0 + 10)])
    assert (await store.get("u1")).recent_items == ["a", "x", "b", "c", "d"]
    await store.apply_many([click("u1", "y", T0 + 5)])  # full list: the oldest (a) goes
    assert (await store.get("u1")).recent_items == ["x", "y", "b", "c", "d"]
    # as old as the oldest entry of a full list: not older than every entry, so it enters
    await store.apply_many([click("u1", "w", T0 + 5)])
    assert (await store.get("u1")).recent_items == ["y", "w", "b", "c", "d"]
    # equal entries (same item, type and ts) are distinct events: all kept, in order
    await store.apply_many(
        [click("u2", "m", T0 + 2), click("u2", "k", T0 + 2), click("u2", "r", T0 + 9)]
    )
    await store.apply_many([click("u2", "m", T0 + 2), click("u2", "n", T0 + 2)])
    u2 = await store.get("u2")
    assert u2.recent_items == ["m", "k", "m", "n", "r"] and u2.total == 5


async def test_an_event_older_than_a_full_list_is_left_out_but_counted(
    store: FeatureStore,
) -> None:
    await store.apply_many(
        [item("old", ("books",)), *[click("u1", f"i{k}", T0 + k * HOUR) for k in range(1, 6)]]
    )
    before = (await store.get("u1")).recent
    await store.apply_many([click("u1", "old", T0, "purchase", 4.0)])
    store.clock = lambda: T0 / 1000.0  # type: ignore[attr-defined]
    u = await store.get("u1")
    assert u.recent == before and len(before) == CFG.sequence_length
    assert u.counts == {"click": 5, "purchase": 1, ALL: 6}
    assert (await store.item("old")).counts == {"purchase": 1, ALL: 1}
    assert dict(await store.popular(10, now_ms=T0))["old"] == pytest.approx(4.0)
    assert u.affinity == {"books": pytest.approx(4.0)}
    # a list that is not full takes it at the front
    await store.apply_many([click("u2", "b", T0 + HOUR), click("u2", "a", T0)])
    assert (await store.get("u2")).recent_items == ["a", "b"]
    assert (await store.global_counts())["users"] == 2


async def test_out_of_order_within_a_batch_and_across_batches(store: FeatureStore) -> None:
    await store.apply_many(
        [
            click("u1", "c", T0 + 3),
            click("u1", "a", T0 + 1),
            click("u2", "y", T0 + 9),
            click("u1", "b", T0 + 2),
            click("u2", "x", T0 + 8),
        ]
    )
    got = await store.get_many(["u1", "u2"])
    assert got["u1"].recent_items == ["a", "b", "c"] and got["u2"].recent_items == ["x", "y"]
    assert (await store.global_counts())["users"] == 2  # new users, found out of order
    await store.apply_many(
        [
            click("u1", "f", T0 + 6),
            click("u1", "d", T0 + 4),
            click("u1", "g", T0 + 7),
            click("u1", "e", T0 + 5),
            click("u1", "z", T0),
        ]
    )
    assert (await store.get("u1")).recent_items == ["c", "d", "e", "f", "g"]
    await store.apply_many([click("u1", "q", T0 + 2), click("u1", "p", T0 + 1)])  # all too old
    u1 = await store.get("u1")
    assert u1.recent_items == ["c", "d", "e", "f", "g"] and u1.total == 10


async def test_a_redelivered_late_event_changes_nothing(store: FeatureStore) -> None:
    await store.apply_many([click("u1", f"i{k}", T0 + k * HOUR) for k in (1, 2, 4)])
    late = click("u1", "L", T0 + 3 * HOUR, eid="late-1")
    await store.apply_many([late])
    assert (await store.get("u1")).recent_items == ["i1", "i2", "L", "i4"]
    res = await store.apply_many([late, click("u1", "i5", T0 + 5 * HOUR), late])
    assert res.applied == {"interaction": 1} and res.duplicates == {"interaction": 2}
    assert not await store.update(late)
    u = await store.get("u1")
    assert u.recent_items == ["i1", "i2", "L", "i4", "i5"]
    assert u.counts == {"click": 5, ALL: 5}


async def test_recent_list_is_the_newest_by_event_time_however_batched(
    store: FeatureStore,
) -> None:
    """The list is the last `sequence_length` of all the user's events stably sorted by ts
    (arrival order on ties), whatever the batching: a replay gives the same list, and the
    memory and Redis stores agree."""
    rng = random.Random(11)
    evs = [
        click(
            f"u{rng.randrange(6)}",
            f"i{rng.randrange(4)}",
            T0 + 1000 * rng.randrange(30),
            rng.choice(("click", "view")),
        )
        for _ in range(400)
    ]
    want: dict[str, list[tuple[str, str, int]]] = {}
    for e in sorted(evs, key=lambda e: e.ts):  # stable: arrival order on ties
        want.setdefault(e.user_id, []).append((e.item_id, e.type, e.ts))
    want = {u: seq[-CFG.sequence_length :] for u, seq in want.items()}
    for prefix in ("a", "b"):
        await store.clear()
        log = [InteractionUpdate(prefix + e.event_id, *_fields(e)) for e in evs]
        j = 0
        while j < len(log):
            n = rng.randint(1, 60)
            redelivered = rng.sample(log[:j], min(j, 3))
            await store.apply_many(log[j : j + n] + redelivered)
            j += n
        got = await store.get_many(sorted(want))
        assert {u: _recent(f) for u, f in got.items()} == want
        light = await store.recent_and_affinity(sorted(want))
        assert {u: r for u, (r, _) in light.items()} == {
            u: [i for i, _, _ in seq] for u, seq in want.items()
        }
        assert sum(f.total for f in got.values()) == len(evs)


async def test_redelivered_event_changes_nothing(store: FeatureStore) -> None:
    e = click("u1", "i1", T0, eid="dup-1")
    r1 = await store.apply_many([e, e])
    assert r1.applied == {"interaction": 1} and r1.duplicates == {"interaction": 1}
    assert not await store.update(e)
    m = item("i9", ("a",), eid="dup-m")
    imp = ImpressionUpdate("dup-s", "u1", "r1", ("i1", "i2"), T0)
    r2 = await store.apply_many([m, imp, m, imp])
    assert r2.applied == {"item": 1, "impression": 1}
    assert r2.duplicates == {"item": 1, "impression": 1}
    u = await store.get("u1")
    assert u.counts == {"click": 1, ALL: 1} and u.recent_items == ["i1"]
    g = await store.global_counts()
    assert g == {"click": 1, ALL: 1, "users": 1, "items": 1, IMPRESSIONS: 1}
    assert (await store.item("i1")).counts == {"click": 1, ALL: 1, IMPRESSIONS: 1}


async def test_popularity_is_weighted_and_decays(store: FeatureStore) -> None:
    await store.apply_many(
        [
            click("u1", "a", T0),
            click("u2", "b", T0 - HOUR),  # one half-life older: worth half
            click("u3", "c", T0 - HOUR, "purchase", 4.0),
            click("u4", "d", T0, "view", 0.0),  # weight 0: counted, no popularity
        ]
    )
    top = await store.popular(10, now_ms=T0)
    assert [i for i, _ in top] == ["c", "a", "b"]
    vals = dict(top)
    assert vals["a"] == pytest.approx(1.0)
    assert vals["b"] == pytest.approx(0.5)
    assert vals["c"] == pytest.approx(2.0)
    later = dict(await store.popular(10, now_ms=T0 + 2 * HOUR))
    assert later["a"] == pytest.approx(0.25)
    assert (await store.item("d")).counts == {"view": 1, ALL: 1}
    assert [i for i, _ in await store.popular(1, now_ms=T0)] == ["c"]


async def test_popularity_does_not_depend_on_order(store: FeatureStore) -> None:
    rng = random.Random(3)
    evs = [click(f"u{k % 7}", f"i{k % 5}", T0 + rng.randint(-5 * HOUR, 0)) for k in range(60)]
    await store.apply_many(evs)
    first = dict(await store.popular(5, now_ms=T0))
    await store.clear()
    rng.shuffle(evs)
    await store.apply_many([InteractionUpdate("x" + e.event_id, *_fields(e)) for e in evs])
    second = dict(await store.popular(5, now_ms=T0))
    assert first.keys() == second.keys()
    for k in first:
        assert first[k] == pytest.approx(second[k], rel=1e-9)


def _fields(e: InteractionUpdate) -> tuple[Any, ...]:
    return (e.user_id, e.item_id, e.type, e.ts, e.weight)


async def test_category_affinity_decays_and_uses_item_metadata(store: FeatureStore) -> None:
    await store.apply_many(
        [
            item("i1", ("movies", "comedy")),
            item("i2", ("books",)),
            click("u1", "i1", T0),
            click("u1", "i1", T0 - HOUR, "purchase", 4.0),
            click("u1", "i2", T0 - 2 * HOUR),
            click("u1", "unknown", T0),  # no metadata: no affinity
        ]
    )
    store.clock = lambda: T0 / 1000.0  # type: ignore[attr-defined]
    aff = (await store.get("u1")).affinity
    assert aff.keys() == {"movies/comedy", "books"}
    assert aff["movies/comedy"] == pytest.approx(1.0 + 2.0)
    assert aff["books"] == pytest.approx(0.25)


async def test_item_metadata_categories_and_fresh(store: FeatureStore) -> None:
    await store.apply_many(
        [
            item("i1", ("movies", "comedy"), T0, attributes={"year": 1995}, text="Toy Story"),
            item("i2", ("movies", "drama"), T0 + 10),
            item("i3", ("books",), T0 + 20),
            item("i4", (), T0 + 30),
        ]
    )
    it = await store.item("i1")
    assert it.known and it.category_path == ("movies", "comedy")
    assert it.attributes == {"year": 1995} and it.text == "Toy Story" and it.added_ts == T0
    assert await store.categories(["i1", "i3", "i4", "zz"]) == {
        "i1": "movies/comedy",
        "i3": "books",
        "i4": "",
    }
    assert await store.fresh(3) == ["i4", "i3", "i2"]
    assert await store.items() == ["i1", "i2", "i3", "i4"]
    assert await store.items("movies") == ["i1", "i2"]
    assert await store.items("movies/drama") == ["i2"]
    assert await store.category_list() == ["books", "movies", "movies/comedy", "movies/drama"]
    # an item event again: metadata replaced, category moved, first-seen time kept
    await store.update(item("i2", ("books", "poetry"), T0 + 99))
    assert await store.items("movies") == ["i1"]
    assert await store.items("books") == ["i2", "i3"]
    assert "movies/drama" not in await store.category_list()
    assert (await store.item("i2")).added_ts == T0 + 10
    assert (await store.global_counts())["items"] == 4


async def test_an_older_item_version_arriving_late_does_not_win(store: FeatureStore) -> None:
    """Item events may arrive out of order (a replay, a retrying producer): the version with
    the newest ts is kept; a late older one can only move the first-seen time back."""
    await store.update(item("i1", ("books", "poetry"), T0 + 50, text="v2"))
    await store.update(item("i1", ("movies",), T0 + 20, text="v1"))  # older, arrives later
    it = await store.item("i1")
    assert it.category_path == ("books", "poetry") and it.text == "v2"
    assert it.added_ts == T0 + 20
    assert await store.items("movies") == [] and await store.items("books") == ["i1"]
    assert await store.categories(["i1"]) == {"i1": "books/poetry"}
    await store.update(item("i1", ("movies",), T0 + 50, text="v2b"))  # same ts: last wins
    assert (await store.item("i1")).text == "v2b"
    await store.apply_many(  # out of order within one batch too
        [item("i2", ("a",), T0 + 9), item("i2", ("b",), T0 + 5)]
    )
    assert (await store.item("i2")).category_path == ("a",)
    assert (await store.global_counts())["items"] == 2


async def test_a_retired_item_leaves_the_lists_until_a_newer_version_brings_it_back(
    store: FeatureStore,
) -> None:
    """`available=False` retires an item: out of popular, fresh and the category listings,
    and its interactions while retired add no popularity; its metadata and category stay
    (affinities of later clicks still use it). An older version arriving late does not
    change that; a newer available one reinstates it."""
    await store.apply_many(
        [
            item("i1", ("movies", "comedy"), T0),
            item("i2", ("movies", "drama"), T0 + 10),
            click("u1", "i1", T0 + 20),
            click("u1", "i2", T0 + 21),
        ]
    )
    assert {i for i, _ in await store.popular(5, now_ms=T0)} == {"i1", "i2"}
    assert await store.retired() == {}
    await store.update(item("i1", ("movies", "comedy"), T0 + 30, available=False))
    gone = await store.retired()
    assert list(gone) == ["i1"] and gone["i1"] > T0
    assert await store.retired(since_ms=gone["i1"] + 1) == {}
    assert [i for i, _ in await store.popular(5, now_ms=T0)] == ["i2"]
    assert await store.fresh(5) == ["i2"]
    assert await store.items() == ["i2"] and await store.items("movies") == ["i2"]
    assert "movies/comedy" not in await store.category_list()
    it = await store.item("i1")
    assert it.known and not it.available and it.category_path == ("movies", "comedy")
    assert (await store.item("i2")).available
    assert await store.categories(["i1"]) == {"i1": "movies/comedy"}
    await store.apply_many(
        [
            click("u2", "i1", T0 + 40),  # viewed while retired: counted, no popularity
            item("i1", ("movies",), T0 + 5),  # an older version arriving late: still retired
            item("i1", ("movies", "comedy"), T0 + 30, available=False),  # again: time kept
        ]
    )
    assert [i for i, _ in await store.popular(5, now_ms=T0)] == ["i2"]
    assert (await store.item("i1")).counts["click"] == 2
    assert "movies/comedy" in (await store.get("u2")).affinity
    assert await store.fresh(5) == ["i2"] and await store.retired() == gone
    await store.update(item("i1", ("movies", "comedy"), T0 + 60))  # back, newer version
    assert await store.retired() == {} and (await store.item("i1")).available
    assert await store.fresh(5) == ["i2", "i1"]  # first-seen time kept
    assert await store.items("movies/comedy") == ["i1"]
    await store.update(click("u3", "i1", T0 + 70))
    assert {i for i, _ in await store.popular(5, now_ms=T0)} == {"i1", "i2"}


async def test_items_brought_back_are_listed_as_restored_until_retired_again(
    store: FeatureStore,
) -> None:
    """`restored(since)`: the items whose retirement a newer available version ended, by
    when (the store's clock); an item never retired, or retired again, is not listed."""
    await store.apply_many([item("i1", ("a",), T0), item("i2", ("a",), T0 + 1)])
    assert await store.restored() == {}
    await store.update(item("i2", ("a",), T0 + 2))  # a new version, never retired: not listed
    await store.update(item("i1", ("a",), T0 + 10, available=False))
    gone = await store.retired()
    assert await store.restored() == {}
    await store.update(item("i1", ("a",), T0 + 20))
    back = await store.restored()
    assert list(back) == ["i1"] and back["i1"] >= gone["i1"]
    assert await store.retired() == {}
    assert await store.restored(since_ms=back["i1"] + 1) == {}
    assert await store.restored(since_ms=back["i1"]) == back
    await store.update(item("i1", ("a",), T0 + 30, available=False))  # retired again
    assert await store.restored() == {} and list(await store.retired()) == ["i1"]


async def test_impressions_count_per_item(store: FeatureStore) -> None:
    await store.apply_many(
        [
            ImpressionUpdate("s1", "u1", "r1", ("a", "b"), T0),
            ImpressionUpdate("s2", "u2", "r2", ("b", "c"), T0),
        ]
    )
    got = await store.items_many(["a", "b", "c"])
    assert [got[i].counts.get(IMPRESSIONS) for i in "abc"] == [1, 2, 1]
    assert (await store.global_counts())[IMPRESSIONS] == 2


async def test_large_batch_and_many_users(store: FeatureStore) -> None:
    evs = [click(f"u{k % 300}", f"i{k % 50}", T0 + k) for k in range(4500)]
    evs += evs[:100]  # redelivered tail
    res = await store.apply_many(evs)
    assert res.n_applied == 4500 and res.n_duplicates == 100
    users = await store.get_many([f"u{k}" for k in range(300)] + ["u0"])
    assert len(users) == 300
    assert all(u.total == 15 for u in users.values())
    assert users["u7"].recent_items == [f"i{k % 50}" for k in range(7 + 300 * 10, 4500, 300)]
    g = await store.global_counts()
    assert g == {"click": 4500, ALL: 4500, "users": 300}


async def test_recent_and_affinity_is_the_light_view_of_get_many(store: FeatureStore) -> None:
    # 600 users: more than one read chunk of the Redis script
    evs = [item("i1", ("movies", "comedy")), item("i2", ("books",))]
    evs += [click(f"u{k % 600}", f"i{1 + k // 600}", T0 + k) for k in range(1200)]
    await store.apply_many(evs)
    store.clock = lambda: (T0 + 1200) / 1000.0  # type: ignore[attr-defined]
    ids = [f"u{k}" for k in range(600)] + ["u3", "nobody"]
    light = await store.recent_and_affinity(ids)
    full = await store.get_many(ids)
    assert list(light) == list(full) and len(light) == 601
    for u, (recent, aff) in light.items():
        assert recent == full[u].recent_items
        assert aff == pytest.approx(full[u].affinity)
    assert light["u4"][0] == ["i1", "i2"] and light["nobody"] == ([], {})
    assert set(light["u4"][1]) == {"books", "movies/comedy"}


async def test_clear_empties_the_store(store: FeatureStore) -> None:
    await store.apply_many([click("u1", "i1", T0), item("i1", ("a",))])
    assert not await store.is_empty()
    await store.clear()
    assert await store.is_empty()
    assert (await store.get("u1")).total == 0 and await store.items() == []


async def test_join_state_next_to_the_store(store: FeatureStore) -> None:
    """The joiner's per-partition state lives beside the store (same Redis and namespace)."""
    from features import join_state_for

    st = join_state_for(store, "jt")
    await st.save(0, {"r1": b"x", "~wm": b"5"})
    await st.save(1, {"r2": b"y"})
    await st.save(0, {"r3": b"z"}, ["r1"])
    assert await st.load(0) == {"~wm": b"5", "r3": b"z"}
    assert await st.load(1) == {"r2": b"y"}
    await st.clear()
    assert await st.load(0) == {} and await st.load(1) == {}


async def test_redis_dedupe_marks_live_in_time_buckets(services: Any, uid: str) -> None:
    """Redis keeps dedupe marks in one set per bucket (a quarter of the window, Redis
    clock): marks of every bucket still in the window count, older buckets are dropped."""
    ttl = 40_000  # buckets of 10,000 s: the test never straddles a boundary in practice
    s: Any = open_store(f"{services.redis_url}?namespace=d{uid}", StoreConfig(dedupe_ttl_s=ttl))
    try:
        now = int((await s.client.time())[0])
        cur = now // 10_000
        key = f"d{uid}:dedupe:"
        await s.client.sadd(key + str(cur - 4), "old-in-window")
        await s.client.sadd(key + str(cur - 5), "old-out-of-window")
        res = await s.apply_many(
            [click("u1", "i1", T0, eid=e) for e in ("old-in-window", "old-out-of-window", "new")]
        )
        assert res.applied == {"interaction": 2} and res.duplicates == {"interaction": 1}
        assert not await s.client.exists(key + str(cur - 5))  # left the window: unlinked
        marks = await s.client.smembers(key + str(cur))
        assert marks == {b"old-out-of-window", b"new"}
        # alive until its bucket leaves the window, plus one bucket of slack
        assert await s.client.expiretime(key + str(cur)) == (cur + 6) * 10_000
    finally:
        await s.clear()
        await s.close()


async def test_overlapping_writes_land_in_call_order(store: FeatureStore) -> None:
    """A feature worker starts batch N+1's write while N's runs: the store applies them in
    call order. Here the order matters: a retirement drops an item's popularity, and only
    the clicks after the newer version that brings it back count again."""
    import asyncio

    path = ("c", "c1")
    a: list[Any] = [click(f"u{j}", "i5", T0 + 1000 * j) for j in range(40)]
    a.append(item("i5", path, T0 + 100_000, available=False))
    b: list[Any] = [item("i5", path, T0 + 200_000), click("u1", "i5", T0 + 300_000)]
    popularity = []
    for run in ("in turn", "overlapping", "reversed"):
        await store.clear()
        await store.apply_many([item("i5", path, T0)])
        if run == "in turn":
            await store.apply_many(a)
            await store.apply_many(b)
        elif run == "overlapping":
            await asyncio.gather(store.apply_many(a), store.apply_many(b))
        else:
            await store.apply_many(b)
            await store.apply_many(a)
        popularity.append(dict(await store.popular(5, now_ms=T0 + 300_000)).get("i5"))
    in_turn, overlapping, reversed_ = popularity
    assert overlapping == in_turn
    assert reversed_ != in_turn  # the order is visible, so the check above means something
