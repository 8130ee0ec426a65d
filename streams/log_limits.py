"""Rate limits for repeated log lines: while a broker is down, aiokafka logs the same few
ERROR lines every 100 ms (about 100 lines/s), and a scorer without its feature store warns on
every batch; one line per message per interval says the same, with a count of what was left
out."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

# the loggers that repeat while the broker (aiokafka 0.1x) or the feature store is unreachable
OUTAGE_LOGGERS = (
    "aiokafka",
    "aiokafka.conn",
    "aiokafka.cluster",
    "aiokafka.consumer.fetcher",
    "aiokafka.consumer.group_coordinator",
    "aiokafka.producer.sender",
    "streams.services.scorer_service",
)


class RepeatLimit(logging.Filter):
    """Per logger, level and message template: the first record passes, then at most one per
    `every_s`, which also says how many like it were left out since the last one."""

    def __init__(self, every_s: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        if every_s <= 0:
            raise ValueError("every_s must be > 0")
        self.every_s = every_s
        self.clock = clock
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg))  # the template, not its args
        now = self.clock()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.every_s:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if len(self._seen) >= 1000:  # templates are few; bound the table anyway
            self._seen.clear()
        self._seen[key] = (now, 0)
        if last is not None and last[1]:
            record.msg = f"{record.msg} [{last[1]} more like this in the last {self.every_s:g} s]"
        return True


def limit_repeats(names: Iterable[str] = OUTAGE_LOGGERS, every_s: float = 10.0) -> RepeatLimit:
    """Attach one `RepeatLimit` to each named logger (filters see only their own records)."""
    limit = RepeatLimit(every_s)
    for name in names:
        logging.getLogger(name).addFilter(limit)
    return limit
