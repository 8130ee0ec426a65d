"""Joiner service: impressions ⋈ clicks within the window → feedback (memory state)."""

from __future__ import annotations

import pytest

from features import MemoryJoinState
from streams import schemas
from streams.config import Settings
from streams.handlers.ingest import JoinerHandler
from streams.runtime import Emit, Record
from streams.services.joiner_service import JoinerConfig, JoinerService
from streams.topics import topic_name

pytestmark = pytest.mark.timeout(30)
T0 = 1_764_000_000_000
W = 60_000  # attribution window: one minute
S = Settings(topic_prefix="j", attribution_window_ms=W)
IMP, INT = topic_name(S, "impressions"), topic_name(S, "interactions")
CFG = JoinerConfig(window_ms=W, allowed_lateness_ms=1_000, idle_flush_ms=10**9)


def imp(rid: str, ts: int, slate: list[str], user: str = "u1", part: int = 0) -> Record:
    ev = schemas.Impression(
        event_id=f"imp-{rid}",
        ts=ts,
        user_id=user,
        request_id=rid,
        slate=slate,
        propensities=[0.5] * len(slate),
        policy="in-slate-ts",
    )
    return Record(IMP, ev.to_json(), user.encode(), part)


def clk(
    eid: str, ts: int, item: str, rid: str | None = None, user: str = "u1", type: str = "click"
) -> Record:
    ev = schemas.Interaction(
        event_id=eid, ts=ts, user_id=user, item_id=item, type=type, request_id=rid
    )
    return Record(INT, ev.to_json(), user.encode(), 0)


def fbs(emits: list[Emit]) -> list[schemas.Feedback]:
    assert all(e.topic == topic_name(S, "feedback") for e in emits)
    return [schemas.Feedback.model_validate_json(e.value) for e in emits]


def service(state: MemoryJoinState | None = None) -> JoinerService:
    return JoinerService(S, state or MemoryJoinState(), CFG)


async def test_clicks_inside_the_window_are_attributed_once_the_window_closes() -> None:
    j = service()
    out = await j.process(
        [
            imp("r1", T0, ["a", "b", "c"]),
            clk("c1", T0 + 5_000, "c", "r1"),
            clk("c2", T0 + 10_000, "a", "r1", type="purchase"),
            clk("v1", T0 + 11_000, "b", "r1", type="view"),  # views are not clicks
            clk("c3", T0 + 12_000, "zz", "r1"),  # not in the slate: organic
            imp("r2", T0 + 1_000, ["x", "y"]),
        ]
    )
    assert out == []  # nothing closed yet
    assert j.open_impressions() == 2
    # event time moves past both windows (+ lateness) through another user's click
    out = await j.process([clk("o1", T0 + W + 2_000, "q", user="u2")])
    got = {f.request_id: f for f in fbs(out)}
    assert set(got) == {"r1", "r2"}
    r1 = got["r1"]
    assert not r1.late and r1.clicked_positions == [0, 2] and r1.window_ms == W
    assert [(c.position, c.delay_ms, c.type) for c in r1.clicks] == [
        (2, 5_000, "click"),
        (0, 10_000, "purchase"),
    ]
    assert r1.served_at == T0 and r1.propensities == [0.5] * 3 and r1.event_id == "fb-r1"
    assert got["r2"].clicks == [] and got["r2"].clicked_positions == []
    assert j.open_impressions() == 0


async def test_click_after_the_window_is_late_feedback_not_dropped() -> None:
    j = service()
    await j.process([imp("r1", T0, ["a", "b"])])
    out = await j.process([clk("c1", T0 + W + 500, "b", "r1")])  # outside, not yet closed
    (late,) = fbs(out)
    assert late.late and late.clicked_positions == [1] and late.clicks[0].delay_ms == W + 500
    out = await j.process([clk("o", T0 + 3 * W, "q", user="u9")])
    (closed,) = fbs(out)
    assert not closed.late and closed.clicks == []
    # a click for the closed impression, even inside its window by time, is late too
    (late2,) = fbs(await j.process([clk("c2", T0 + 100, "a", "r1")]))
    assert late2.late and late2.event_id == "fb-r1-late-c2"
    assert j.stats.late_reasons == {"after_window": 2}
    # redelivered late click: nothing new
    assert await j.process([clk("c2", T0 + 100, "a", "r1")]) == []


async def test_click_without_request_id_joins_the_newest_slate_of_the_user() -> None:
    j = service()
    await j.process(
        [
            imp("r1", T0, ["a", "b"]),
            imp("r2", T0 + 1_000, ["b", "c"]),
            clk("c1", T0 + 2_000, "b"),  # newest slate holding b: r2
            clk("c2", T0 + 3_000, "a"),  # only r1 holds a
            clk("c3", T0 + 3_000, "b", user="u2"),  # another user: nothing
        ]
    )
    got = {f.request_id: f for f in fbs(await j.flush())}
    assert got["r2"].clicked_positions == [0] and got["r1"].clicked_positions == [0]
    assert got["r1"].clicks[0].item_id == "a"


async def test_click_before_its_impression_arrives_is_held_and_joined() -> None:
    j = service()
    await j.process([clk("c1", T0 + 2_000, "b", "r1")])
    await j.process([imp("r1", T0, ["a", "b"])])
    (fb,) = fbs(await j.flush())
    assert fb.clicked_positions == [1] and fb.clicks[0].delay_ms == 2_000


async def test_click_for_an_impression_that_never_comes_is_counted() -> None:
    j = service()
    await j.process([clk("c1", T0, "b", "nope")])
    await j.process([clk("o", T0 + 3 * W, "q", user="u2")])
    assert j.stats.unknown_impression == 1
    assert j.stats.late_reasons == {"unknown_impression": 1}


async def test_state_survives_a_restart_and_redelivery_counts_nothing_twice() -> None:
    state = MemoryJoinState()
    j1 = service(state)
    batch = [imp("r1", T0, ["a", "b"]), clk("c1", T0 + 1_000, "a", "r1")]
    await j1.process(batch)
    # worker dies; a new one loads the state and gets the same batch again (no commit)
    j2 = service(state)
    assert await j2.process(batch) == []
    await j2.process([clk("c2", T0 + 2_000, "b", "r1")])
    (fb,) = fbs(await j2.process([clk("o", T0 + 3 * W, "q", user="u2")]))
    assert [c.event_id for c in fb.clicks] == ["c1", "c2"]


async def test_feedback_is_re_emitted_when_the_worker_died_before_publishing_it() -> None:
    state = MemoryJoinState()
    j1 = service(state)
    await j1.process([imp("r1", T0, ["a"])])
    out = await j1.process([clk("o", T0 + 3 * W, "q", user="u2")])
    assert len(out) == 1  # ... and the process dies before the publish is acked
    j2 = service(state)
    again = await j2.process([clk("o2", T0 + 3 * W + 1, "q", user="u2")])
    assert [f.event_id for f in fbs(again)] == ["fb-r1"]
    # once a later call ran (the publish went through), it is not emitted again
    assert await j2.process([]) == []
    j3 = service(state)
    assert await j3.process([clk("o3", T0 + 3 * W + 2, "q", user="u2")]) == []


async def test_idle_partitions_close_by_wall_time_through_tick() -> None:
    j = JoinerService(S, MemoryJoinState(), JoinerConfig(window_ms=W, idle_flush_ms=100))
    await j.process([imp("r1", T0, ["a"])])
    part = j.parts[0]
    assert await j.tick(part.last_advance + 10) == []
    (fb,) = fbs(await j.tick(part.last_advance + W / 1000 + 10))
    assert fb.request_id == "r1" and not fb.late


async def test_handler_records_metrics_and_has_a_tick() -> None:
    from streams.metrics import JOINER

    before = JOINER.impressions.labels(policy="in-slate-ts")._value.get()
    h = JoinerHandler(S, state=MemoryJoinState(), config=CFG)
    assert set(h.topics) == {IMP, INT}
    await h.handle([imp("r1", T0, ["a"]), clk("c", T0 + 1, "a", "r1")])
    assert JOINER.impressions.labels(policy="in-slate-ts")._value.get() == before + 1
    assert await h.tick() == []


async def test_revoked_partitions_are_forgotten_and_reloaded_from_the_state() -> None:
    state = MemoryJoinState()
    h = JoinerHandler(S, state=state, config=CFG)
    await h.handle([imp("r1", T0, ["a", "b"])])
    assert h.service.open_impressions() == 1
    await h.on_partitions_revoked({(IMP, 0), ("other.topic", 1)})
    assert h.service.parts == {} and h.service.open_impressions() == 0
    # the partition comes back (or goes to another worker): its state is in the JoinState
    await h.handle([clk("c1", T0 + 1_000, "b", "r1")])
    (fb,) = fbs(await h.service.flush())
    assert fb.clicked_positions == [1]


async def test_closed_slates_are_forgotten_after_the_retention() -> None:
    j = service()  # retention defaults to one window
    await j.process([imp("r1", T0, ["a"])])
    await j.process([clk("o1", T0 + W + 2_000, "q", user="u2")])  # closes r1
    await j.process([clk("o2", T0 + W + 3_000, "q", user="u2")])  # confirms it
    (late,) = fbs(await j.process([clk("c1", T0 + W + 4_000, "a", "r1")]))
    assert late.late  # still remembered: late feedback
    await j.process([clk("o3", T0 + 2 * W + 10_000, "q", user="u2")])  # past the retention
    assert "r1" not in j.parts[0].imps
    await j.process([clk("c2", T0 + 2 * W + 11_000, "a", "r1")])
    await j.process([clk("o4", T0 + 5 * W, "q", user="u2")])
    assert j.stats.late_reasons == {"after_window": 1, "unknown_impression": 1}


async def test_an_event_from_a_clock_far_ahead_does_not_close_open_slates() -> None:
    """One producer with a fast clock (23 h ahead: still valid) must not move the watermark
    past every open slate: the click that follows is attributed, not late."""
    import time

    now = int(time.time() * 1000)
    j = service()
    assert await j.process([imp("r1", now, ["a", "b"])]) == []
    ahead = clk("x1", now + 23 * 3600 * 1000, "q", user="u2")
    assert await j.process([ahead]) == []  # r1 stays open
    assert j.open_impressions() == 1
    out = await j.process([clk("c1", now + 2_000, "b", "r1")])
    assert out == [] and j.open_impressions() == 1
    got = fbs(await j.flush())
    assert [(f.request_id, f.late, f.clicked_positions) for f in got] == [("r1", False, [1])]
