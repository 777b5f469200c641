"""ThousandEyes transport: the account's secret fields, authentication, per-organisation pacing, status mapping."""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Mapping
from typing import Final, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from usagewatch.errors import VendorApiError, VendorAuthError, VendorDataError
from usagewatch.http import HttpClient, HttpResponse, RetryPolicy
from usagewatch.pacing import Deadline, HeaderLedPacer, RateLimiter, seconds_until_reset
from usagewatch.sources.base import HttpAccountConfig
from usagewatch.sources.thousandeyes.mapping import V7_EXPAND, VENDOR
from usagewatch.sources.thousandeyes.organisations import AccountGroup, Organisation, parse_account_groups
from usagewatch.text import clip

V7_ACCEPT: Final = "application/hal+json, application/json, application/problem+json"

# Rate-state key of calls made without an aid (they count against the token's current organisation).
CURRENT: Final = "current"

RATE_LIMIT_HEADER: Final = "X-Organization-Rate-Limit"

NO_QUOTA_PERMISSION: Final = (
    'the token lacks the "Edit organization and account group quotas" permission, so the MSP-assigned'
    " quotas of /v7/quotas are not read"
)
NO_BILLING_PERMISSION: Final = (
    "the token lacks the View Billing (view organisation usage) permission"
    " in this organisation; give the token's user a role with it"
)
_AID_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class ThousandEyesAccount(HttpAccountConfig):
    """One ThousandEyes user token (v7 bearer, or v6 email + basic auth token)."""

    api_version: Literal["v7", "v6"] = "v7"
    bearer_token: SecretStr | None = None
    email: str | None = Field(default=None, min_length=3, max_length=320)
    basic_auth_token: SecretStr | None = None
    aids: list[str] | None = None
    requests_per_minute: int = Field(default=240, ge=1, le=10_000)
    concurrency: int = Field(default=4, ge=1, le=16)
    timeout_seconds: float = Field(default=30.0, gt=0, le=300)

    @field_validator("aids", mode="before")
    @classmethod
    def _normalise_aids(cls, value: object) -> object:
        if value is None:
            return None
        if not isinstance(value, list):
            raise ValueError('expected a list of account group ids (aids), e.g. ["1234"]')
        aids: list[str] = []
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int | str):
                raise ValueError(f"an aid must be a string or an integer, got {type(item).__name__}")
            text = str(item).strip()
            if not _AID_RE.match(text):
                raise ValueError(f"invalid aid {text[:40]!r}")
            if text not in aids:
                aids.append(text)
        if not aids:
            raise ValueError("list at least one aid, or leave aids out to collect every organisation")
        return aids

    @model_validator(mode="after")
    def _check_credentials(self) -> ThousandEyesAccount:
        for name in ("bearer_token", "basic_auth_token"):
            secret = getattr(self, name)
            if secret is not None and not secret.get_secret_value():
                raise ValueError(f"{name} must not be empty")
        if self.api_version == "v7":
            if self.bearer_token is None:
                raise ValueError("bearer_token is required with api_version v7 (v7 accepts only bearer tokens)")
            if self.basic_auth_token is not None or self.email is not None:
                raise ValueError(
                    "email/basic_auth_token are v6 basic-auth credentials; remove them or set api_version to v6"
                )
        elif self.bearer_token is None and (self.email is None or self.basic_auth_token is None):
            raise ValueError("api_version v6 needs email and basic_auth_token, or bearer_token")
        return self


def vendor_message(response: HttpResponse) -> str:
    """What the vendor said: RFC 7807 `{title, detail}`, OAuth `{error, error_description}`, or others."""
    try:
        payload = response.json()
    except VendorDataError:
        return ""
    if not isinstance(payload, dict):
        return ""
    parts = [
        payload[key].strip()
        for key in ("title", "detail", "error", "error_description", "errorMessage", "message")
        if isinstance(payload.get(key), str) and payload[key].strip()
    ]
    return clip(": ".join(dict.fromkeys(parts)), 200)


def _header_number(headers: Mapping[str, str], name: str) -> float | None:
    raw = headers.get(name)
    if raw is None:
        return None
    try:
        value = float(raw.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


class ThousandEyesApi:
    """The HTTP side of every account one source reads: a session per account and collection, a pacer
    per organisation (kept across runs), authentication and status mapping."""

    def __init__(
        self,
        *,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        retry: RetryPolicy,
        low_remaining: int,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._retry = retry
        self._low_remaining = low_remaining
        self._pacers: dict[tuple[str, str], HeaderLedPacer] = {}
        self._pacers_lock = threading.Lock()
        self._sessions: dict[str, HttpClient] = {}

    # --- pacing -----------------------------------------------------------------------------------
    def pacer(self, account: ThousandEyesAccount, key: str) -> HeaderLedPacer:
        """Per organisation (by the aid its calls use; `current` for calls without one), kept across runs."""
        with self._pacers_lock:
            pacer = self._pacers.get((account.base_url, key))
            if pacer is None:
                bucket = RateLimiter(account.requests_per_minute / 60.0, burst=2, clock=self._clock, sleep=self._sleep)
                pacer = self._pacers[(account.base_url, key)] = HeaderLedPacer(
                    bucket,
                    low_remaining=self._low_remaining,
                    vendor=VENDOR,
                    wall_clock=self._wall_clock,
                    sleep=self._sleep,
                )
            return pacer

    def share_current(self, account: ThousandEyesAccount, key: str) -> None:
        """Calls without an aid (the account-groups list) count against the token's current
        organisation: from now on they share that organisation's pacer."""
        with self._pacers_lock:
            current = self._pacers.get((account.base_url, CURRENT))
            target = self._pacers.get((account.base_url, key))
            if current is None or target is current:
                return
            if target is None:
                self._pacers[(account.base_url, key)] = current
                return
            target.adopt(current)  # the list call was the latest word on the window
            self._pacers[(account.base_url, CURRENT)] = target

    def _reset_wait(self, response: HttpResponse) -> float | None:
        reset = _header_number(response.headers, f"{RATE_LIMIT_HEADER}-Reset")
        if reset is None:
            return None
        return seconds_until_reset(reset, self._wall_clock())

    # --- sessions ---------------------------------------------------------------------------------
    def _client(self, account: ThousandEyesAccount, deadline: Deadline | None = None) -> HttpClient:
        """One session (its connections kept alive) per account and collection; each organisation's calls
        are paced by that organisation's pacer."""
        return HttpClient(
            vendor=VENDOR,
            base_url=account.base_url,
            timeout=(min(3.05, account.timeout_seconds), account.timeout_seconds),
            retry=self._retry,
            pool_size=max(2, account.concurrency),
            wait_hint=self._reset_wait,
            sleep=self._sleep,
            clock=self._clock,
            deadline=deadline,
        )

    def open(self, account: ThousandEyesAccount, deadline: Deadline | None = None) -> None:
        self._sessions[account.account_id] = self._client(account, deadline)

    def close(self, account: ThousandEyesAccount) -> None:
        self._sessions.pop(account.account_id).close()

    # --- requests ---------------------------------------------------------------------------------
    def get(self, account: ThousandEyesAccount, rate_key: str, path: str, params: dict[str, str]) -> HttpResponse:
        pacer = self.pacer(account, rate_key)
        headers = {"Accept": V7_ACCEPT if account.api_version == "v7" else "application/json"}
        auth: tuple[str, str] | None = None
        if account.bearer_token is not None:
            headers["Authorization"] = f"Bearer {account.bearer_token.get_secret_value()}"
        elif account.email is not None and account.basic_auth_token is not None:
            auth = (account.email, account.basic_auth_token.get_secret_value())
        client = self._sessions.get(account.account_id)
        owned = client is None
        client = client or self._client(account)
        try:
            response = client.request(
                "GET", path, params=params, headers=headers, auth=auth, parse_json=True, limiter=pacer
            )
        finally:
            if owned:
                client.close()
        pacer.observe(
            _header_number(response.headers, f"{RATE_LIMIT_HEADER}-Remaining"),
            _header_number(response.headers, f"{RATE_LIMIT_HEADER}-Reset"),
        )
        if response.status == 401:
            said = vendor_message(response)
            kind = "bearer token" if account.bearer_token is not None else "email and basic_auth_token"
            raise VendorAuthError(
                f"ThousandEyes refused the {kind} (HTTP 401{': ' + said if said else ''})", status=401
            )
        return response

    def account_groups(self, account: ThousandEyesAccount) -> list[AccountGroup]:
        path = "/v7/account-groups" if account.api_version == "v7" else "/v6/account-groups.json"
        response = self.get(account, CURRENT, path, {})
        if response.status == 200:
            return parse_account_groups(response.json())
        said = vendor_message(response)
        if response.status == 403:
            raise VendorAuthError(
                f"ThousandEyes answered 403 to {path}: the token may not list account groups"
                f"{' (' + said + ')' if said else ''}",
                status=403,
            )
        raise VendorApiError(
            f"ThousandEyes {path} answered HTTP {response.status}{': ' + said if said else ''}",
            status=response.status,
            retryable=response.status >= 500,
        )

    def usage(self, account: ThousandEyesAccount, organisation: Organisation) -> HttpResponse:
        aid = organisation.call_aid
        if account.api_version == "v7":
            path, params = "/v7/usage", {"expand": V7_EXPAND}
        else:
            path, params = "/v6/usage.json", {}
        if aid is not None:
            params["aid"] = aid
        response = self.get(account, aid or CURRENT, path, params)
        if response.status == 200:
            return response
        said = vendor_message(response)
        suffix = f" (ThousandEyes said: {said})" if said else ""
        if response.status == 400 and aid is not None:
            raise VendorApiError(
                f"ThousandEyes refused aid {aid} (HTTP 400): not an account group this token belongs to{suffix}",
                status=400,
            )
        if response.status == 403:
            raise VendorAuthError(f"ThousandEyes answered 403: {NO_BILLING_PERMISSION}{suffix}", status=403)
        if response.status == 404:
            raise VendorApiError(
                f"ThousandEyes {path} answered 404: check base_url and api_version{suffix}", status=404
            )
        raise VendorApiError(
            f"ThousandEyes {path} answered HTTP {response.status}{suffix}",
            status=response.status,
            retryable=response.status >= 500,
        )
