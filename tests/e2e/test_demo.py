"""The main job runs as a user would start it (embedded default) and writes its report."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.mark.timeout(400)
def test_embedded_demo_writes_report_with_plots(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLATESTREAM_KAFKA")}
    env["SLATESTREAM_STATE_DIR"] = str(tmp_path / "state")
    env.setdefault("SLATESTREAM_DATA_DIR", os.environ.get("SLATESTREAM_DATA_DIR", ""))
    if not env["SLATESTREAM_DATA_DIR"]:
        del env["SLATESTREAM_DATA_DIR"]
    out = tmp_path / "report"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "streams",
            "demo",
            "--duration",
            "8",
            "--warmup",
            "0.02",
            "--out",
            str(out),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=380,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = (out / "report.md").read_text()
    assert "mode: **embedded**" in report
    answered = int(re.search(r"answered: ([\d,]+)", report).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert answered > 0
    assert "errors: 0" in report and "duplicate answers: 0" in report
    for arm in ("in-slate-ts", "ts", "greedy"):
        assert f"| {arm} |" in report
    for png in ("ctr_over_time.png", "latency.png", "freshness.png", "roundtrip.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
