"""Data sets become contract events in time order (FINN.no shape made by the test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.datasets import load_finn_slates
from streams import schemas
from streams.replay import count_by_topic, finn_events


def make_finn(tmp: Path, users: int = 3, steps: int = 4, width: int = 5) -> tuple[Path, Path]:
    """A tiny data.npz/itemattr.npz of the FINN.no shape; user 1's step 2 is padding."""
    rng = np.random.default_rng(0)
    slate = rng.integers(2, 40, size=(users, steps, width))
    lengths = np.full((users, steps), width)
    lengths[0, 3] = 3
    click_idx = rng.integers(0, 3, size=(users, steps))
    click = np.take_along_axis(slate, click_idx[..., None], axis=2)[..., 0]
    click[2, 1] = 1  # no click
    click[1, 2] = 0  # padding step
    lengths[1, 2] = 0
    itype = np.ones((users, steps), dtype=int)
    data, attr = tmp / "data.npz", tmp / "itemattr.npz"
    np.savez(
        data,
        slate=slate,
        click=click,
        click_idx=click_idx,
        slate_lengths=lengths,
        interaction_type=itype,
    )
    np.savez(attr, category=rng.integers(0, 5, size=40))
    return data, attr


@pytest.mark.timeout(20)
def test_finn_events_are_valid_and_time_ordered(tmp_path: Path) -> None:
    data, attr = make_finn(tmp_path)
    events = list(finn_events(load_finn_slates(data, attr), start_ms=1_800_000_000_000))
    counts = count_by_topic(iter(events))
    assert counts["items"] == 38
    assert counts["impressions"] == 3 * 4 - 1
    assert counts["interactions"] == 3 * 4 - 2
    ts = [e.ts for t, _, e in events if t != "items"]
    assert ts == sorted(ts)
    for topic, key, ev in events:
        cls = type(ev)
        assert schemas.decode(cls, ev.to_json(), now_ms=1_900_000_000_000) == ev
        if topic == "interactions":
            assert isinstance(ev, schemas.Interaction) and ev.request_id and ev.position is not None
        if topic != "items":
            assert key == ev.user_id  # type: ignore[attr-defined]
