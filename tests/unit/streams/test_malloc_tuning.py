"""The scorer's malloc tuning: accepted by this machine's glibc, applied once."""

from __future__ import annotations

import sys

import pytest

from streams import malloc_tuning


@pytest.mark.timeout(10)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_accepts_the_thresholds_once() -> None:
    malloc_tuning._done = None
    assert malloc_tuning.keep_large_blocks() is True
    assert malloc_tuning.keep_large_blocks() is True  # cached, not re-applied
