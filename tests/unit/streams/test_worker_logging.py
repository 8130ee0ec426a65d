"""The worker's log level holds after Faust sets up logging (its spinner set the root to DEBUG)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.app import create_app
from streams.commands.worker import make_worker
from streams.config import Settings

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger back as it was (Faust's set-up changes its level and handlers)."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers


@pytest.mark.usefixtures("root_logging")
def test_debug_records_are_not_built_at_warning_level(tmp_path: Path) -> None:
    app = create_app(Settings(kafka_bootstrap="127.0.0.1:9", state_dir=tmp_path), group="w")
    worker = make_worker(app, "warning")
    worker.redirect_stdouts = False  # pytest owns stdout
    worker._setup_logging()  # what the worker runs on its first start
    assert logging.getLogger().level == logging.WARNING
    for name in ("aiokafka.conn", "aiokafka.consumer.fetcher", "faust", "mode"):
        assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name


def test_the_flag_wins_over_the_setting_which_wins_over_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from streams.cli import build_parser
    from streams.commands.worker import worker_loglevel
    from streams.config import load_settings

    monkeypatch.delenv("SLATESTREAM_LOG_LEVEL", raising=False)
    no_flag = build_parser().parse_args(["worker", "--role", "scorer"]).loglevel
    assert worker_loglevel(no_flag, load_settings()) == "warning"
    monkeypatch.setenv("SLATESTREAM_LOG_LEVEL", "Info")
    assert worker_loglevel(no_flag, load_settings()) == "info"
    flag = build_parser().parse_args(["worker", "--loglevel", "ERROR"]).loglevel
    assert worker_loglevel(flag, load_settings()) == "error"
