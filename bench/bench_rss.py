"""Peak RSS per worker role under load, beside a bare Faust worker.

Starts the four roles as separate real worker processes (`python -m streams worker --role
R`, Redis feature store, one shared model registry) and, beside them, a bare Faust worker
whose one agent only counts the same interactions — the memory floor of any Faust consumer.
Produces items, interactions and recommendation requests for a few seconds, then reads
each process tree's peak RSS (VmHWM). Ratio = role / bare Faust worker.

    python -m bench.bench_rss [--quick] [--kafka host:port --redis URL]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.runner import ROOT, Services, peak_rss_tree_mb, stack_services

ROLES = ("features", "joiner", "trainer", "scorer")

_BARE = """
import faust, sys
app = faust.App(sys.argv[1], broker="kafka://" + sys.argv[2], store="memory://",
                web_enabled=False, consumer_auto_offset_reset="earliest",
                datadir=sys.argv[4])
topic = app.topic(sys.argv[3], key_type=bytes, value_type=bytes,
                  key_serializer="raw", value_serializer="raw")
seen = 0

@app.agent(topic)
async def count(stream):
    global seen
    async for batch in stream.take(1000, within=0.02):
        seen += len(batch)

faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()
"""


def _load(services: Services, prefix: str, seconds: float) -> int:
    """Items once, then interactions and requests at a steady pace; returns events sent."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=services.kafka_bootstrap, linger_ms=5)

    def send(logical: str, key: str, event: dict[str, Any]) -> None:
        producer.send(f"{prefix}.{logical}", key=key.encode(), value=json.dumps(event).encode())

    now = int(time.time() * 1000)
    for j in range(500):
        send("items", f"i{j}", {"event_id": f"it{j}", "ts": now, "item_id": f"i{j}"})
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        now = int(time.time() * 1000)
        for _ in range(100):
            user, item = f"u{n % 300}", f"i{(n * 7) % 500}"
            ev = {"event_id": f"e{n}", "ts": now, "user_id": user, "item_id": item}
            send("interactions", user, ev | {"type": "click"})
            if n % 5 == 0:
                req = {"event_id": f"q{n}", "ts": now, "request_id": f"q{n}", "user_id": user}
                send("requests", user, req | {"k": 10})
            n += 1
        producer.flush()
        time.sleep(0.05)
    producer.close()
    return n


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def measure(services: Services, seconds: float) -> dict[str, Any]:
    """Start the role workers and the bare Faust worker, load them, read peak RSS."""
    prefix = f"rss{uuid.uuid4().hex[:8]}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-rss-"))
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "SLATESTREAM_KAFKA_BOOTSTRAP": services.kafka_bootstrap,
        "SLATESTREAM_REDIS_URL": services.redis_url,
        "SLATESTREAM_STORE_URL": f"{services.redis_url}?namespace={prefix}",
        "SLATESTREAM_TOPIC_PREFIX": prefix,
        "SLATESTREAM_STATE_DIR": str(tmp / "state"),
        "SLATESTREAM_SNAPSHOT_EVERY_S": "2",
    }
    # topics first, so that the bare worker and the roles see the same partitions
    subprocess.run(
        [sys.executable, "-c", "from streams.broker import ensure_topics;"
         "from streams.config import load_settings; ensure_topics(load_settings())"],
        env=env, cwd=ROOT, check=True, timeout=60,
    )  # fmt: skip
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs = []
    try:
        for role in ROLES:
            log = open(tmp / f"{role}.log", "wb")  # noqa: SIM115
            logs.append(log)
            procs[role] = subprocess.Popen(
                [sys.executable, "-m", "streams", "worker", "--role", role],
                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        log = open(tmp / "bare.log", "wb")  # noqa: SIM115
        logs.append(log)
        (tmp / "bare-data").mkdir()
        procs["bare"] = subprocess.Popen(
            [sys.executable, "-c", _BARE, f"{prefix}-bare", services.kafka_bootstrap,
             f"{prefix}.interactions", str(tmp / "bare-data")],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        time.sleep(8)  # imports, group joins
        peak: dict[str, float] = dict.fromkeys(procs, 0.0)
        sent = [0]
        loader = threading.Thread(
            target=lambda: sent.__setitem__(0, _load(services, prefix, seconds)), daemon=True
        )
        loader.start()
        while loader.is_alive():
            for name, proc in procs.items():
                if proc.poll() is None:
                    peak[name] = max(peak[name], peak_rss_tree_mb(proc.pid))
            time.sleep(0.5)
        time.sleep(2)
        for name, proc in procs.items():
            if proc.poll() is None:
                peak[name] = max(peak[name], peak_rss_tree_mb(proc.pid))
        dead = [n for n, p in procs.items() if p.poll() is not None]
    finally:
        for proc in procs.values():
            _stop(proc)
        for log in logs:
            log.close()
    bare = peak["bare"]
    figures = [
        {
            "name": f"peak RSS, {role} worker",
            "value": round(peak[role], 1),
            "unit": "MB",
            "baseline_name": "bare Faust worker (one counting agent)",
            "baseline": round(bare, 1),
            "ratio": round(peak[role] / bare, 3) if bare else None,
            "higher_is_better": False,
        }
        for role in ROLES
    ]
    return {
        "load_seconds": seconds,
        "events_sent": sent[0],
        "exited_early": dead,
        "logs": str(tmp),
        "figures": figures,
    }


def run(quick: bool = False, services: Any = None) -> dict[str, Any]:
    """Measure peak RSS per role (quick: 8 s of load, else 30 s)."""
    seconds = 8.0 if quick else 30.0
    if services is not None:
        return measure(services, seconds)
    with stack_services() as own:
        return measure(own, seconds)


def main(argv: list[str] | None = None) -> int:
    """CLI: print the measurements as JSON."""
    p = argparse.ArgumentParser(prog="python -m bench.bench_rss", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--kafka", default=None)
    p.add_argument("--redis", default=None)
    args = p.parse_args(argv)
    services = Services(args.kafka, args.redis) if args.kafka and args.redis else None
    print(json.dumps(run(args.quick, services), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
