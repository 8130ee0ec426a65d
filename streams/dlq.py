"""Dead letters read back: what each says, whether today's settings accept its record, and
where a redrive would publish it. Pure logic; `slatestream dlq` does the Kafka I/O.

A record is dead-lettered by the settings of the worker that read it. Some reasons can stop
applying: an interaction type added to SLATESTREAM_EVENT_WEIGHTS, a larger
SLATESTREAM_MAX_EVENT_BYTES, a producer's clock back in line. A redrive publishes the original
bytes and key of those records to the topic they came from, where the workers take them as
late events. Records the settings still refuse stay in the DLQ only, with the reason they
would get now; the DLQ itself is never changed (Kafka topics are append-only).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from streams import schemas
from streams.config import Settings
from streams.errors import ConfigError, SchemaError
from streams.runtime import Emit, Record
from streams.services.feature_service import check_interaction_type
from streams.topics import topic_specs

# the topics whose records a redrive republishes: the event log and the joiner's feedback. A
# request is answered at once with an error record (its client retries), so it is not
# redriven; recommendations are the scorer's own output.
REDRIVABLE = ("interactions", "impressions", "items", "feedback")


@dataclass(frozen=True)
class Letter:
    """One record of the dead-letter topic: where it sits there, and the dead letter it holds
    (None when the record is not a dead letter at all)."""

    partition: int
    offset: int
    dead: schemas.DeadLetter | None

    @classmethod
    def of(cls, rec: Record) -> Letter:
        """Read a DLQ record; anything that is not a dead letter gives `dead=None`."""
        try:
            dead: schemas.DeadLetter | None = schemas.DeadLetter.model_validate_json(rec.value)
        except ValidationError:  # not JSON, a field missing, original_b64 not base64
            dead = None
        return cls(rec.partition, rec.offset, dead)


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command works on: by reason and by source topic (empty: all)."""

    reasons: frozenset[str] = frozenset()
    topics: frozenset[str] = frozenset()

    @classmethod
    def of(cls, settings: Settings, reasons: Iterable[str], topics: Iterable[str]) -> Selection:
        """Topics may be logical (`interactions`) or full names; ConfigError for an empty one."""
        specs = topic_specs(settings)
        full: set[str] = set()
        for t in topics:
            if not t.strip():
                raise ConfigError("--topic must name a topic (interactions or prefix.interactions)")
            full.add(specs[t].name if t in specs else t)
        return cls(frozenset(r.strip() for r in reasons), frozenset(full))

    def matches(self, letter: Letter) -> bool:
        """True when the letter's reason and source topic pass; unreadable ones only unfiltered."""
        d = letter.dead
        if d is None:
            return not self.reasons and not self.topics
        return (not self.reasons or d.reason in self.reasons) and (
            not self.topics or d.topic in self.topics
        )


def recheck(
    dead: schemas.DeadLetter,
    settings: Settings,
    now_ms: int,
    kinds: Mapping[str, str] | None = None,
) -> SchemaError | None:
    """None when today's settings accept the dead letter's original record on its topic; else
    the error it would get now (`not_redriven` for a topic a redrive does not publish to).
    `kinds`: `redrivable(settings)`, for a caller that checks many letters."""
    spec = (redrivable(settings) if kinds is None else kinds).get(dead.topic)
    if spec is None:
        return SchemaError("not_redriven", f"records of {dead.topic} are not redriven")
    try:
        event = schemas.decode_under(settings, schemas.KINDS[spec], dead.original, now_ms)
        check_interaction_type(event, settings.event_weights)
    except SchemaError as exc:
        return exc
    return None


def redrivable(settings: Settings) -> dict[str, str]:
    """Full topic name -> event kind, for the topics a redrive publishes to."""
    specs = topic_specs(settings)
    return {specs[t].name: specs[t].kind for t in REDRIVABLE}


def redrive_emit(dead: schemas.DeadLetter) -> Emit:
    """The record a redrive publishes: the original bytes and key, to the original topic."""
    key = dead.key.encode() if dead.key is not None else None
    return Emit(dead.topic, dead.original, key)


@dataclass
class Summary:
    """Counts of the dead letters a command read: by (source topic, reason), the newest
    `failed_at` of each, and the records that are not dead letters."""

    read: int = 0
    selected: int = 0
    unreadable: int = 0
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    newest_ms: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, letter: Letter, selected: bool) -> None:
        """Count one letter read (and, when selected, by its source and reason)."""
        self.read += 1
        if not selected:
            return
        self.selected += 1
        d = letter.dead
        if d is None:
            self.unreadable += 1
            return
        key = (d.topic, d.reason)
        self.counts[key] += 1
        self.newest_ms[key] = max(self.newest_ms.get(key, 0), d.failed_at)


@dataclass
class Redrive:
    """What a redrive under `settings` at `now_ms` did (or, dry, would do) with the selected
    letters."""

    settings: Settings
    now_ms: int
    republished: Counter[str] = field(default_factory=Counter)  # by topic
    still_invalid: Counter[str] = field(default_factory=Counter)  # by the reason it gets now
    not_redriven: Counter[str] = field(default_factory=Counter)  # by source topic
    unreadable: int = 0
    # the topics a redrive publishes to, worked out once per run (not per letter)
    kinds: dict[str, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.kinds = redrivable(self.settings)

    def decide(self, letter: Letter) -> Emit | None:
        """The record to republish for a selected letter (counted), or None (counted why)."""
        d = letter.dead
        if d is None:
            self.unreadable += 1
            return None
        err = recheck(d, self.settings, self.now_ms, self.kinds)
        if err is None:
            self.republished[d.topic] += 1
            return redrive_emit(d)
        if err.reason == "not_redriven":
            self.not_redriven[d.topic] += 1
        else:
            self.still_invalid[err.reason] += 1
        return None


def letter_json(letter: Letter) -> dict[str, Any]:
    """One dead letter as a JSON-ready dict (`dlq show --json`): its fields, its place in the
    DLQ, and the original as text when it is UTF-8 (else `original_b64` only)."""
    out: dict[str, Any] = {"dlq_partition": letter.partition, "dlq_offset": letter.offset}
    d = letter.dead
    if d is None:
        out["reason"] = "not_a_dead_letter"
        return out
    out.update(d.model_dump())
    with contextlib.suppress(UnicodeDecodeError):
        out["original"] = d.original.decode("utf-8")
    return out


def counts_line(counts: Mapping[str, int]) -> str:
    """`a 3, b 1` by descending count (`none` when empty)."""
    if not counts:
        return "none"
    return ", ".join(f"{k} {n}" for k, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def preview(raw: bytes, width: int = 80) -> str:
    """The start of an original payload on one line, for people."""
    text = " ".join(raw.decode("utf-8", "replace").split())
    return text if len(text) <= width else text[: width - 1] + "…"
