"""A broker that requires TLS and SASL (SCRAM-SHA-512 over SASL_SSL, the test stack's second
listener) and Redis over TLS: commands and workers reach them with the SLATESTREAM_KAFKA_*
security settings and a rediss:// URL, and a wrong password or CA is one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bench.bench_ingest import start_worker, stop_worker, worker_env
from deploy import stack
from streams import schemas
from streams.kafka_access import KafkaAccess

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


def _env(services: Any, secure: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLATESTREAM_")}
    env.update(secure, **extra)
    return env


@pytest.mark.timeout(180)
def test_check_over_sasl_ssl_and_clear_errors(
    services: Any, secure: dict[str, str], tmp_path: Path
) -> None:
    ok = _cli(_env(services, secure), "check")
    assert ok.returncode == 0, ok.stderr
    assert f"kafka_bootstrap={secure['SLATESTREAM_KAFKA_BOOTSTRAP']}" in ok.stdout
    assert secure["SLATESTREAM_KAFKA_SASL_PASSWORD"] not in ok.stdout + ok.stderr

    wrong = _cli(_env(services, secure, SLATESTREAM_KAFKA_SASL_PASSWORD="not-it"), "check")
    assert wrong.returncode == 2
    assert wrong.stderr.count("\n") == 1, wrong.stderr
    assert "Authentication failed" in wrong.stderr and "SCRAM-SHA-512" in wrong.stderr

    other_ca = stack._tls_files(tmp_path).ca  # a CA that did not sign the broker's certificate
    untrusted = _cli(_env(services, secure, SLATESTREAM_KAFKA_SSL_CAFILE=str(other_ca)), "check")
    assert untrusted.returncode == 2
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted.stderr

    redis_ca = _cli(
        _env(
            services,
            secure,
            SLATESTREAM_REDIS_URL=secure["SLATESTREAM_REDIS_URL"].split("?")[0]
            + f"?ssl_ca_certs={other_ca}",
        ),
        "check",
    )
    assert redis_ca.returncode == 2
    assert "does not answer" in redis_ca.stderr and redis_ca.stderr.count("\n") == 1

    no_tls = _cli(
        _env(
            services,
            secure,
            SLATESTREAM_KAFKA_SECURITY_PROTOCOL="SASL_PLAINTEXT",
            SLATESTREAM_KAFKA_SSL_CAFILE="",
        ),
        "check",
    )
    assert no_tls.returncode == 2
    assert "SASL_PLAINTEXT" in no_tls.stderr and "Traceback" not in no_tls.stderr

    half = _cli(_env(services, secure, SLATESTREAM_KAFKA_SASL_USERNAME=""), "check")
    assert half.returncode == 2
    assert "SLATESTREAM_KAFKA_SASL_USERNAME" in half.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_workers_serve_a_new_item_over_sasl_ssl(
    services: Any, secure: dict[str, str], topic_prefix: str, uid: str, tmp_path: Path
) -> None:
    """Features and scorer workers (Faust, the scorer's aiokafka read-back, kafka-python topic
    creation) on the secured listener, their store on Redis over TLS: a new catalogue item
    (which reaches the scorer only through the store) is recommended."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    env = worker_env(services, topic_prefix, f"s{uid}", str(tmp_path / "state"))
    env.update(secure)
    env["SLATESTREAM_STORE_URL"] = f"{secure['SLATESTREAM_REDIS_URL']}&namespace=s{uid}"
    log = tmp_path / "worker.log"
    worker = start_worker(env, "features,scorer", log)
    access = KafkaAccess(
        bootstrap=secure["SLATESTREAM_KAFKA_BOOTSTRAP"],
        security_protocol="SASL_SSL",
        sasl_mechanism=secure["SLATESTREAM_KAFKA_SASL_MECHANISM"],
        sasl_username=secure["SLATESTREAM_KAFKA_SASL_USERNAME"],
        sasl_password=secure["SLATESTREAM_KAFKA_SASL_PASSWORD"],
        ssl_cafile=secure["SLATESTREAM_KAFKA_SSL_CAFILE"],
    )
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
    store = f"{secure['SLATESTREAM_REDIS_URL']}&namespace=rb{uid}"
    rebuilt = _cli(env, "features", "rebuild", "--store", store)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "59 records" in rebuilt.stdout, rebuilt.stdout
    assert secure["SLATESTREAM_KAFKA_SASL_PASSWORD"] not in rebuilt.stdout + rebuilt.stderr
