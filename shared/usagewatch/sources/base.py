"""What every vendor module shares: the account model's common fields and error wording, a source's
injectable sleep, clock and retry policy, and the error that carries a vendor failure to where it is reported."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypedDict, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from usagewatch.errors import ConfigError, UsagewatchError
from usagewatch.http import RetryPolicy, validate_base_url
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


class SourceClocks(TypedDict, total=False):
    """A source's constructor arguments every source takes (those of `VendorSource`)."""

    sleep: Callable[[float], None]
    clock: Callable[[], float]
    retry: RetryPolicy | None


class VendorSource(Generic[AccountModelT]):
    """The base of a source (the `Source` protocol in model.py): accounts parsed with `account_model`, and the
    sleep, clock and retry policy its HTTP calls and pacing use, injectable so tests need not wait."""

    vendor: str
    account_model: type[AccountModelT]

    def __init__(
        self,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._retry = retry or RetryPolicy()

    def parse_account(self, raw: dict[str, Any], *, index: int = 0) -> AccountModelT:
        return parse_account(self.account_model, raw, index=index, vendor=self.vendor)

    def account_id(self, account: AccountModelT) -> str:
        return account.account_id


class CarriedError(Exception):
    """A vendor failure carried out of a worker thread or a source's own control flow; `cause` is the error to
    report or raise."""

    def __init__(self, cause: UsagewatchError) -> None:
        super().__init__(str(cause))
        self.cause = cause
