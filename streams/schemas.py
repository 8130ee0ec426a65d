"""The public event contract: versioned JSON events, validated at the edge.

Every event carries `event_id` (idempotency), `ts` (epoch ms) and `schema_version`.
Keys on Kafka are user ids so one user's events stay ordered on one partition.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from typing import Annotated, Any, Protocol, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from streams.errors import SchemaError

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS = frozenset({1})
MIN_TS_MS = 946_684_800_000  # 2000-01-01: anything older is a unit mistake (seconds, not ms)
# how far ahead of the reading worker's clock an event time counts: events up to
# SLATESTREAM_MAX_CLOCK_SKEW_MS ahead are valid, but one producer with a fast clock must not
# weigh 2^(24 h / half-life) in decayed features, win every item version or close slates early
MAX_LEAD_MS = 60_000


def _id(value: Any) -> Any:
    """Accept integer ids (common in producers) as their decimal string."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


MAX_ID_LENGTH = 256
Id = Annotated[str, BeforeValidator(_id), Field(min_length=1, max_length=MAX_ID_LENGTH)]


def derived_id(*parts: str) -> str:
    """An event id made of other ids (`rec-<request_id>`, `fb-<request_id>-late-<event_id>`).

    The parts joined when that fits the id limit; otherwise the first characters and a
    hash of the whole, so that a valid 256-character request id still yields a valid,
    deterministic (redeliveries keep it) id rather than an output the contract refuses.
    """
    joined = "".join(parts)
    if len(joined) <= MAX_ID_LENGTH:
        return joined
    digest = hashlib.blake2b(joined.encode(), digest_size=16).hexdigest()
    return f"{joined[: MAX_ID_LENGTH - len(digest) - 1]}~{digest}"


class Event(BaseModel):
    """Fields every event shares."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    event_id: Id
    ts: int = Field(description="event time, epoch milliseconds")
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> bytes:
        """Serialise to compact JSON bytes (what goes on the topic)."""
        return self.model_dump_json(exclude_none=True).encode()


class Interaction(Event):
    """A user did something with an item (click, view, purchase, rating, ...)."""

    user_id: Id
    item_id: Id
    type: str = Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")
    request_id: Id | None = None
    position: int | None = Field(default=None, ge=0, le=10_000)
    value: float | None = None


class Impression(Event):
    """A slate was shown to a user (what the scorer served, or a client's own slate)."""

    user_id: Id
    request_id: Id
    slate: list[Id] = Field(min_length=1, max_length=1000)
    propensities: list[float] | None = None
    policy: str | None = None

    @model_validator(mode="after")
    def _check(self) -> Impression:
        _check_propensities(self.slate, self.propensities)
        return self


def _check_propensities(slate: list[str], propensities: list[float] | None) -> None:
    """One propensity per slate position, each in (0, 1] (NaN is not), or none at all."""
    if propensities is not None:
        if len(propensities) != len(slate):
            raise ValueError("propensities must have one entry per slate position")
        if any(not 0.0 < p <= 1.0 for p in propensities):
            raise ValueError("propensities must be in (0, 1]")


AttrValue = str | int | float | bool


class Item(Event):
    """An item of the catalogue; new items are recommendable at once through their category."""

    item_id: Id
    # "/" joins the path ('a/b'): inside a segment it would make a different, deeper path
    category_path: list[Annotated[str, Field(min_length=1, max_length=128, pattern="^[^/]+$")]] = (
        Field(default_factory=list, max_length=16)
    )
    attributes: dict[str, AttrValue] = Field(default_factory=dict)
    text: str | None = Field(default=None, max_length=10_000)
    # false retires the item (sold, expired, out of stock): never recommended again until a
    # newer version of it says true
    available: bool = True

    @property
    def category(self) -> str:
        """The category path joined with '/', '' when unknown."""
        return "/".join(self.category_path)


class CandidateFilter(BaseModel):
    """Restricts the candidates of a request: to categories (path prefixes) or to item ids."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    categories: list[str] | None = None
    item_ids: list[Id] | None = None


class Request(Event):
    """A client asks for a slate of k items for a user."""

    request_id: Id
    user_id: Id
    k: int = Field(ge=1, le=100)
    context: dict[str, AttrValue] = Field(default_factory=dict)
    exclusions: list[Id] = Field(default_factory=list, max_length=10_000)
    candidate_filter: CandidateFilter | None = None
    # the client's wait for an answer: older when the scorer reaches it, it is answered with
    # error 'expired' instead of a slate (None: SLATESTREAM_REQUEST_TIMEOUT_MS)
    timeout_ms: int | None = Field(default=None, ge=1, le=3_600_000)


class Recommendation(Event):
    """The scorer's answer: the slate with scores, propensities and the model version."""

    request_id: Id
    user_id: Id
    slate: list[Id]
    scores: list[float]
    propensities: list[float]
    policy: str
    model_version: str
    served_at: int
    latency_ms: float
    arm: str | None = None
    error: str | None = None


class Click(BaseModel):
    """One attributed interaction inside a feedback record."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)

    position: int
    item_id: Id
    type: str
    delay_ms: int
    event_id: Id


class Feedback(Event):
    """The joiner's output: one served slate with the clicks that followed it (or none)."""

    user_id: Id
    request_id: Id
    slate: list[Id] = Field(min_length=1, max_length=1000)
    propensities: list[float] | None = None
    policy: str | None = None
    served_at: int
    clicks: list[Click] = Field(default_factory=list)
    window_ms: int
    late: bool = False

    @model_validator(mode="after")
    def _check(self) -> Feedback:
        _check_propensities(self.slate, self.propensities)
        for c in self.clicks:
            if not 0 <= c.position < len(self.slate):
                n = len(self.slate)
                raise ValueError(f"click position {c.position} outside a slate of {n}")
            if self.slate[c.position] != c.item_id:
                raise ValueError(f"clicked item {c.item_id!r} is not at position {c.position}")
        return self

    @property
    def clicked_positions(self) -> list[int]:
        """Distinct clicked positions, in order."""
        return sorted({c.position for c in self.clicks})


class DeadLetter(BaseModel):
    """A record a worker could not use: the original bytes, where it came from, and why."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    reason: str
    detail: str = ""
    topic: str
    partition: int = -1
    offset: int = -1
    key: str | None = None
    original_b64: str
    worker: str = ""
    failed_at: int = Field(default_factory=lambda: int(time.time() * 1000))
    schema_version: int = SCHEMA_VERSION

    @field_validator("original_b64")
    @classmethod
    def _base64(cls, value: str) -> str:
        base64.b64decode(value, validate=True)  # binascii.Error (a ValueError) if not base64
        return value

    @property
    def original(self) -> bytes:
        """The original payload bytes."""
        return base64.b64decode(self.original_b64)

    @classmethod
    def of(
        cls,
        raw: bytes,
        error: SchemaError,
        *,
        topic: str,
        partition: int = -1,
        offset: int = -1,
        key: bytes | None = None,
        worker: str = "",
    ) -> DeadLetter:
        """Build the dead-letter record for `raw` that failed with `error`."""
        return cls(
            reason=error.reason,
            detail=error.detail[:500],
            topic=topic,
            partition=partition,
            offset=offset,
            key=key.decode("utf-8", "replace") if key is not None else None,
            original_b64=base64.b64encode(raw).decode(),
            worker=worker,
        )

    def to_json(self) -> bytes:
        """Serialise to compact JSON bytes."""
        return self.model_dump_json().encode()


KINDS: dict[str, type[Event]] = {
    "interaction": Interaction,
    "impression": Impression,
    "item": Item,
    "request": Request,
    "recommendation": Recommendation,
    "feedback": Feedback,
}

E = TypeVar("E", bound=Event)

_REASONS = {
    "missing": "missing_field",
    "int_type": "wrong_type",
    "string_type": "wrong_type",
    "float_type": "wrong_type",
    "bool_type": "wrong_type",
    "list_type": "wrong_type",
    "dict_type": "wrong_type",
    "model_type": "wrong_type",
    "int_from_float": "wrong_type",
}


def decode(
    cls: type[E],
    raw: bytes,
    *,
    max_bytes: int = 65536,
    now_ms: int | None = None,
    max_skew_ms: int = 86_400_000,
) -> E:
    """Parse and validate one event; raise SchemaError with a reason code on any problem."""
    if len(raw) > max_bytes:
        raise SchemaError("oversized", f"{len(raw)} bytes > limit {max_bytes}")
    if not raw:
        raise SchemaError("empty_value", "no payload (a null value: a tombstone, or an empty one)")
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SchemaError("malformed_json", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise SchemaError("not_an_object", f"top-level JSON is {type(obj).__name__}")
    version = obj.get("schema_version", SCHEMA_VERSION)
    if version not in SUPPORTED_SCHEMA_VERSIONS or isinstance(version, bool):
        raise SchemaError("unknown_schema_version", f"schema_version={version!r}")
    try:
        event = cls.model_validate(obj)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        reason = _REASONS.get(err["type"], "invalid_value")
        raise SchemaError(reason, f"{loc}: {err['msg']}" if loc else err["msg"]) from None
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if event.ts < MIN_TS_MS or event.ts > now + max_skew_ms:
        raise SchemaError("bad_timestamp", f"ts={event.ts} outside [{MIN_TS_MS}, now+skew]")
    return event


class Limits(Protocol):
    """The settings that bound what an event may be (`streams.config.Settings` has them)."""

    max_event_bytes: int
    max_clock_skew_ms: int


def decode_under(limits: Limits, cls: type[E], raw: bytes, now_ms: int | None = None) -> E:
    """`decode` with the size and clock-skew limits of the settings (every worker's check)."""
    return decode(
        cls,
        raw,
        max_bytes=limits.max_event_bytes,
        now_ms=now_ms,
        max_skew_ms=limits.max_clock_skew_ms,
    )


def encode(event: BaseModel) -> bytes:
    """Serialise any contract model to compact JSON bytes."""
    return event.model_dump_json(exclude_none=True).encode()


def example(kind: str) -> dict[str, Any]:
    """A valid example event of each kind (used by the README and the tests)."""
    ts = 1_764_000_000_000
    examples: dict[str, dict[str, Any]] = {
        "interaction": {
            "event_id": "e-1",
            "ts": ts,
            "schema_version": 1,
            "user_id": "u42",
            "item_id": "i7",
            "type": "click",
            "request_id": "r-9",
            "position": 2,
        },
        "impression": {
            "event_id": "e-2",
            "ts": ts,
            "schema_version": 1,
            "user_id": "u42",
            "request_id": "r-9",
            "slate": ["i3", "i9", "i7"],
            "propensities": [0.61, 0.33, 0.12],
            "policy": "in-slate-ts",
        },
        "item": {
            "event_id": "e-3",
            "ts": ts,
            "schema_version": 1,
            "item_id": "i7",
            "category_path": ["movies", "comedy"],
            "attributes": {"year": 1995},
            "text": "Toy Story",
        },
        "request": {
            "event_id": "e-4",
            "ts": ts,
            "schema_version": 1,
            "request_id": "r-9",
            "user_id": "u42",
            "k": 3,
            "context": {"device": "mobile"},
            "exclusions": ["i1"],
        },
        "recommendation": {
            "event_id": "rec-r-9",
            "ts": ts,
            "schema_version": 1,
            "request_id": "r-9",
            "user_id": "u42",
            "slate": ["i3", "i9", "i7"],
            "scores": [2.1, 1.7, 1.2],
            "propensities": [0.61, 0.33, 0.12],
            "policy": "in-slate-ts",
            "model_version": "v12",
            "served_at": ts + 4,
            "latency_ms": 3.8,
            "arm": "in-slate-ts",
        },
        "feedback": {
            "event_id": "fb-r-9",
            "ts": ts + 1_800_000,
            "schema_version": 1,
            "user_id": "u42",
            "request_id": "r-9",
            "slate": ["i3", "i9", "i7"],
            "propensities": [0.61, 0.33, 0.12],
            "policy": "in-slate-ts",
            "served_at": ts,
            "window_ms": 1_800_000,
            "late": False,
            "clicks": [
                {
                    "position": 2,
                    "item_id": "i7",
                    "type": "click",
                    "delay_ms": 5200,
                    "event_id": "e-1",
                }
            ],
        },
    }
    return examples[kind]


def capped_ts(ts: int, now_ms: int) -> int:
    """An event time as workers order and decay by: at most `MAX_LEAD_MS` ahead of now."""
    return min(ts, now_ms + MAX_LEAD_MS)
