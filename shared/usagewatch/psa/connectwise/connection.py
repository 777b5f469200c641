"""The ConnectWise connection secret: where the site is and the API member's keys (docs/psa.md, "Connection")."""

from __future__ import annotations

import base64
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from usagewatch.errors import ConfigError
from usagewatch.http import validate_base_url
from usagewatch.redaction import redactor
from usagewatch.validation import describe

_SECRET_FIELDS = ("public_key", "private_key")


class ConnectWiseConnection(BaseModel):
    """One ConnectWise PSA (Manage) API member. Keys are `SecretStr`: no repr or log shows them."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    site: str
    """`na.myconnectwise.net` (https:// is implied) or a full URL; `http://` on loopback only."""
    company_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    public_key: SecretStr = Field(min_length=1, max_length=256)
    private_key: SecretStr = Field(min_length=1, max_length=256)
    client_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9-]+$")
    codebase: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/?$")
    """Skips the discovery call when set (`v4_6_release/`)."""
    requests_per_second: float = Field(default=10.0, gt=0, le=100)
    timeout_seconds: float = Field(default=30.0, gt=0, le=120)
    max_pages: int = Field(default=10_000, ge=1, le=1_000_000)

    @field_validator("site")
    @classmethod
    def _check_site(cls, value: str) -> str:
        text = value.strip()
        if "://" not in text:
            text = f"https://{text}"
        try:
            url = validate_base_url(text, field="site")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("site: ")) from exc
        if url.split("://", 1)[1].count("/"):
            raise ValueError("must be the site's host (na.myconnectwise.net), without a path")
        return url

    @field_validator("codebase")
    @classmethod
    def _slash(cls, value: str | None) -> str | None:
        return None if value is None else value.rstrip("/") + "/"

    def basic_auth(self) -> tuple[str, str]:
        """`{company_id}+{public_key}` and `{private_key}`: requests encodes them as the Basic header."""
        return (f"{self.company_id}+{self.public_key.get_secret_value()}", self.private_key.get_secret_value())


def parse_connection(raw: object) -> ConnectWiseConnection:
    """The secret's JSON object as a connection; the error names fields, never their values."""
    if not isinstance(raw, dict):
        raise ConfigError("ConnectWise secret: expected a JSON object")
    _register(raw)
    try:
        connection = ConnectWiseConnection.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"ConnectWise secret: {describe(exc)}") from None
    _register({"basic": base64.b64encode(":".join(connection.basic_auth()).encode()).decode()})
    return connection


def _register(raw: dict[str, Any]) -> None:
    for key, value in raw.items():
        if isinstance(value, str) and (key in _SECRET_FIELDS or key == "basic"):
            redactor.register(value.strip())
