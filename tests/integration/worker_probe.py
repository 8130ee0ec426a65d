"""Reading a worker's /healthz and /readyz from integration tests."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def get_probe(url: str) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body); (0, {}) while nothing serves there yet."""
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())
    except OSError:
        return 0, {}


def wait_for_probe(url: str, status: int, seconds: float, log: Path) -> dict[str, Any]:
    """Poll `url` until it answers `status` (its body), or fail with the worker's log tail."""
    deadline = time.monotonic() + seconds
    got: tuple[int, dict[str, Any]] = (0, {})
    while time.monotonic() < deadline:
        got = get_probe(url)
        if got[0] == status:
            return got[1]
        time.sleep(0.5)
    raise AssertionError(f"{url}: {got} after {seconds:.0f} s\n{log.read_text()[-2000:]}")
