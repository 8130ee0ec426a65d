"""Kafka security settings: validated together, one line naming the variables; turned into the
same client arguments for kafka-python and aiokafka, and Faust credentials."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from deploy import stack
from streams.config import load_settings
from streams.errors import ConfigError
from streams.kafka_access import KafkaAccess

pytestmark = pytest.mark.usefixtures("clean_env")

SASL = {
    "kafka_bootstrap": "127.0.0.1:9093",
    "kafka_security_protocol": "sasl_ssl",
    "kafka_sasl_mechanism": "scram-sha-512",
    "kafka_sasl_username": "alice",
    "kafka_sasl_password": "s3cret",
}


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA made by the launcher's own TLS helper (openssl)."""
    return stack._tls_files(tmp_path_factory.mktemp("tls")).ca


def test_plaintext_by_default() -> None:
    access = KafkaAccess.of(load_settings(kafka_bootstrap="h:1"))
    assert access.client_kwargs() == {"bootstrap_servers": "h:1", "security_protocol": "PLAINTEXT"}
    assert access.faust_credentials() is None
    assert access.ssl_context is None


def test_sasl_ssl_arguments_and_credentials(ca: Path) -> None:
    access = KafkaAccess.of(load_settings(**SASL, kafka_ssl_cafile=str(ca)))
    kw = access.client_kwargs()
    assert kw["security_protocol"] == "SASL_SSL"  # upper-cased
    assert kw["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kw["sasl_plain_username"], kw["sasl_plain_password"]) == ("alice", "s3cret")
    ctx = kw["ssl_context"]
    assert isinstance(ctx, ssl.SSLContext) and ctx.check_hostname
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx is access.ssl_context  # one context per access, shared by every client
    creds = access.faust_credentials()
    assert isinstance(creds, faust.SASLCredentials)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert creds.ssl_context is ctx


def test_sasl_plaintext_and_ssl_only(ca: Path) -> None:
    plain = KafkaAccess.of(load_settings(**{**SASL, "kafka_security_protocol": "SASL_PLAINTEXT"}))
    assert "ssl_context" not in plain.client_kwargs()
    assert plain.faust_credentials().protocol.value == "SASL_PLAINTEXT"
    tls = KafkaAccess.of(
        load_settings(
            kafka_bootstrap="h:1",
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=str(ca),
            kafka_ssl_check_hostname=False,
        )
    )
    assert "sasl_mechanism" not in tls.client_kwargs()
    assert isinstance(tls.faust_credentials(), faust.SSLCredentials)
    ctx = tls.ssl_context
    assert ctx is not None and not ctx.check_hostname and ctx.verify_mode == ssl.CERT_REQUIRED


def test_the_password_is_never_shown() -> None:
    settings = load_settings(**SASL)
    access = KafkaAccess.of(settings)
    for text in (repr(settings), str(settings), repr(access)):
        assert "s3cret" not in text


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"kafka_sasl_password": None}, ["SASL_SSL", "SLATESTREAM_KAFKA_SASL_PASSWORD"]),
        ({"kafka_sasl_username": ""}, ["SLATESTREAM_KAFKA_SASL_USERNAME"]),
        (
            {"kafka_security_protocol": "PLAINTEXT"},
            ["SLATESTREAM_KAFKA_SASL_USERNAME", "PLAINTEXT"],
        ),
        ({"kafka_security_protocol": "TLS"}, ["SLATESTREAM_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"]),
        ({"kafka_sasl_mechanism": "GSSAPI"}, ["SLATESTREAM_KAFKA_SASL_MECHANISM", "SCRAM-SHA-256"]),
        ({"kafka_ssl_cafile": "/no/such/ca.pem"}, ["SLATESTREAM_KAFKA_SSL_CAFILE", "/no/such"]),
    ],
)
def test_inconsistent_settings_are_one_clear_error(
    overrides: dict[str, object], names: list[str]
) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(**{**SASL, **overrides})
    for name in names:
        assert name in str(err.value)


def test_tls_files_only_with_a_tls_protocol(ca: Path) -> None:
    with pytest.raises(ConfigError, match="SLATESTREAM_KAFKA_SSL_CAFILE is set but"):
        load_settings(kafka_bootstrap="h:1", kafka_ssl_cafile=str(ca))
    with pytest.raises(ConfigError, match="KEYFILE needs SLATESTREAM_KAFKA_SSL_CERTFILE"):
        load_settings(kafka_security_protocol="SSL", kafka_ssl_keyfile=str(ca))


def test_an_unloadable_certificate_is_a_config_error(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate\n")
    access = KafkaAccess.of(
        load_settings(kafka_bootstrap="h:1", kafka_security_protocol="SSL", kafka_ssl_cafile=bogus)
    )
    with pytest.raises(ConfigError, match="cannot load the TLS files"):
        access.client_kwargs()


def test_empty_variables_unset_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLATESTREAM_KAFKA_SSL_CAFILE", "")
    monkeypatch.setenv("SLATESTREAM_KAFKA_SASL_USERNAME", "")
    settings = load_settings(kafka_bootstrap="h:1")
    assert settings.kafka_ssl_cafile is None and settings.kafka_sasl_username is None
