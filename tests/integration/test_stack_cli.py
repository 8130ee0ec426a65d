"""`slatestream stack up` / `down` through the CLI: addresses to eval, nothing left behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy import stack

pytestmark = [pytest.mark.integration]


def _cli(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", "stack", *args, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=180,
        env=dict(os.environ),
    )


def _pids_under(root: Path) -> list[int]:
    """Processes whose command line mentions the stack dir (our Kafka and Redis)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if str(root) in cmd or cwd.startswith(str(root)):
            out.append(int(proc.name))
    return out


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_stack_up_status_down_leaves_no_process(tmp_path: Path) -> None:
    state = tmp_path / "st"
    state.mkdir()
    jars = stack.ensure_kafka_jars(stack.default_state_dir())
    (state / jars.name).symlink_to(jars)
    up = _cli("up", state=state)
    assert up.returncode == 0, up.stderr
    env = dict(line.split("=", 1) for line in up.stdout.strip().splitlines())
    assert env["KAFKA_BOOTSTRAP"].startswith("127.0.0.1:")
    assert env["REDIS_URL"].startswith("redis://127.0.0.1:")
    assert len(_pids_under(state / "stack")) >= 2
    st = _cli("status", state=state)
    assert st.returncode == 0 and "# kafka: up" in st.stdout

    # a second `up` reuses the running stack instead of starting another
    again = _cli("up", state=state)
    assert again.stdout == up.stdout

    down = _cli("down", state=state)
    assert down.returncode == 0
    assert _pids_under(state / "stack") == []
    assert _cli("status", state=state).returncode == 1


@pytest.mark.timeout(60)
def test_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = _cli("up", "--kafka-port", str(port), state=tmp_path)
    assert proc.returncode == 2
    assert f"port {port}" in proc.stderr and "taken" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.timeout(60)
def test_missing_java_is_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}
    proc = subprocess.run(
        [sys.executable, "-m", "streams", "stack", "up", "--state-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert proc.returncode == 2
    assert "java not found" in proc.stderr and "Traceback" not in proc.stderr
