"""A broker that requires TLS and SASL (SCRAM-SHA-512 over SASL_SSL, the test stack's second
listener) and Redis over TLS: commands and workers reach them with the SLATESTREAM_KAFKA_*
security settings and a rediss:// URL, and a wrong password or CA is one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.bench_ingest import start_worker, stop_worker, worker_env
from deploy import stack
from features.redis_store import with_namespace
from streams import schemas
from streams.config import load_settings, settings_kwargs
from streams.kafka_access import KafkaAccess
from tests.integration.private_redis import free_port
from tests.integration.worker_probe import wait_for_probe

pytestmark = [pytest.mark.integration]


@pytest.fixture
def secure(services: Any) -> dict[str, str]:
    """SLATESTREAM_* settings of the broker's SASL_SSL listener and of Redis's TLS port."""
    if services.secure is None:
        pytest.skip("this broker has no SASL_SSL listener (only the launcher's stack has one)")
    return {f"SLATESTREAM_{k}": v for k, v in services.secure.items()}


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def _env(services: Any, secure: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLATESTREAM_")}
    env.update(secure, **extra)
    return env


def _checks(envs: dict[str, dict[str, str]]) -> dict[str, tuple[int, str, str]]:
    """`slatestream check` under each environment, all at once (the refused ones each wait
    out kafka-python's 10 s bootstrap): name -> (exit code, stdout, stderr)."""
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "streams", "check"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        for name, env in envs.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=90)
        out[name] = (proc.returncode, stdout, stderr)
    return out


@pytest.mark.timeout(180)
def test_check_over_sasl_ssl_and_clear_errors(
    services: Any, secure: dict[str, str], tmp_path: Path
) -> None:
    other_ca = stack._tls_files(tmp_path).ca  # a CA that did not sign the broker's certificate
    runs = _checks(
        {
            "ok": _env(services, secure),
            "wrong password": _env(services, secure, SLATESTREAM_KAFKA_SASL_PASSWORD="not-it"),
            "untrusted": _env(services, secure, SLATESTREAM_KAFKA_SSL_CAFILE=str(other_ca)),
            "redis ca": _env(
                services,
                secure,
                SLATESTREAM_REDIS_URL=secure["SLATESTREAM_REDIS_URL"].split("?")[0]
                + f"?ssl_ca_certs={other_ca}",
            ),
            "no tls": _env(
                services,
                secure,
                SLATESTREAM_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
                SLATESTREAM_KAFKA_SSL_CAFILE="",
            ),
            "no user": _env(services, secure, SLATESTREAM_KAFKA_SASL_USERNAME=""),
        }
    )
    rc, out, err = runs["ok"]
    assert rc == 0, err
    assert f"kafka_bootstrap={secure['SLATESTREAM_KAFKA_BOOTSTRAP']}" in out
    assert "kafka_security=SASL_SSL (SCRAM-SHA-512, user slatestream)" in out
    assert secure["SLATESTREAM_KAFKA_SASL_PASSWORD"] not in out + err

    rc, _, err = runs["wrong password"]
    assert rc == 2 and err.count("\n") == 1, err
    # the broker's reason when kafka-python read it; a broker may also just hang up
    assert "SCRAM-SHA-512" in err and (
        "Authentication failed" in err or "check the listener's protocol, the" in err
    ), err

    rc, _, err = runs["untrusted"]
    assert rc == 2 and "CERTIFICATE_VERIFY_FAILED" in err, err

    rc, _, err = runs["redis ca"]
    assert rc == 2 and "does not answer" in err and err.count("\n") == 1, err

    rc, _, err = runs["no tls"]
    assert rc == 2 and "SASL_PLAINTEXT" in err and "Traceback" not in err, err

    rc, _, err = runs["no user"]
    assert rc == 2 and "SLATESTREAM_KAFKA_SASL_USERNAME" in err, err


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_workers_serve_a_new_item_over_sasl_ssl(
    services: Any, secure: dict[str, str], topic_prefix: str, uid: str, tmp_path: Path
) -> None:
    """Features and scorer workers (Faust, the scorer's aiokafka read-back, kafka-python topic
    creation) on the secured listener, their store on Redis over TLS: a new catalogue item
    (which reaches the scorer only through the store) is recommended."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    metrics_port = free_port()
    secured = SimpleNamespace(
        kafka_bootstrap=secure["SLATESTREAM_KAFKA_BOOTSTRAP"],
        redis_url=secure["SLATESTREAM_REDIS_URL"],
    )
    env = worker_env(
        secured,
        topic_prefix,
        f"s{uid}",
        str(tmp_path / "state"),
        SLATESTREAM_METRICS_PORT=str(metrics_port),
    )
    env.update(secure)  # its store: the TLS Redis, in its own namespace (worker_env)
    log = tmp_path / "worker.log"
    worker = start_worker(env, "features,scorer", log)
    access = KafkaAccess.of(load_settings(**settings_kwargs(secure)))
    producer = AIOKafkaProducer(**access.client_kwargs(), acks="all")
    consumer = AIOKafkaConsumer(
        f"{topic_prefix}.recommendations", **access.client_kwargs(), auto_offset_reset="earliest"
    )
    await producer.start()
    await consumer.start()
    try:
        now = int(time.time() * 1000)
        item = schemas.Item(event_id=f"it-{uid}", ts=now, item_id=f"new-{uid}", category_path=["c"])
        await producer.send_and_wait(f"{topic_prefix}.items", item.to_json(), key=b"new")
        served = False
        deadline = time.monotonic() + 150
        n = 0
        while time.monotonic() < deadline and not served:
            n += 1
            req = schemas.Request(
                event_id=f"q{n}", ts=int(time.time() * 1000), request_id=f"r{n}", user_id="u1", k=5
            )
            await producer.send_and_wait(f"{topic_prefix}.requests", req.to_json(), key=b"u1")
            batch = await consumer.getmany(timeout_ms=3000)
            for msgs in batch.values():
                for m in msgs:
                    rec = schemas.Recommendation.model_validate_json(m.value)
                    served = served or item.item_id in rec.slate
        assert served, log.read_text()[-3000:]
        # the probes see the store over TLS; the lag monitor reads the group over SASL_SSL
        ready = wait_for_probe(f"http://127.0.0.1:{metrics_port}/readyz", 200, 30, log)
        assert ready["store"] == "ok" and ready["joined_group"]

        def lag_lines() -> list[str]:
            return [
                line
                for line in _metrics(metrics_port).splitlines()
                if line.startswith("slatestream_scorer_consumer_lag{")
                and f'topic="{topic_prefix}.requests"' in line
            ]

        deadline = time.monotonic() + 30
        while not lag_lines() and time.monotonic() < deadline:
            time.sleep(1)
        assert len(lag_lines()) == 4, log.read_text()[-3000:]  # one gauge per partition
    finally:
        await producer.stop()
        await consumer.stop()
        stop_worker(worker)
    assert "Traceback" not in log.read_text(errors="replace")


@pytest.mark.timeout(180)
def test_replay_and_rebuild_over_sasl_ssl_and_tls_redis(
    services: Any, secure: dict[str, str], topic_prefix: str, uid: str, tmp_path: Path
) -> None:
    """replay (kafka-python producer) publishes a FINN.no-shaped file on the secured listener;
    features rebuild (kafka-python probe, aiokafka reader) reads it back into Redis over TLS."""
    from tests.unit.streams.test_replay import make_finn

    data, attr = make_finn(tmp_path)
    env = _env(services, secure, SLATESTREAM_TOPIC_PREFIX=topic_prefix)
    replay = _cli(
        env, "replay", "--dataset", "finn-slates", str(data), "--itemattr", str(attr), "--rate", "0"
    )
    assert replay.returncode == 0, replay.stderr
    assert "replayed 59 events" in replay.stdout
    store = with_namespace(secure["SLATESTREAM_REDIS_URL"], f"rb{uid}")
    rebuilt = _cli(env, "features", "rebuild", "--store", store)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "59 records" in rebuilt.stdout, rebuilt.stdout
    assert secure["SLATESTREAM_KAFKA_SASL_PASSWORD"] not in rebuilt.stdout + rebuilt.stderr
