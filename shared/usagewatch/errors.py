"""The one small error hierarchy; the pipeline turns these into run records and events."""

from __future__ import annotations


class UsagewatchError(Exception):
    """Base of every error usagewatch raises on purpose."""


class ConfigError(UsagewatchError):
    """Environment, secret, rules document or event is missing or malformed."""


class VendorApiError(UsagewatchError):
    """A vendor API call failed (HTTP status, protocol error, timeout, retries exhausted)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class VendorAuthError(VendorApiError):
    """The credential was refused: retrying with the same credential cannot help."""


class VendorDataError(UsagewatchError):
    """A vendor answered, but with a payload that cannot be trusted (wrong types, missing fields)."""


class StoreError(UsagewatchError):
    """DynamoDB refused a write after retries."""


class PublishError(UsagewatchError):
    """SNS did not accept a message."""
