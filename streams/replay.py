"""Data sets as time-ordered event streams (what `slatestream replay` publishes).

MovieLens-100k: one `item` event per movie, then every rating as a `rating` interaction in
time order. FINN.no slates: items with their category, then per step every user's slate as
an impression and the click (if any) as an interaction attributed to it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from models.datasets import NO_CLICK_ITEM, DatasetError, InteractionData, SlateData
from streams import schemas

# the contract's limit on a slate (schemas.Impression.slate): wider slates cannot be published;
# FINN.no's own slates hold at most 25 items, so a wider one is a broken or foreign file
MAX_SLATE_ITEMS = 1000

Topic = str


def movielens_events(
    data: InteractionData, start_ms: int | None = None
) -> Iterator[tuple[Topic, str, schemas.Event]]:
    """(logical topic, key, event) for the catalogue, then ratings in time order.

    Original timestamps (seconds, 1997-98) keep their spacing, shifted so the last rating
    is `start_ms` (default now), because the contract rejects events from before 2000.
    """
    now = int(time.time() * 1000) if start_ms is None else start_ms
    order = data.time_order()
    last = int(data.timestamps[order[-1]]) if len(order) else 0
    for item in data.all_items():
        cat = data.item_categories.get(item, "")
        yield (
            "items",
            item,
            schemas.Item(
                event_id=f"ml-item-{item}",
                ts=now - (last - int(data.timestamps[order[0]])) * 1000,
                item_id=item,
                category_path=[c for c in cat.split("/") if c],
                text=data.item_titles.get(item),
            ),
        )
    for j in order:
        user = str(data.users[j])
        yield (
            "interactions",
            user,
            schemas.Interaction(
                event_id=f"ml-{j}",
                ts=now - (last - int(data.timestamps[j])) * 1000,
                user_id=user,
                item_id=str(data.items[j]),
                type="rating",
                value=float(data.ratings[j]),
            ),
        )


def check_finn(data: SlateData) -> None:
    """Raise DatasetError if the slates cannot become contract events (a slate wider than
    MAX_SLATE_ITEMS) or there are none (every step padding): checked on the arrays, before
    anything is published, so a bad file leaves no half-made replay behind."""
    live = (data.slate_lengths > 0) & (data.click != 0)
    if not live.any():
        raise DatasetError("holds no slates (no step with a slate length > 0 and a click value)")
    widest = int(data.slate_lengths[live].max())
    if widest > MAX_SLATE_ITEMS:
        u, t = (int(x) for x in np.argwhere(live & (data.slate_lengths > MAX_SLATE_ITEMS))[0])
        raise DatasetError(
            f"user {u} step {t} has a slate of {int(data.slate_lengths[u, t])} items; "
            f"the event contract allows at most {MAX_SLATE_ITEMS}"
        )


def finn_events(
    data: SlateData, start_ms: int | None = None, step_ms: int = 1000
) -> Iterator[tuple[Topic, str, schemas.Event]]:
    """(logical topic, key, event): items, then impressions + clicks interleaved by step.

    The data are checked (`check_finn`) when this is called, not when the stream is read."""
    check_finn(data)
    return _finn_events(data, start_ms, step_ms)


def _finn_events(
    data: SlateData, start_ms: int | None, step_ms: int
) -> Iterator[tuple[Topic, str, schemas.Event]]:
    """The event stream of `finn_events`, for data already checked."""
    now = int(time.time() * 1000) if start_ms is None else start_ms
    n_users, n_steps = data.click.shape
    if data.category is not None:
        for item in range(2, data.category.size):
            yield (
                "items",
                str(item),
                schemas.Item(
                    event_id=f"finn-item-{item}",
                    ts=now,
                    item_id=str(item),
                    category_path=["finn", str(int(data.category[item]))],
                ),
            )
    for t in range(n_steps):
        for u in range(n_users):
            length = int(data.slate_lengths[u, t])
            clicked = int(data.click[u, t])
            if length == 0 or clicked == 0:
                continue
            ts = now + t * step_ms + u % step_ms
            rid = f"finn-{u}-{t}"
            slate = [str(int(i)) for i in data.slate[u, t, :length]]
            user = str(u)
            yield (
                "impressions",
                user,
                schemas.Impression(
                    event_id=f"imp-{rid}",
                    ts=ts,
                    user_id=user,
                    request_id=rid,
                    slate=slate,
                    policy=f"finn-{int(data.interaction_type[u, t])}",
                ),
            )
            pos = int(data.click_idx[u, t])
            if clicked != NO_CLICK_ITEM and 0 <= pos < length:
                yield (
                    "interactions",
                    user,
                    schemas.Interaction(
                        event_id=f"click-{rid}",
                        ts=ts + 1,
                        user_id=user,
                        item_id=str(clicked),
                        type="click",
                        request_id=rid,
                        position=pos,
                    ),
                )


def count_by_topic(events: Iterator[tuple[Topic, str, schemas.Event]]) -> dict[str, int]:
    """How many events of each topic a stream holds (for summaries and tests)."""
    out: dict[str, int] = {}
    for topic, _, _ in events:
        out[topic] = out.get(topic, 0) + 1
    return out


__all__ = ["MAX_SLATE_ITEMS", "check_finn", "count_by_topic", "finn_events", "movielens_events"]
