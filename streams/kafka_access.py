"""How every slatestream client reaches Kafka: the bootstrap servers plus TLS and SASL from the
settings, turned into the keyword arguments of kafka-python, aiokafka and Faust (one place, so a
secured cluster works for workers, commands and the demo alike)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from streams.errors import ConfigError

if TYPE_CHECKING:
    from streams.config import Settings

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")  # the protocols with a login
TLS_PROTOCOLS = ("SSL", "SASL_SSL")  # the protocols over TLS
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaAccess:
    """Bootstrap servers and security of the configured cluster (validated by `Settings`)."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "PLAIN"
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True

    @classmethod
    def of(cls, settings: Settings) -> KafkaAccess:
        """The access described by `settings`; ConfigError when no broker is configured."""
        if not settings.kafka_bootstrap:
            raise ConfigError("SLATESTREAM_KAFKA_BOOTSTRAP: not set (this needs a broker)")
        password = settings.kafka_sasl_password
        return cls(
            bootstrap=settings.kafka_bootstrap,
            security_protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=password.get_secret_value() if password is not None else None,
            ssl_cafile=_path(settings.kafka_ssl_cafile),
            ssl_certfile=_path(settings.kafka_ssl_certfile),
            ssl_keyfile=_path(settings.kafka_ssl_keyfile),
            ssl_check_hostname=settings.kafka_ssl_check_hostname,
        )

    @property
    def uses_ssl(self) -> bool:
        """TLS to the brokers (SSL or SASL_SSL)."""
        return self.security_protocol in TLS_PROTOCOLS

    @property
    def uses_sasl(self) -> bool:
        """A SASL login (SASL_PLAINTEXT or SASL_SSL)."""
        return self.security_protocol in SASL_PROTOCOLS

    @cached_property
    def ssl_context(self) -> ssl.SSLContext | None:
        """One client TLS context (CA, optional client certificate) for every library; None
        without TLS. ConfigError (one line) when a certificate or key cannot be loaded."""
        if not self.uses_ssl:
            return None
        try:
            ctx = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile:
                ctx.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"SLATESTREAM_KAFKA_SSL_*: cannot load the TLS files ({exc})"
            ) from None
        ctx.check_hostname = self.ssl_check_hostname
        if not self.ssl_check_hostname:
            ctx.verify_mode = ssl.CERT_REQUIRED  # the chain is still verified
        return ctx

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for kafka-python's and aiokafka's producers, consumers and admin
        clients (both libraries name these settings alike)."""
        out: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.uses_sasl:
            out.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.sasl_username,
                sasl_plain_password=self.sasl_password,
            )
        if self.uses_ssl:
            out["ssl_context"] = self.ssl_context
        return out

    def faust_credentials(self) -> Any:
        """Faust's `broker_credentials` (None for PLAINTEXT)."""
        import faust

        if self.uses_sasl:
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password,
                mechanism=self.sasl_mechanism,
                ssl_context=self.ssl_context,  # None: SASL_PLAINTEXT
            )
        if self.uses_ssl:
            return faust.SSLCredentials(self.ssl_context)
        return None


def _path(value: Any) -> str | None:
    return None if value is None else str(value)
