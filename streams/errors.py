"""The one exceptions module of the pipeline: every error slatestream raises on purpose."""

from __future__ import annotations


class SlatestreamError(Exception):
    """Root of every slatestream error; the CLI prints these as one line, never a traceback."""


class ConfigError(SlatestreamError):
    """A setting is invalid; the message names the setting (env variable)."""


class SchemaError(SlatestreamError):
    """An event does not match the contract; `reason` is a short machine-friendly code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class StackError(SlatestreamError):
    """The local Kafka/Redis stack could not be started, reached or stopped."""


class BrokerUnavailable(SlatestreamError):
    """The configured Kafka broker does not answer."""
