"""`slatestream stack up` / `down` through the CLI: addresses to eval, nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from bench.bench_ingest import sigterm_and_wait, start_worker, worker_env
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


def _up(tmp_path: Path) -> tuple[Path, subprocess.CompletedProcess[str], dict[str, str]]:
    """`stack up` in a private state dir (the cached Kafka jars linked in): the state dir,
    the finished command and the addresses it printed."""
    state = tmp_path / "st"
    state.mkdir()
    jars = stack.ensure_kafka_jars(stack.default_state_dir())
    (state / jars.name).symlink_to(jars)
    up = _cli("up", state=state)
    assert up.returncode == 0, up.stderr
    lines = up.stdout.strip().splitlines()
    assert all(line.startswith("export SLATESTREAM_") for line in lines), lines
    return state, up, dict(line.removeprefix("export ").split("=", 1) for line in lines)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_stack_up_status_down_leaves_no_process(tmp_path: Path) -> None:
    state, up, env = _up(tmp_path)
    assert env["SLATESTREAM_KAFKA_BOOTSTRAP"].startswith("127.0.0.1:")
    assert env["SLATESTREAM_REDIS_URL"].startswith("redis://127.0.0.1:")
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


# a worker's SIGTERM used to wait mode's 60 s shutdown_timeout once the broker was gone;
# an orchestrator (Kubernetes: 30 s) would have killed it first
STOP_DEADLINE_S = 20.0


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_worker_stops_promptly_after_the_broker_is_gone(tmp_path: Path) -> None:
    state, _, addr = _up(tmp_path)
    services = SimpleNamespace(
        kafka_bootstrap=addr["SLATESTREAM_KAFKA_BOOTSTRAP"], redis_url=addr["SLATESTREAM_REDIS_URL"]
    )
    log_path = tmp_path / "worker.log"
    env = worker_env(
        services, f"stop{os.getpid()}", "stop", str(tmp_path / "w"), SLATESTREAM_METRICS_PORT="0"
    )
    proc = start_worker(env, "features", log_path, loglevel="info")
    try:
        deadline = time.monotonic() + 90
        while "Successfully synced group" not in log_path.read_text(errors="replace"):
            assert proc.poll() is None, log_path.read_text(errors="replace")[-3000:]
            assert time.monotonic() < deadline, "the worker never joined its group"
            time.sleep(0.5)
        assert _cli("down", state=state).returncode == 0
        time.sleep(3)  # the worker notices: fetches fail and back off
        took = sigterm_and_wait(proc, STOP_DEADLINE_S)
        assert took is not None, f"no exit {STOP_DEADLINE_S:.0f} s after SIGTERM without a broker"
        log = log_path.read_text(errors="replace")
        assert "Kafka consumer closed without the broker" in log
        assert "Error while stopping child" not in log, log[-3000:]
        print(f"stopped {took:.1f} s after SIGTERM, rc {proc.returncode}")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        _cli("down", state=state)


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
