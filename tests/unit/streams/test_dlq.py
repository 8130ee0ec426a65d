"""Dead letters read back (`streams.dlq`): which records today's settings accept, where a
redrive publishes them, and the `dlq` command's input errors (no broker needed)."""

from __future__ import annotations

import base64
import json
import time

import pytest

from streams import schemas
from streams.config import Settings
from streams.dlq import Letter, Redrive, Selection, Summary, letter_json, recheck
from streams.errors import ConfigError, SchemaError
from streams.handlers.edge import decode_or_dead_letter
from streams.runtime import Record
from streams.services.feature_service import FeatureService
from tests.unit.streams.test_cli_bad_input import assert_one_line_error

NOW = int(time.time() * 1000)
S = Settings(topic_prefix="p")


def _interaction(**over: object) -> bytes:
    ev = {**schemas.example("interaction"), "ts": NOW, **over}
    return json.dumps(ev).encode()


def _dead_letter(settings: Settings, topic: str, raw: bytes, key: bytes = b"u1") -> Letter:
    """The DLQ record a feature worker with `settings` writes for `raw`, read back."""
    from features.memory import MemoryFeatureStore

    service = FeatureService(settings, MemoryFeatureStore())
    rec = Record(topic, raw, key, partition=2, offset=41)
    try:
        service.decode(rec, NOW)
    except SchemaError as exc:
        emit = service.dead_letter(rec, exc)
        assert emit.topic == "p.dlq"
        return Letter.of(Record("p.dlq", emit.value, emit.key, 0, 7))
    raise AssertionError(f"{raw!r} was accepted")


@pytest.mark.timeout(10)
def test_a_dead_letter_reads_back_and_junk_is_not_one() -> None:
    letter = _dead_letter(S, "p.interactions", b"{not json")
    assert letter.dead is not None and letter.dead.reason == "malformed_json"
    assert letter.dead.original == b"{not json" and letter.dead.key == "u1"
    assert (letter.partition, letter.offset) == (0, 7)
    assert Letter.of(Record("p.dlq", b"plain text")).dead is None
    bad_b64 = json.dumps({"reason": "x", "topic": "p.items", "original_b64": "%%%"}).encode()
    assert Letter.of(Record("p.dlq", bad_b64)).dead is None


AHEAD = NOW + 3 * 86_400_000  # a producer clock three days ahead: beyond the skew allowed


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "raw, then, reason, now, later",
    [
        # an interaction type without a weight, until it gets one
        (
            _interaction(type="share"),
            S,
            "unknown_interaction_type",
            NOW,
            Settings(topic_prefix="p", event_weights={"click": 1.0, "share": 0.5}),
        ),
        # a payload over the limit, until the limit is raised
        (
            _interaction(value=1.0, request_id="r" * 250),
            Settings(topic_prefix="p", max_event_bytes=300),
            "oversized",
            NOW,
            S,
        ),
        # a timestamp too far ahead, until its time has come
        (_interaction(ts=AHEAD), S, "bad_timestamp", AHEAD, S),
    ],
)
def test_a_reason_that_stops_applying_makes_the_record_valid(
    raw: bytes, then: Settings, reason: str, now: int, later: Settings
) -> None:
    letter = _dead_letter(then, "p.interactions", raw)
    assert letter.dead is not None and letter.dead.reason == reason
    err = recheck(letter.dead, then, NOW)  # the settings that refused it still do
    assert err is not None and err.reason == reason
    assert recheck(letter.dead, later, now) is None


@pytest.mark.timeout(10)
def test_still_broken_records_keep_their_reason() -> None:
    for raw, reason in [(b"{not json", "malformed_json"), (b"[1]", "not_an_object")]:
        letter = _dead_letter(S, "p.interactions", raw)
        assert letter.dead is not None
        err = recheck(letter.dead, S, NOW)
        assert err is not None and err.reason == reason


@pytest.mark.timeout(10)
@pytest.mark.parametrize("logical", ["items", "impressions", "feedback"])
def test_other_redriven_topics_are_checked_as_their_event_kind(logical: str) -> None:
    kind = {"items": "item", "impressions": "impression", "feedback": "feedback"}[logical]
    good = json.dumps({**schemas.example(kind), "ts": NOW}).encode()
    dead = schemas.DeadLetter.of(good, SchemaError("x"), topic=f"p.{logical}", key=b"k")
    assert recheck(dead, S, NOW) is None
    wrong = json.dumps({**schemas.example(kind), "ts": NOW, "event_id": 5.5}).encode()
    dead = schemas.DeadLetter.of(wrong, SchemaError("x"), topic=f"p.{logical}")
    err = recheck(dead, S, NOW)
    assert err is not None and err.reason == "wrong_type"


@pytest.mark.timeout(10)
def test_requests_and_foreign_topics_are_not_redriven() -> None:
    raw = json.dumps({**schemas.example("request"), "ts": NOW}).encode()
    rec = Record("p.requests", b"{", b"u1")
    _, emit, _ = decode_or_dead_letter(rec, schemas.Request, S, "scorer")
    assert emit is not None
    dead = Letter.of(Record("p.dlq", emit.value)).dead
    assert dead is not None
    err = recheck(dead, S, NOW)
    assert err is not None and err.reason == "not_redriven"
    other = schemas.DeadLetter.of(raw, SchemaError("x"), topic="q.interactions")
    err = recheck(other, S, NOW)
    assert err is not None and err.reason == "not_redriven"


@pytest.mark.timeout(10)
def test_redrive_publishes_the_original_bytes_and_key_to_the_original_topic() -> None:
    later = Settings(topic_prefix="p", event_weights={"click": 1.0, "share": 0.5})
    share = _interaction(type="share")
    letters = [
        _dead_letter(S, "p.interactions", share, key=b"u7"),
        _dead_letter(S, "p.interactions", b"{not json"),
        Letter.of(Record("p.dlq", b"junk")),
        Letter.of(
            Record(
                "p.dlq",
                schemas.DeadLetter.of(b"{", SchemaError("x"), topic="p.requests").to_json(),
            )
        ),
    ]
    plan = Redrive(later, NOW)
    emits = [plan.decide(letter) for letter in letters]
    assert emits[0] is not None
    assert (emits[0].topic, emits[0].value, emits[0].key) == ("p.interactions", share, b"u7")
    assert emits[1:] == [None, None, None]
    assert dict(plan.republished) == {"p.interactions": 1}
    assert dict(plan.still_invalid) == {"malformed_json": 1}
    assert dict(plan.not_redriven) == {"p.requests": 1}
    assert plan.unreadable == 1


@pytest.mark.timeout(10)
def test_selection_by_reason_and_topic() -> None:
    junk = Letter.of(Record("p.dlq", b"junk"))
    bad = _dead_letter(S, "p.interactions", b"{not json")
    item = Letter(
        0, 1, schemas.DeadLetter.of(b"[1]", SchemaError("not_an_object"), topic="p.items")
    )
    everything = Selection.of(S, [], [])
    assert all(everything.matches(x) for x in (junk, bad, item))
    by_topic = Selection.of(S, [], ["items"])  # logical names become full names
    assert by_topic.topics == {"p.items"}
    assert [by_topic.matches(x) for x in (junk, bad, item)] == [False, False, True]
    assert Selection.of(S, [], ["p.items"]) == by_topic
    by_reason = Selection.of(S, ["malformed_json"], [])
    assert [by_reason.matches(x) for x in (junk, bad, item)] == [False, True, False]
    with pytest.raises(ConfigError, match="--topic"):
        Selection.of(S, [], [" "])


@pytest.mark.timeout(10)
def test_summary_counts_by_source_and_reason() -> None:
    s = Summary()
    a = _dead_letter(S, "p.interactions", b"{not json")
    b = _dead_letter(S, "p.interactions", b"{also not")
    s.add(a, True)
    s.add(b, True)
    s.add(Letter.of(Record("p.dlq", b"junk")), True)
    s.add(a, False)
    assert (s.read, s.selected, s.unreadable) == (4, 3, 1)
    assert dict(s.counts) == {("p.interactions", "malformed_json"): 2}
    assert b.dead is not None
    assert s.newest_ms["p.interactions", "malformed_json"] >= b.dead.failed_at


@pytest.mark.timeout(10)
def test_letter_json_has_the_original_as_text_when_it_is_text() -> None:
    out = letter_json(_dead_letter(S, "p.interactions", b"{not json"))
    assert out["original"] == "{not json" and out["reason"] == "malformed_json"
    assert base64.b64decode(out["original_b64"]) == b"{not json"
    assert (out["dlq_partition"], out["dlq_offset"], out["offset"]) == (0, 7, 41)
    binary = schemas.DeadLetter.of(b"\xff\xfe", SchemaError("malformed_json"), topic="p.items")
    out = letter_json(Letter(0, 0, binary))
    assert "original" not in out and out["original_b64"]
    assert letter_json(Letter(0, 3, None))["reason"] == "not_a_dead_letter"


@pytest.mark.timeout(10)
@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["dlq"], "dlq needs an ACTION"),
        (["dlq", "show", "--limit", "-1"], "--limit must be >= 0"),
        (["dlq", "show"], "SLATESTREAM_KAFKA_BOOTSTRAP: not set"),
        (["dlq", "redrive", "--dry-run"], "SLATESTREAM_KAFKA_BOOTSTRAP: not set"),
        (["dlq", "redrive", "--topic", ""], "--topic must name a topic"),
    ],
)
def test_dlq_command_input_errors(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert_one_line_error(argv, capsys, fragment)
