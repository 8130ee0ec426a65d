"""Repeated log lines are limited to one per message template per interval, with a count."""

from __future__ import annotations

import logging

import pytest

from streams.log_limits import RepeatLimit, limit_repeats

pytestmark = pytest.mark.timeout(10)


def _record(
    msg: str, *args: object, name: str = "aiokafka", level: int = logging.ERROR
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, msg, args, None)


def test_first_passes_repeats_are_counted_into_the_next_one() -> None:
    now = [0.0]
    f = RepeatLimit(every_s=10.0, clock=lambda: now[0])
    assert f.filter(_record("Unable connect to node with id %s: %s", 1, "refused"))
    for t in range(1, 100):  # ~10 per second for 10 s
        now[0] = t / 10
        assert not f.filter(_record("Unable connect to node with id %s: %s", 1, "refused"))
    # another template and another logger are independent
    assert f.filter(_record("Unable to update metadata from %s", [1]))
    assert f.filter(_record("Unable connect to node with id %s: %s", 1, "x", name="aiokafka.conn"))
    now[0] = 10.0
    rec = _record("Unable connect to node with id %s: %s", 1, "refused")
    assert f.filter(rec)
    assert rec.getMessage() == (
        "Unable connect to node with id 1: refused [99 more like this in the last 10 s]"
    )
    now[0] = 25.0  # nothing left out since: no count
    rec = _record("Unable connect to node with id %s: %s", 1, "refused")
    assert f.filter(rec) and "more like this" not in rec.getMessage()


def test_limit_repeats_on_a_logger(caplog: pytest.LogCaptureFixture) -> None:
    limit = limit_repeats(["slatestream.test.repeats"], every_s=60.0)
    log = logging.getLogger("slatestream.test.repeats")
    try:
        with caplog.at_level(logging.ERROR, logger="slatestream.test.repeats"):
            for _ in range(50):
                log.error("broker %s down", "b1")
        assert [r.getMessage() for r in caplog.records] == ["broker b1 down"]
    finally:
        log.removeFilter(limit)
    with pytest.raises(ValueError):
        RepeatLimit(every_s=0)
