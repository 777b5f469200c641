"""What every vendor module shares: the account model's common fields and error wording."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from usagewatch.errors import ConfigError
from usagewatch.http import validate_base_url
from usagewatch.redaction import redactor
from usagewatch.validation import describe


class AccountConfig(BaseModel):
    """One account from a vendor secret. Secret fields are `SecretStr`, so no repr or log shows them."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    account_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class HttpAccountConfig(AccountConfig):
    base_url: str

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        try:
            return validate_base_url(value, field="base_url")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("base_url: ")) from exc


_SECRET_WORDS = ("secret", "key", "token", "password")

AccountModelT = TypeVar("AccountModelT", bound=AccountConfig)


def parse_account(model: type[AccountModelT], raw: dict[str, Any], *, index: int, vendor: str) -> AccountModelT:
    """Validate one secret account; the error names the field, never its value."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{vendor} secret: accounts[{index}] must be an object")
    for key, value in raw.items():
        if isinstance(value, str) and any(word in key.lower() for word in _SECRET_WORDS):
            redactor.register(value)
    try:
        account = model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{vendor} secret: {describe(exc, f'accounts[{index}]')}") from None
    for name in type(account).model_fields:
        value = getattr(account, name)
        if isinstance(value, SecretStr):
            redactor.register(value.get_secret_value())
    return account
