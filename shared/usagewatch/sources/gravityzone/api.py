"""GravityZone transport: the account's secret fields, JSON-RPC calls per API class, the vendor's errors."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator

from usagewatch.errors import ConfigError, VendorApiError, VendorAuthError, VendorDataError
from usagewatch.http import HttpClient, RetryPolicy, validate_base_url
from usagewatch.observability import logger
from usagewatch.pacing import Deadline, Pacer
from usagewatch.redaction import redactor
from usagewatch.sources.base import AccountConfig
from usagewatch.sources.gravityzone.mapping import VENDOR

Api = Literal["licensing", "network"]
_API_LABEL: Final[dict[str, str]] = {"licensing": "Licensing", "network": "Network"}

# Listing methods of the Network API.
FOLDERS_METHOD: Final = "getCompanyFoldersList"
INVENTORY_METHOD: Final = "getNetworkInventoryItems"
INVENTORY_PAGE_SIZE: Final = 1000  # the documented maximum of `perPage` (v1.1)
MAX_INVENTORY_PAGES: Final = 100

# JSON-RPC error codes GravityZone uses.
RPC_INVALID_PARAMS: Final = -32602
RPC_METHOD_NOT_FOUND: Final = -32601
RPC_RATE_LIMITED: Final = -32003

DEFAULT_RATE_LIMIT_WAIT: Final = 1.0

_LOGIN_ONLY_HOSTS: Final = frozenset({"gravityzone.bitdefender.com"})

_NO_LICENCE_NEGATION_RE: Final = re.compile(r"\b(no|not|without|missing|lacks?)\b|n't\b")

AUTH_REJECTED_MESSAGE: Final = (
    "GravityZone rejected the API key: invalid key, or the key belongs to another region's host (check access_url)"
)


class GravityZoneAccount(AccountConfig):
    """One GravityZone console (Control Center) from the vendor secret.

    `access_url` is the Control Center "Access URL" (My Account > Control Center API), which differs by
    region and already ends in `/api`.
    """

    access_url: str
    api_key: SecretStr = Field(min_length=1)
    licensing_requests_per_second: float = Field(default=5.0, gt=0, le=100)
    network_requests_per_second: float = Field(default=10.0, gt=0, le=100)
    concurrency: int = Field(default=5, ge=1, le=32)
    previous_month_days: int = Field(default=3, ge=0, le=27)
    per_product_type: bool = False
    root_company_id: str | None = Field(default=None, min_length=1, max_length=128)
    timeout_seconds: float = Field(default=20.0, gt=0, le=120)

    @field_validator("access_url")
    @classmethod
    def _check_access_url(cls, value: str) -> str:
        try:
            url = validate_base_url(value, field="access_url")
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("access_url: ")) from exc
        host = (urlsplit(url).hostname or "").lower()
        if host in _LOGIN_ONLY_HOSTS:
            raise ValueError(
                f"{host} is the login page, not an API host; use the Control Center Access URL "
                "(e.g. https://cloudgz.gravityzone.bitdefender.com/api)"
            )
        return url


class GravityZoneRpcError(VendorApiError):
    """A JSON-RPC error object (GravityZone sends most of them with HTTP 200)."""

    def __init__(self, *, api: str, method: str, code: int | None, message: str, details: str | None) -> None:
        text = f"GravityZone {api}.{method}: JSON-RPC error {code} ({message})"
        if details:
            text += f": {details}"
        super().__init__(redactor.scrub(text), status=200, retryable=code == RPC_RATE_LIMITED)
        self.code = code
        self.rpc_message = message
        self.details = details


def is_no_licence_error(error: GravityZoneRpcError) -> bool:
    """An error whose text says the company has no monthly licence / subscription.

    Only a fallback: the documented answer of such a company is `0` (see `is_no_licence_result`); the
    2017 API guide said the call errors instead, without giving the error's code or text.
    """
    text = f"{error.rpc_message} {error.details or ''}".lower()
    return (
        "monthly" in text
        and ("licen" in text or "subscription" in text)
        and _NO_LICENCE_NEGATION_RE.search(text) is not None
    )


class RpcClient:
    """JSON-RPC calls of one account: one HttpClient and one limiter per API class."""

    def __init__(
        self,
        account: GravityZoneAccount,
        limiters: Mapping[str, Pacer],
        *,
        retry: RetryPolicy,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        deadline: Deadline | None = None,
    ) -> None:
        self._auth = (account.api_key.get_secret_value(), "")
        self._host = urlsplit(account.access_url).hostname or account.access_url
        self._limiters = limiters
        self._retry = retry
        self._sleep = sleep
        self._deadline = deadline
        # Documented methods this server answered -32601 for, not asked again in this run.
        self.missing_methods: set[str] = set()
        self._clients: dict[str, HttpClient] = {
            api: HttpClient(
                vendor=VENDOR,
                base_url=account.access_url,
                timeout=(3.05, account.timeout_seconds),
                retry=retry,
                limiter=limiters[api],
                pool_size=account.concurrency + 2,
                sleep=sleep,
                clock=clock,
                deadline=deadline,
            )
            for api in ("licensing", "network")
        }

    @property
    def requests_sent(self) -> int:
        return sum(client.requests_sent for client in self._clients.values())

    def close(self) -> None:
        for client in self._clients.values():
            client.close()

    def call(self, api: Api, method: str, params: Mapping[str, Any], *, version: str = "1.0") -> Any:
        """One JSON-RPC call's `result`; raises GravityZoneRpcError / VendorAuthError / VendorApiError.

        `version` picks the API version in the path (`getNetworkInventoryItems` is documented at 1.1).
        """
        client = self._clients[api]
        for attempt in range(1, self._retry.max_attempts + 1):
            body = {"jsonrpc": "2.0", "method": method, "params": dict(params), "id": str(uuid.uuid4())}
            try:
                response = client.request(
                    "POST", f"/v{version}/jsonrpc/{api}", json_body=body, auth=self._auth, parse_json=True
                )
            except VendorDataError as exc:
                raise VendorDataError(f"GravityZone {api}.{method}: {exc}") from exc
            except VendorApiError as exc:
                raise VendorApiError(
                    f"GravityZone {api}.{method}: {exc}", status=exc.status, retryable=exc.retryable
                ) from exc
            if response.status == 401:
                raise VendorAuthError(f"{AUTH_REJECTED_MESSAGE}; host {self._host}", status=401)
            if response.status == 403:
                raise VendorAuthError(
                    f"GravityZone: the {_API_LABEL[api]} API is not enabled for this key "
                    f"(HTTP 403 on {api}.{method}; enable Licensing and Network when generating the key)",
                    status=403,
                )
            if response.status != 200:
                raise self._http_error(api, method, response.status, response.body)
            payload = response.json()
            if not isinstance(payload, dict):
                raise VendorDataError(f"GravityZone {api}.{method}: expected a JSON-RPC object")
            error = payload.get("error")
            if error is not None:
                rpc_error = _rpc_error(api, method, error)
                if rpc_error.code != RPC_RATE_LIMITED or attempt == self._retry.max_attempts:
                    raise rpc_error
                wait = DEFAULT_RATE_LIMIT_WAIT
                self._limiters[api].hold(wait)
                logger.warning("gravityzone rate limited (JSON-RPC -32003)", extra={"method": f"{api}.{method}"})
                if self._deadline is not None:
                    self._deadline.check_wait(wait, f"GravityZone {api}.{method} rate limited (JSON-RPC -32003)")
                self._sleep(wait)
                continue
            if "result" not in payload:
                raise VendorDataError(f"GravityZone {api}.{method}: JSON-RPC answer without result or error")
            return payload["result"]
        raise VendorApiError(f"GravityZone {api}.{method}: still rate limited", retryable=True)  # pragma: no cover

    def _http_error(self, api: str, method: str, status: int, body: bytes) -> VendorApiError:
        hint = ""
        if status in (404, 405):
            hint = " (check access_url: the Control Center Access URL, normally ending in /api)"
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            rpc = _rpc_error(api, method, payload["error"])
            return VendorApiError(f"{rpc} (HTTP {status}){hint}", status=status)
        return VendorApiError(f"GravityZone {api}.{method}: HTTP {status}{hint}", status=status)


def _rpc_error(api: str, method: str, error: object) -> GravityZoneRpcError:
    if not isinstance(error, dict):
        return GravityZoneRpcError(api=api, method=method, code=None, message=str(error)[:200], details=None)
    code = error.get("code")
    data = error.get("data")
    details = data.get("details") if isinstance(data, dict) else None
    return GravityZoneRpcError(
        api=api,
        method=method,
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
        message=str(error.get("message") or "no message")[:200],
        details=str(details)[:500] if details is not None else None,
    )
