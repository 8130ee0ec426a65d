"""`stack up --secure`: the settings it prints, and a plain stack asked for them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deploy import stack
from streams.errors import StackError


def _secure_state() -> stack.StackState:
    return stack.StackState(
        "127.0.0.1:9092",
        "redis://127.0.0.1:6379/0",
        10,
        11,
        "/x",
        secure_bootstrap="127.0.0.1:9094",
        ssl_cafile="/x/tls/ca.pem",
        sasl_username="slatestream",
        sasl_password="pw",
        secure_redis_url="rediss://127.0.0.1:6380/0?ssl_ca_certs=/x/tls/ca.pem",
    )


def test_secure_env_lines_are_the_settings_a_worker_reads() -> None:
    from streams.config import Settings, settings_kwargs

    lines = _secure_state().env_lines(secure=True).splitlines()
    env = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    assert env["SLATESTREAM_KAFKA_BOOTSTRAP"] == "127.0.0.1:9094"
    assert env["SLATESTREAM_REDIS_URL"].startswith("rediss://127.0.0.1:6380/0")
    kwargs = settings_kwargs(env)
    kwargs.pop("kafka_ssl_cafile")  # the file does not exist here
    settings = Settings(**kwargs)
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
    # the plain lines stay what they were
    assert _secure_state().env_lines() == (
        "export SLATESTREAM_KAFKA_BOOTSTRAP=127.0.0.1:9092\n"
        "export SLATESTREAM_REDIS_URL=redis://127.0.0.1:6379/0"
    )


def test_a_plain_stack_has_no_secure_settings(tmp_path: Path) -> None:
    plain = stack.StackState("127.0.0.1:9092", "redis://127.0.0.1:6379/0", 10, 11, "/x")
    with pytest.raises(StackError, match="start it with --secure"):
        plain.env_lines(secure=True)
    # a state file written before the secure fields existed still loads
    path = tmp_path / "stack" / "stack.json"
    path.parent.mkdir()
    path.write_text(
        json.dumps(
            {
                "kafka_bootstrap": "127.0.0.1:9092",
                "redis_url": "redis://127.0.0.1:6379/0",
                "kafka_pid": 10,
                "redis_pid": 11,
                "root": "/x",
            }
        )
    )
    state = stack.read_state(tmp_path)
    assert state is not None and state.secure_bootstrap is None


def test_tls_files_make_a_ca_and_a_keystore(tmp_path: Path) -> None:
    import ssl

    files = stack._tls_files(tmp_path)
    text = files.keystore.read_text()
    assert "PRIVATE KEY" in text and text.count("BEGIN CERTIFICATE") == 2  # server, then CA
    assert not (tmp_path / "tls" / "ca.key").exists()  # the CA's key is not kept
    ctx = ssl.create_default_context(cafile=str(files.ca))
    ctx.load_cert_chain(str(files.cert), str(files.key))  # a matching pair
