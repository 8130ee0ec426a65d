"""The topic layout the workers create: the catalogue compacted, the event log's retention
the user's choice."""

from __future__ import annotations

import pytest

from streams.config import load_settings
from streams.errors import ConfigError
from streams.topics import topic_specs

pytestmark = pytest.mark.usefixtures("clean_env")


def test_items_are_compacted_and_the_log_keeps_the_broker_default() -> None:
    specs = topic_specs(load_settings(topic_prefix="p"))
    assert specs["items"].configs == {"cleanup.policy": "compact"}
    assert specs["items"].key == "item_id"
    for logical in ("interactions", "impressions", "requests", "recommendations", "dlq"):
        assert specs[logical].configs == {}, logical


def test_event_retention_applies_to_the_replayed_log_only() -> None:
    specs = topic_specs(load_settings(topic_prefix="p", event_retention_ms=-1))
    assert specs["interactions"].configs == {"retention.ms": "-1"}
    assert specs["impressions"].configs == {"retention.ms": "-1"}
    assert "retention.ms" not in specs["requests"].configs
    specs["interactions"].configs["x"] = "y"  # each spec has its own dict
    assert "x" not in specs["impressions"].configs


@pytest.mark.parametrize("bad", [0, 59_999, -2])
def test_a_retention_that_would_drop_the_log_at_once_is_refused(bad: int) -> None:
    with pytest.raises(ConfigError, match="SLATESTREAM_EVENT_RETENTION_MS"):
        load_settings(event_retention_ms=bad)
