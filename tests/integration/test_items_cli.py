"""`slatestream items retire | restore` on the real broker and Redis: the new version of an
item on the items topic keeps the metadata the store holds and flips `available`."""

from __future__ import annotations

import asyncio
import time

import pytest

from features import open_store
from features.base import ItemUpdate
from streams import cli, schemas
from streams.broker import ensure_topics
from streams.config import Settings
from tests.integration.test_dlq_cli import read_all

pytestmark = [pytest.mark.integration]


async def _on_store(url: str, op: str, events: list[ItemUpdate] | None = None) -> None:
    store = open_store(url)
    try:
        await (store.apply_many(events or []) if op == "apply" else store.clear())
    finally:
        await store.close()


@pytest.mark.timeout(90)
@pytest.mark.usefixtures("cli_env")
def test_retire_and_restore_publish_new_versions_with_the_metadata(
    services, topic_prefix: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    store_url = f"{services.redis_url}?namespace={topic_prefix}"
    monkeypatch.setenv("SLATESTREAM_STORE_URL", store_url)
    ensure_topics(Settings(kafka_bootstrap=services.kafka_bootstrap, topic_prefix=topic_prefix))
    meta = ItemUpdate("m1", "i1", int(time.time() * 1000), ("movies", "comedy"), {"year": 1995})
    asyncio.run(_on_store(store_url, "apply", [meta]))
    assert cli.main(["items", "retire", "i1"]) == 0
    assert cli.main(["items", "restore", "i1"]) == 0
    assert f"restored 1 item(s) on {topic_prefix}.items: i1" in capsys.readouterr().out
    got = read_all(services.kafka_bootstrap, f"{topic_prefix}.items")
    events = [schemas.Item.model_validate_json(v) for _, v in got]
    assert [k for k, _ in got] == [b"i1", b"i1"]
    assert [e.available for e in events] == [False, True]
    assert all(e.category_path == ["movies", "comedy"] for e in events)
    assert all(e.attributes == {"year": 1995} for e in events)
    assert events[0].ts <= events[1].ts
    asyncio.run(_on_store(store_url, "clear"))
