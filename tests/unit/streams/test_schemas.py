"""The event contract: examples validate; each kind of bad input gets its reason code."""

from __future__ import annotations

import json
import time

import pytest

from streams import schemas
from streams.errors import SchemaError

NOW = int(time.time() * 1000)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", sorted(schemas.KINDS))
def test_every_example_validates_and_roundtrips(kind: str) -> None:
    cls = schemas.KINDS[kind]
    raw = json.dumps(schemas.example(kind)).encode()
    event = schemas.decode(cls, raw)
    again = schemas.decode(cls, event.to_json())
    assert again == event


def _interaction(**over: object) -> bytes:
    base = {
        "event_id": "e1",
        "ts": NOW,
        "schema_version": 1,
        "user_id": "u1",
        "item_id": "i1",
        "type": "click",
    }
    base.update(over)
    return json.dumps({k: v for k, v in base.items() if v is not None}).encode()


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"{not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"[1, 2]", "not_an_object"),
        (_interaction(schema_version=99), "unknown_schema_version"),
        (_interaction(user_id=None), "missing_field"),
        (_interaction(ts="yesterday"), "wrong_type"),
        (_interaction(ts=-5), "bad_timestamp"),
        (_interaction(ts=NOW // 1000), "bad_timestamp"),
        (_interaction(ts=NOW + 10 * 86_400_000), "bad_timestamp"),
        (_interaction(type="Not A Type"), "invalid_value"),
        (_interaction(position=-1), "invalid_value"),
        (b'{"x": "' + b"a" * 70_000 + b'"}', "oversized"),
    ],
)
def test_bad_input_reasons(raw: bytes, reason: str) -> None:
    with pytest.raises(SchemaError) as err:
        schemas.decode(schemas.Interaction, raw)
    assert err.value.reason == reason


@pytest.mark.timeout(10)
def test_integer_ids_are_accepted_as_strings() -> None:
    ev = schemas.decode(schemas.Interaction, _interaction(user_id=7, item_id=12))
    assert (ev.user_id, ev.item_id) == ("7", "12")


@pytest.mark.timeout(10)
def test_impression_propensities_checked() -> None:
    bad = dict(schemas.example("impression"), propensities=[0.5, 0.0, 0.2])
    with pytest.raises(SchemaError):
        schemas.decode(schemas.Impression, json.dumps(bad).encode())
    short = dict(schemas.example("impression"), propensities=[0.5])
    with pytest.raises(SchemaError):
        schemas.decode(schemas.Impression, json.dumps(short).encode())


@pytest.mark.timeout(10)
def test_dead_letter_keeps_original_bytes() -> None:
    raw = b"\x00garbage"
    try:
        schemas.decode(schemas.Interaction, raw)
    except SchemaError as exc:
        dl = schemas.DeadLetter.of(
            raw, exc, topic="p.interactions", partition=2, offset=7, key=b"u1"
        )
    assert dl.original == raw and dl.reason == "malformed_json"
    back = schemas.DeadLetter.model_validate_json(dl.to_json())
    assert (back.topic, back.partition, back.offset, back.key) == ("p.interactions", 2, 7, "u1")
