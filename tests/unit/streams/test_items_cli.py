"""`slatestream items retire | restore`: the new versions keep the store's metadata; bad input
is one line before anything is published (no broker needed)."""

from __future__ import annotations

import pytest

from features import ItemFeatures
from streams.commands.items import versions
from tests.unit.streams.test_cli_bad_input import assert_one_line_error

NOW = 1_795_000_000_000


@pytest.mark.timeout(10)
def test_new_versions_keep_the_metadata_and_set_available() -> None:
    known = {
        "i1": ItemFeatures(
            "i1", True, ("movies", "comedy"), {"year": 1995}, "Toy Story", added_ts=NOW - 10
        ),
        "i9": ItemFeatures("i9"),  # not in the store
    }
    off = versions(known, available=False, now_ms=NOW)
    assert [(v.item_id, v.available, v.ts) for v in off] == [("i1", False, NOW), ("i9", False, NOW)]
    assert off[0].category_path == ["movies", "comedy"] and off[0].attributes == {"year": 1995}
    assert off[0].text == "Toy Story" and off[1].category_path == [] and off[1].text is None
    on = versions(known, available=True, now_ms=NOW + 1)
    assert all(v.available for v in on)
    assert {v.event_id for v in off}.isdisjoint({v.event_id for v in on})  # never a duplicate


@pytest.mark.timeout(10)
@pytest.mark.usefixtures("clean_env")
@pytest.mark.parametrize(
    "argv, bootstrap, fragment",
    [
        (["items"], None, "items needs an ACTION"),
        (["items", "retire", "i1"], None, "SLATESTREAM_KAFKA_BOOTSTRAP: not set"),
        (["items", "retire", "i1"], "127.0.0.1:9", "items needs the feature store the workers use"),
        (["items", "restore", "i1", ""], "127.0.0.1:9", "ITEM '': an item id is 1-256 characters"),
    ],
)
def test_items_command_input_errors(
    argv: list[str],
    bootstrap: str | None,
    fragment: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if bootstrap is not None:  # a broker that is never reached: the input is refused first
        monkeypatch.setenv("SLATESTREAM_KAFKA_BOOTSTRAP", bootstrap)
    assert_one_line_error(argv, capsys, fragment)
