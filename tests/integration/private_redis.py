"""A private redis-server for tests that stop it or change its configuration (the shared
test Redis must not be disturbed)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import pytest


def free_port() -> int:
    """A free loopback TCP port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_redis(port: int, *options: str) -> subprocess.Popen[bytes]:
    """redis-server on 127.0.0.1:`port` without persistence (unless `options` say otherwise),
    once it accepts connections."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed")
    data = tempfile.mkdtemp(prefix="private-redis-")  # AOF/RDB files, if options ask for them
    proc = subprocess.Popen(
        [
            exe,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            data,
            "--save",
            "",
            "--appendonly",
            "no",
            *options,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("private redis-server did not start")


def stop_redis(proc: subprocess.Popen[bytes]) -> None:
    """Kill the server and reap it."""
    proc.kill()
    proc.wait(timeout=10)
