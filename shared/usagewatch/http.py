"""The one HTTP client every vendor module uses: timeouts, bounded retries, pacing (`pacing.py`), size caps.

Retries cover 429 and 5xx (honouring `Retry-After` or a vendor's own reset hint), connection resets,
timeouts, truncated and unparseable bodies. They are bounded in count and in total time, and by the run's
`Deadline` when it has one: no attempt's timeout, back-off or pacing wait ends past it, so the invocation
keeps its reserve for storing, publishing and the run records. TLS verification is always on; plain
`http://` is allowed for loopback hosts only (local runs and tests).
"""

from __future__ import annotations

import email.utils
import ipaddress
import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from requests.structures import CaseInsensitiveDict

from usagewatch.errors import ConfigError, VendorApiError, VendorDataError
from usagewatch.observability import logger
from usagewatch.pacing import Deadline, Pacer

DEFAULT_TIMEOUT: Final = (3.05, 20.0)
DEFAULT_MAX_RESPONSE_BYTES: Final = 20 * 1024 * 1024
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_LOOPBACK_NAMES: Final = frozenset({"localhost"})
# No attempt is started with less than this left before the run's deadline (it could not get an answer).
MIN_ATTEMPT_SECONDS: Final = 0.5


def validate_base_url(url: object, *, field: str) -> str:
    """`https://` anywhere, `http://` only on loopback; no credentials, query or fragment in the URL."""
    if not isinstance(url, str) or not url.strip():
        raise ConfigError(f"{field}: expected a URL, got {type(url).__name__}")
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"{field}: expected an https:// URL, got {parts.scheme or 'no'} scheme")
    # `in` rather than the parsed parts: an empty `?`, `#` or `@` parses as empty yet still breaks every path.
    if "@" in parts.netloc or "?" in text or "#" in text:
        raise ConfigError(f"{field}: must not carry credentials, a query or a fragment")
    if any(char.isspace() for char in text):
        raise ConfigError(f"{field}: must not contain whitespace")
    try:
        _ = parts.port
    except ValueError:
        raise ConfigError(f"{field}: invalid port") from None
    if parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(f"{field}: http:// is allowed only for loopback hosts; use https://")
    return text.rstrip("/")


def is_loopback(host: str) -> bool:
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class RetryPolicy:
    """Bounds on one logical request: attempts, total seconds, backoff shape."""

    max_attempts: int = 5
    max_total_seconds: float = 90.0
    backoff_base: float = 0.5
    backoff_cap: float = 20.0
    statuses: frozenset[int] = RETRY_STATUSES

    def backoff(self, attempt: int) -> float:
        ceiling = min(self.backoff_cap, self.backoff_base * (2 ** (attempt - 1)))
        # Jitter spreads retries out; it is not used for anything secret.
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311  # nosec B311


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes
    url: str

    def json(self) -> Any:
        """The parsed body; VendorDataError says what it was instead (empty, HTML, cut short)."""
        if not self.body.strip():
            raise VendorDataError(f"empty response body (HTTP {self.status})")
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            head = self.body.lstrip()[:15].lower()
            if head.startswith((b"<!doctype", b"<html", b"<")):
                raise VendorDataError(f"HTML instead of JSON (HTTP {self.status})") from exc
            raise VendorDataError(f"invalid or truncated JSON (HTTP {self.status}): {exc}") from exc

    def snippet(self, limit: int = 200) -> str:
        return self.body[:limit].decode("utf-8", errors="replace")


WaitHint = Callable[[HttpResponse], float | None]


@dataclass
class HttpClient:
    """One vendor account's session. Thread-safe for concurrent page or company reads."""

    vendor: str
    base_url: str
    timeout: tuple[float, float] = DEFAULT_TIMEOUT
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    limiter: Pacer | None = None
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    pool_size: int = 16
    wait_hint: WaitHint | None = None
    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    deadline: Deadline | None = None
    """The run's deadline: every attempt's timeout, back-off and pacing wait ends before it."""
    session: requests.Session = field(init=False, repr=False)
    requests_sent: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self.session = requests.Session()
        self.session.verify = True
        self.session.trust_env = False
        adapter = HTTPAdapter(pool_connections=self.pool_size, pool_maxsize=self.pool_size, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self._count_lock = threading.Lock()

    def close(self) -> None:
        self.session.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: Mapping[str, str] | None = None,
        params: Mapping[str, str | list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        parse_json: bool = False,
        retry_statuses: frozenset[int] | None = None,
        limiter: Pacer | None = None,
    ) -> HttpResponse:
        """Send one logical request, retrying what is worth retrying; return the final response.

        `limiter` paces this request instead of the client's own (one session, several rate buckets).

        Non-retryable statuses (4xx other than 429) come back to the caller, who knows what they
        mean for its vendor. With `parse_json`, a body that does not parse is retried like a 5xx and
        `VendorDataError` is raised if it stays unparseable.
        """
        statuses = self.retry.statuses if retry_statuses is None else retry_statuses
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}{path}"
        label = f"{self.vendor} {method} {urlsplit(url).path}"
        started = self.clock()
        last_problem = "no attempt made"
        limiter = limiter or self.limiter
        for attempt in range(1, self.retry.max_attempts + 1):
            if limiter is not None:
                limiter.acquire(self.deadline)
            timeout = self._attempt_timeout(label, attempt, last_problem)
            wait: float | None = None
            try:
                response = self._send(method, url, json_body, form, params, headers, auth, timeout)
            except requests.Timeout as exc:
                last_problem = f"timed out ({type(exc).__name__})"
            except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as exc:
                last_problem = f"invalid or truncated response body ({type(exc).__name__})"
            except requests.ConnectionError as exc:
                last_problem = f"connection failed ({type(exc).__name__})"
            except requests.RequestException as exc:
                # Not worth retrying (a malformed URL or header); its own message may quote a header value.
                raise VendorApiError(f"{label}: request not sent ({type(exc).__name__})") from None
            else:
                if response.status in statuses:
                    last_problem = f"HTTP {response.status}"
                    wait = self._server_wait(response)
                    if response.status == 429 and limiter is not None:
                        limiter.hold(wait if wait is not None else self.retry.backoff(attempt))
                elif parse_json and 200 <= response.status < 300:
                    try:
                        response.json()
                    except VendorDataError as exc:
                        last_problem = str(exc)
                    else:
                        return response
                else:
                    return response
            if wait is None:
                wait = self.retry.backoff(attempt)
            elapsed = self.clock() - started
            if attempt == self.retry.max_attempts or elapsed + wait > self.retry.max_total_seconds:
                break
            if self.deadline is not None:
                self.deadline.check_wait(
                    wait + MIN_ATTEMPT_SECONDS, f"{label} stopped after {attempt} attempt(s) ({last_problem})"
                )
            logger.warning(
                "vendor request retried",
                extra={"request": label, "attempt": attempt, "problem": last_problem, "wait_s": round(wait, 2)},
            )
            self.sleep(wait)
        message = f"{label} failed after {attempt} attempt(s): {last_problem}"
        if last_problem.startswith(("invalid or truncated", "HTML", "empty")):
            raise VendorDataError(message)
        raise VendorApiError(message, retryable=True)

    def _send(
        self,
        method: str,
        url: str,
        json_body: Any,
        form: Mapping[str, str] | None,
        params: Mapping[str, str | list[str]] | None,
        headers: Mapping[str, str] | None,
        auth: tuple[str, str] | None,
        timeout: tuple[float, float],
    ) -> HttpResponse:
        with self._count_lock:
            self.requests_sent += 1
        with self.session.request(
            method,
            url,
            json=json_body,
            data=form,
            params=params,
            headers=dict(headers or {}),
            auth=auth,
            timeout=timeout,
            stream=True,
            allow_redirects=False,
        ) as raw:
            declared = raw.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > self.max_response_bytes:
                raise VendorApiError(
                    f"{self.vendor}: response of {declared} bytes refused (cap {self.max_response_bytes})"
                )
            chunks: list[bytes] = []
            size = 0
            for chunk in raw.iter_content(chunk_size=65536):
                size += len(chunk)
                if size > self.max_response_bytes:
                    raise VendorApiError(f"{self.vendor}: response larger than {self.max_response_bytes} bytes refused")
                chunks.append(chunk)
            return HttpResponse(raw.status_code, CaseInsensitiveDict(raw.headers), b"".join(chunks), url)

    def _attempt_timeout(self, label: str, attempt: int, last_problem: str) -> tuple[float, float]:
        """The configured (connect, read) timeouts, cut to the time left before the run's deadline."""
        if self.deadline is None:
            return self.timeout
        left = self.deadline.left()
        if left < MIN_ATTEMPT_SECONDS:
            done = f"after {attempt - 1} attempt(s) ({last_problem})" if attempt > 1 else "before its first attempt"
            raise self.deadline.stop(f"{label} stopped {done}: the run's deadline is {max(left, 0):.1f} s away")
        return (min(self.timeout[0], left), min(self.timeout[1], left))

    def _server_wait(self, response: HttpResponse) -> float | None:
        """Seconds the server asked us to wait: `Retry-After` first, then the vendor's own hint."""
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            return min(retry_after, self.retry.backoff_cap * 3)
        if self.wait_hint is not None:
            hinted = self.wait_hint(response)
            if hinted is not None:
                return min(max(hinted, 0.0), self.retry.backoff_cap * 3)
        return None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds, from either delta-seconds or an HTTP date; None when absent or garbled."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:  # a negative, NaN or infinite delay is garbled: fall back to backoff rather than retry at once
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
