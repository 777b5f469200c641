"""HttpClient, RateLimiter (pacing.py), RetryPolicy, HttpResponse, validate_base_url and parse_retry_after.

Every HttpClient test talks real HTTP to a loopback simulator; waits go to an injected `sleep` that
records them (and, with `FakeClock`, advances a fake clock) so retries cost no real time. Only the
rate-limiter, hold and timeout tests spend real time, a second or two in all.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.simulators.base import Fault, SimRequest, SimResponse, Simulator, on_request
from usagewatch.errors import ConfigError, VendorApiError, VendorDataError
from usagewatch.http import (
    HttpClient,
    HttpResponse,
    RetryPolicy,
    parse_retry_after,
    validate_base_url,
)
from usagewatch.observability import logger
from usagewatch.pacing import Deadline, DeadlineError, RateLimiter

PATH = "/v1/things"
QUERY_SECRET = "qs-TOKEN-5e1d0c9b"
HEADER_SECRET = "hdr-KEY-8a7b6c5d"
BIG_BYTES = 5000
CAP = 1000


class JsonSim(Simulator):
    """Answers JSON; records when each request arrived; `/big` is over the cap, `/stream-big` too but
    without a Content-Length (the body ends when the connection closes), `/gzip-broken` claims gzip."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: list[float] = []
        self.stream_hits = 0

    def handle(self, request: SimRequest) -> SimResponse:
        if request.path == "/big":
            return SimResponse(200, {"pad": "x" * BIG_BYTES})
        if request.path == "/gzip-broken":
            return SimResponse(200, raw=b"this is not gzip", headers={"Content-Encoding": "gzip"})
        return SimResponse(200, {"ok": True, "path": request.path, "index": request.index})

    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.arrivals.append(time.monotonic())
        if urlsplit(handler.path).path == "/stream-big":
            with self._lock:
                self.stream_hits += 1
            handler.close_connection = True
            try:
                handler.send_response(200)
                handler.send_header("Content-Type", "application/json")
                handler.send_header("Connection", "close")
                handler.end_headers()
                handler.wfile.write(b"[" + b"1," * BIG_BYTES + b"1]")
                handler.wfile.flush()
            except (BrokenPipeError, ConnectionResetError):
                pass
            return
        super()._dispatch(handler)


class FakeClock:
    """A monotonic clock that only moves when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[JsonSim]:
    simulator = JsonSim()
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def sim(shared_sim: JsonSim) -> JsonSim:
    """One server for the module (stopping one costs half a second), with a clean slate per test."""
    with shared_sim._lock:
        shared_sim.faults.clear()
        shared_sim.requests.clear()
        shared_sim.responses.clear()
        shared_sim.arrivals.clear()
        shared_sim.stream_hits = 0
    return shared_sim


@pytest.fixture
def own_sim() -> Iterator[JsonSim]:
    """A server of its own, for tests that leave a handler running (a hang) when they end."""
    simulator = JsonSim()
    simulator.start()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture
def waits() -> list[float]:
    return []


def client_for(sim: JsonSim, waits: list[float], **kwargs: Any) -> HttpClient:
    kwargs.setdefault("retry", RetryPolicy(max_attempts=4, backoff_base=0.2, backoff_cap=1.0))
    kwargs.setdefault("timeout", (1.0, 2.0))
    return HttpClient("testvendor", sim.url, sleep=waits.append, **kwargs)


# --- success and the plain path ------------------------------------------------------------------


def test_plain_get_returns_parsed_json_and_counts(sim: JsonSim, waits: list[float]) -> None:
    client = client_for(sim, waits)
    response = client.request("GET", PATH, params={"page": "2"}, parse_json=True)
    assert response.status == 200
    assert response.json()["path"] == PATH
    assert response.url.endswith(PATH)
    assert sim.requests[0].query == {"page": ["2"]}
    assert client.requests_sent == 1
    assert waits == []


def test_session_verifies_tls_and_ignores_environment(sim: JsonSim, monkeypatch: pytest.MonkeyPatch) -> None:
    # With trust_env, this proxy (nothing listens on port 9) would swallow every request.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.setenv("no_proxy", "")
    client = HttpClient("testvendor", sim.url + "/")
    assert client.session.verify is True
    assert client.session.trust_env is False
    assert client.base_url == sim.url
    assert client.request("GET", PATH).status == 200


# --- 429 and 5xx -------------------------------------------------------------------------------


def test_429_retry_after_seconds_is_honoured(sim: JsonSim, waits: list[float]) -> None:
    sim.inject(Fault("status", status=429, headers={"Retry-After": "7"}))
    client = client_for(sim, waits, retry=RetryPolicy(backoff_base=0.1, backoff_cap=20.0))
    response = client.request("GET", PATH, parse_json=True)
    assert response.status == 200
    assert waits == [7.0]
    assert sim.statuses() == [429, 200]
    assert client.requests_sent == 2


def test_429_retry_after_http_date_is_honoured(sim: JsonSim, waits: list[float]) -> None:
    when = datetime.now(UTC) + timedelta(seconds=30)
    sim.inject(Fault("status", status=429, headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)}))
    client = client_for(sim, waits, retry=RetryPolicy(backoff_base=0.1, backoff_cap=20.0))
    assert client.request("GET", PATH).status == 200
    assert len(waits) == 1
    assert 27.0 <= waits[0] <= 30.0


def test_retry_after_is_capped(sim: JsonSim, waits: list[float]) -> None:
    sim.inject(Fault("status", status=429, headers={"Retry-After": "3600"}))
    client = client_for(sim, waits, retry=RetryPolicy(backoff_base=0.1, backoff_cap=2.0, max_total_seconds=90))
    assert client.request("GET", PATH).status == 200
    assert waits == [6.0]  # backoff_cap * 3


def test_429_without_retry_after_backs_off_exponentially(sim: JsonSim, waits: list[float]) -> None:
    sim.inject(Fault("status", status=429, times=2))
    client = client_for(sim, waits, retry=RetryPolicy(backoff_base=0.2, backoff_cap=10.0))
    assert client.request("GET", PATH).status == 200
    assert len(waits) == 2
    assert 0.1 <= waits[0] <= 0.2
    assert 0.2 <= waits[1] <= 0.4


def test_wait_hint_used_when_no_retry_after(sim: JsonSim, waits: list[float]) -> None:
    sim.inject(Fault("status", status=429, headers={"X-RateLimit-Reset": "4"}))

    def hint(response: HttpResponse) -> float | None:
        value = response.headers.get("X-RateLimit-Reset")
        return float(value) if value else None

    client = client_for(sim, waits, wait_hint=hint, retry=RetryPolicy(backoff_base=0.1, backoff_cap=20.0))
    assert client.request("GET", PATH).status == 200
    assert waits == [4.0]


def test_5xx_burst_then_success(sim: JsonSim, waits: list[float]) -> None:
    sim.inject(Fault("status", status=500), Fault("status", status=502), Fault("status", status=503))
    client = client_for(sim, waits, retry=RetryPolicy(max_attempts=5, backoff_base=0.2, backoff_cap=10.0))
    response = client.request("POST", PATH, json_body={"q": 1}, parse_json=True)
    assert response.status == 200
    assert sim.statuses() == [500, 502, 503, 200]
    assert client.requests_sent == 4
    assert len(waits) == 3
    for attempt, wait in enumerate(waits, start=1):
        ceiling = 0.2 * 2 ** (attempt - 1)
        assert ceiling / 2 <= wait <= ceiling
    assert all(r.json() == {"q": 1} for r in sim.requests)  # the body is sent again on each attempt


def test_retry_statuses_can_be_narrowed(sim: JsonSim, waits: list[float]) -> None:
    sim.inject(Fault("status", status=503))
    client = client_for(sim, waits)
    assert client.request("GET", PATH, retry_statuses=frozenset({429})).status == 503
    assert sim.count() == 1


def test_max_attempts_bounds_retries_with_clear_message(sim: JsonSim, waits: list[float]) -> None:
    sim.inject(Fault("status", status=503, times=-1))
    client = client_for(sim, waits, retry=RetryPolicy(max_attempts=3, backoff_base=0.01, backoff_cap=0.05))
    with pytest.raises(VendorApiError) as info:
        client.request(
            "GET",
            f"{PATH}?token={QUERY_SECRET}",
            params={"apikey": QUERY_SECRET},
            headers={"X-Api-Key": HEADER_SECRET},
        )
    message = str(info.value)
    assert message == f"testvendor GET {PATH} failed after 3 attempt(s): HTTP 503"
    assert QUERY_SECRET not in message
    assert HEADER_SECRET not in message
    assert "?" not in message
    assert info.value.retryable is True
    assert sim.count() == 3
    assert len(waits) == 2
    assert client.requests_sent == 3


def test_total_time_bounds_retries(sim: JsonSim) -> None:
    clock = FakeClock()
    sim.inject(Fault("status", status=503, times=-1, headers={"Retry-After": "4"}))
    client = HttpClient(
        "testvendor",
        sim.url,
        retry=RetryPolicy(max_attempts=50, max_total_seconds=10.0),
        sleep=clock.sleep,
        clock=clock,
    )
    with pytest.raises(VendorApiError, match=rf"^testvendor DELETE {PATH} failed after 3 attempt\(s\): HTTP 503$"):
        client.request("DELETE", PATH)
    assert clock.waits == [4.0, 4.0]  # a third wait would end after 12 s > 10 s
    assert sim.count() == 3


def test_wait_longer_than_the_budget_gives_up_at_once(sim: JsonSim) -> None:
    clock = FakeClock()
    sim.inject(Fault("status", status=429, times=-1, headers={"Retry-After": "50"}))
    client = HttpClient(
        "testvendor", sim.url, retry=RetryPolicy(max_total_seconds=30.0), sleep=clock.sleep, clock=clock
    )
    with pytest.raises(VendorApiError, match="failed after 1 attempt"):
        client.request("GET", PATH)
    assert clock.waits == []
    assert sim.count() == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409])
def test_client_errors_come_back_without_retry(sim: JsonSim, waits: list[float], status: int) -> None:
    sim.inject(Fault("status", status=status, times=-1, body={"error": "no"}))
    client = client_for(sim, waits)
    response = client.request("GET", PATH, parse_json=True)
    assert response.status == status
    assert response.json() == {"error": "no"}
    assert sim.count() == 1
    assert waits == []
    assert client.requests_sent == 1


# --- transport faults ------------------------------------------------------------------------


def test_hang_past_read_timeout_is_retried(own_sim: JsonSim, waits: list[float]) -> None:
    sim = own_sim
    sim.inject(Fault("hang", seconds=1.0))
    client = client_for(sim, waits, timeout=(1.0, 0.3))
    started = time.monotonic()
    response = client.request("GET", PATH, parse_json=True)
    assert response.status == 200
    assert time.monotonic() - started < 0.95  # gave up on the hung request at the read timeout
    assert sim.count() == 2
    assert len(waits) == 1


def test_hang_every_time_ends_in_timeout_error(own_sim: JsonSim, waits: list[float]) -> None:
    sim = own_sim
    sim.inject(Fault("hang", seconds=0.5, times=-1))
    client = client_for(sim, waits, timeout=(1.0, 0.1), retry=RetryPolicy(max_attempts=2, backoff_base=0.01))
    with pytest.raises(VendorApiError, match=r"failed after 2 attempt\(s\): timed out \(ReadTimeout\)"):
        client.request("GET", PATH)


def test_connection_reset_is_retried(sim: JsonSim, waits: list[float]) -> None:
    sim.inject(Fault("reset"))
    client = client_for(sim, waits)
    response = client.request("GET", PATH, parse_json=True)
    assert response.status == 200
    assert sim.count() == 2
    assert sim.statuses() == [0, 200]
    assert len(waits) == 1


def test_connection_refused_ends_in_api_error(waits: list[float]) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = HttpClient("testvendor", f"http://127.0.0.1:{port}", retry=RetryPolicy(max_attempts=2), sleep=waits.append)
    with pytest.raises(VendorApiError, match=r"failed after 2 attempt\(s\): connection failed"):
        client.request("GET", PATH)


def test_truncated_body_is_retried(sim: JsonSim, waits: list[float]) -> None:
    sim.inject(Fault("truncate", body={"items": list(range(200))}))
    client = client_for(sim, waits)
    response = client.request("GET", PATH, parse_json=True)
    assert response.json()["ok"] is True
    assert sim.count() == 2


def test_body_that_stays_truncated_is_a_data_error(sim: JsonSim, waits: list[float]) -> None:
    sim.inject(Fault("truncate", times=-1, body={"items": list(range(200))}))
    client = client_for(sim, waits, retry=RetryPolicy(max_attempts=3, backoff_base=0.01))
    with pytest.raises(VendorDataError, match=rf"testvendor GET {PATH} failed after 3 attempt\(s\): .*truncated"):
        client.request("GET", PATH, parse_json=True)
    assert sim.count() == 3


def test_broken_content_encoding_is_a_data_error_not_a_requests_exception(sim: JsonSim, waits: list[float]) -> None:
    client = client_for(sim, waits, retry=RetryPolicy(max_attempts=2, backoff_base=0.01))
    with pytest.raises(VendorDataError, match="failed after 2 attempt"):
        client.request("GET", "/gzip-broken", parse_json=True)
    assert sim.count("/gzip-broken") == 2


def test_unusable_url_is_an_api_error_not_a_requests_exception(waits: list[float]) -> None:
    # e.g. a vendor's own "next page" link that does not parse
    client = HttpClient("testvendor", "https://vendor.example", sleep=waits.append)
    with pytest.raises(VendorApiError, match="testvendor GET"):
        client.request("GET", "https://vendor.example:notaport/next")
    assert waits == []


def test_malformed_header_is_an_api_error_that_does_not_quote_it(sim: JsonSim, waits: list[float]) -> None:
    # requests' own InvalidHeader message would quote the header value, i.e. the token
    client = client_for(sim, waits)
    with pytest.raises(VendorApiError) as info:
        client.request("GET", PATH, headers={"Authorization": f"Bearer {HEADER_SECRET}\n"})
    assert str(info.value) == f"testvendor GET {PATH}: request not sent (InvalidHeader)"
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ is True
    assert sim.count() == 0
    assert waits == []


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        ("html", "HTML instead of JSON"),
        ("empty", "empty response body"),
        ("garble", "invalid or truncated JSON"),
    ],
)
def test_unparseable_200_retried_then_data_error(sim: JsonSim, waits: list[float], action: Any, expected: str) -> None:
    sim.inject(Fault(action, times=-1))
    client = client_for(sim, waits, retry=RetryPolicy(max_attempts=3, backoff_base=0.01))
    with pytest.raises(VendorDataError, match=rf"failed after 3 attempt\(s\): {expected}"):
        client.request("GET", PATH, parse_json=True)
    assert sim.count() == 3
    assert len(waits) == 2


@pytest.mark.parametrize("action", ["html", "empty", "garble"])
def test_unparseable_200_retried_once_then_success(sim: JsonSim, waits: list[float], action: Any) -> None:
    sim.inject(Fault(action))
    client = client_for(sim, waits)
    assert client.request("GET", PATH, parse_json=True).json()["ok"] is True
    assert sim.count() == 2


@pytest.mark.parametrize(
    ("action", "expected"),
    [("html", "HTML instead of JSON (HTTP 200)"), ("empty", "empty response body (HTTP 200)")],
)
def test_without_parse_json_the_body_comes_back_and_json_explains(
    sim: JsonSim, waits: list[float], action: Any, expected: str
) -> None:
    sim.inject(Fault(action))
    client = client_for(sim, waits)
    response = client.request("GET", PATH)
    assert sim.count() == 1
    with pytest.raises(VendorDataError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        response.json()


# --- size cap ----------------------------------------------------------------------------------


def test_declared_oversize_response_refused(sim: JsonSim, waits: list[float]) -> None:
    client = client_for(sim, waits, max_response_bytes=CAP)
    with pytest.raises(VendorApiError, match=rf"response of \d+ bytes refused \(cap {CAP}\)"):
        client.request("GET", "/big")
    assert sim.count("/big") == 1
    assert client.request("GET", PATH).status == 200  # the client is still usable


def test_streamed_oversize_response_refused(sim: JsonSim, waits: list[float]) -> None:
    client = client_for(sim, waits, max_response_bytes=CAP)
    with pytest.raises(VendorApiError, match=f"response larger than {CAP} bytes refused"):
        client.request("GET", "/stream-big")
    assert sim.stream_hits == 1


def test_streamed_response_under_the_cap_is_read(sim: JsonSim, waits: list[float]) -> None:
    client = client_for(sim, waits, max_response_bytes=BIG_BYTES * 3)
    response = client.request("GET", "/stream-big", parse_json=True)
    assert len(response.json()) == BIG_BYTES + 1


# --- rate limiting -----------------------------------------------------------------------------


def test_shared_limiter_paces_concurrent_threads(sim: JsonSim) -> None:
    limiter = RateLimiter(20, burst=1)
    client = HttpClient("testvendor", sim.url, limiter=limiter)
    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(lambda i: client.request("GET", f"{PATH}/{i}").status, range(30)))
    assert statuses == [200] * 30
    assert client.requests_sent == 30
    arrivals = sorted(sim.arrivals)
    assert len(arrivals) == 30
    span = arrivals[-1] - arrivals[0]
    assert 1.3 <= span <= 4.0  # 29 intervals of 50 ms
    for i, start in enumerate(arrivals):  # never more than rate + burst in any one-second window
        assert sum(1 for t in arrivals[i:] if t < start + 1.0) <= 22


def test_limiter_hold_makes_every_thread_wait(sim: JsonSim) -> None:
    limiter = RateLimiter(1000, burst=10)
    client = HttpClient("testvendor", sim.url, limiter=limiter)
    held_at = time.monotonic()
    limiter.hold(0.5)
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda i: client.request("GET", PATH), range(4)))
    assert len(sim.arrivals) == 4
    assert min(sim.arrivals) >= held_at + 0.45


def test_429_holds_the_shared_limiter(sim: JsonSim, waits: list[float]) -> None:
    # The client's own sleep is a no-op here, so only the held limiter can space the retry out.
    limiter = RateLimiter(1000, burst=10)
    sim.inject(Fault("status", status=429, headers={"Retry-After": "0.6"}, match=on_request(1)))
    client = client_for(sim, waits, limiter=limiter)
    assert client.request("GET", PATH).status == 200
    assert waits == [0.6]
    first, second = sim.arrivals
    assert second - first >= 0.55


def test_limiter_token_bucket_with_fake_clock() -> None:
    clock = FakeClock()
    limiter = RateLimiter(2, burst=3, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        limiter.acquire()
    assert clock.waits == []  # the burst is free
    limiter.acquire()
    assert clock.waits == [pytest.approx(0.5)]
    clock.waits.clear()
    limiter.hold(10)
    limiter.hold(1)  # a shorter hold does not shorten a longer one already in force
    limiter.acquire()
    assert sum(clock.waits) >= 10.0
    with pytest.raises(ValueError):
        RateLimiter(0)


def test_retry_policy_backoff_is_capped() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_cap=5.0)
    for attempt in range(1, 12):
        assert 0 < policy.backoff(attempt) <= 5.0
    assert policy.backoff(10) >= 2.5


def test_requests_sent_is_thread_safe(sim: JsonSim) -> None:
    client = HttpClient("testvendor", sim.url)
    threads = [threading.Thread(target=lambda: [client.request("GET", PATH) for _ in range(10)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.requests_sent == 40 == sim.count()


# --- retries are logged without secrets ------------------------------------------------------


class _CurrentStdout:
    """Writes to whatever sys.stdout is at the time of writing (capsys swaps it between test phases)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def log_output(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """What the Powertools logger writes (JSON lines on stdout), as capsys captures it.

    The handler keeps the stdout object it was created with (pytest's, at collection); make it
    write to the current one for the length of the test.
    """
    handlers = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    assert handlers, "the Powertools logger has no stream handler"
    previous = [h.setStream(_CurrentStdout()) for h in handlers]
    yield lambda: capsys.readouterr().out
    for handler, stream in zip(handlers, previous, strict=True):
        handler.setStream(stream)


def test_retry_log_line_names_path_without_query(
    sim: JsonSim, waits: list[float], log_output: Callable[[], str]
) -> None:
    sim.inject(Fault("status", status=503))
    client = client_for(sim, waits)
    client.request("GET", f"{PATH}?token={QUERY_SECRET}", headers={"Authorization": f"Bearer {HEADER_SECRET}"})
    out = log_output()
    assert "vendor request retried" in out
    assert f"testvendor GET {PATH}" in out
    assert QUERY_SECRET not in out
    assert HEADER_SECRET not in out


# --- validate_base_url -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.vendor.example", "https://api.vendor.example"),
        ("https://api.vendor.example/api/", "https://api.vendor.example/api"),
        ("  https://api.vendor.example:8443/v1  ", "https://api.vendor.example:8443/v1"),
        ("HTTPS://API.vendor.example", "HTTPS://API.vendor.example"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.5.6.7", "http://127.5.6.7"),
        ("http://localhost:3000/", "http://localhost:3000"),
        ("http://LOCALHOST", "http://LOCALHOST"),
        ("http://[::1]:9000", "http://[::1]:9000"),
    ],
)
def test_base_url_accepted(url: str, expected: str) -> None:
    assert validate_base_url(url, field="base_url") == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://example.com", "http:// is allowed only for loopback"),
        ("http://10.0.0.1", "http:// is allowed only for loopback"),
        ("http://localhost.evil.example", "http:// is allowed only for loopback"),
        ("http://127.0.0.1.nip.io", "http:// is allowed only for loopback"),
        ("ftp://files.example", "expected an https:// URL"),
        ("api.vendor.example", "expected an https:// URL"),
        ("https://", "expected an https:// URL"),
        ("https://user:pw@api.vendor.example", "credentials"),
        ("https://user@api.vendor.example", "credentials"),
        ("https://@api.vendor.example", "credentials"),
        ("https://api.vendor.example/?key=abc", "query"),
        ("https://api.vendor.example/?", "query"),
        ("https://api.vendor.example/#top", "fragment"),
        ("https://api.vendor.example#", "fragment"),
        ("https://api.vendor.example:notaport", "port"),
        ("https://api.vendor.example:99999", "port"),
        ("https://api.vendor .example", "whitespace"),
        ("", "expected a URL"),
        ("   ", "expected a URL"),
    ],
)
def test_base_url_refused_naming_the_field(url: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_base_url(url, field="accounts[0].base_url")
    message = str(info.value)
    assert message.startswith("accounts[0].base_url: ")
    assert reason in message
    assert "pw" not in message
    assert "abc" not in message


@pytest.mark.parametrize("value", [None, 42, b"https://api.vendor.example", ["https://x"]])
def test_base_url_non_string_refused(value: object) -> None:
    with pytest.raises(ConfigError, match=r"^access_url: expected a URL, got "):
        validate_base_url(value, field="access_url")


# --- parse_retry_after -----------------------------------------------------------------------

NOW = datetime(2026, 11, 22, 6, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 3 ", 3.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Sun, 22 Nov 2026 06:01:30 GMT", 90.0),
        ("Sun, 22 Nov 2026 05:59:00 GMT", 0.0),  # a date in the past: retry now
        ("Sun, 22 Nov 2026 07:00:00 +0100", 0.0),
        ("Sun, 22 Nov 2026 06:00:10 -0000", 10.0),
        (None, None),
        ("", None),
        ("soon", None),
        ("Sun, 99 Nov 2026 06:00:00 GMT", None),
        ("-5", None),
        ("-0.5", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_negative_retry_after_falls_back_to_backoff(sim: JsonSim, waits: list[float]) -> None:
    sim.inject(Fault("status", status=503, headers={"Retry-After": "-1"}))
    client = client_for(sim, waits, retry=RetryPolicy(backoff_base=0.2, backoff_cap=1.0))
    assert client.request("GET", PATH).status == 200
    assert len(waits) == 1
    assert 0.1 <= waits[0] <= 0.2


# --- the run's deadline ----------------------------------------------------------------------------


def deadline_in(seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
    ends = clock() + seconds
    return Deadline(lambda: ends - clock())


def test_a_hung_request_is_cut_to_the_time_left_before_the_deadline(own_sim: JsonSim, waits: list[float]) -> None:
    own_sim.inject(Fault("hang", times=-1, seconds=5.0))
    deadline = deadline_in(1.0)
    client = client_for(own_sim, waits, timeout=(3.05, 20.0), deadline=deadline)
    started = time.monotonic()
    with pytest.raises(DeadlineError, match=r"^deadline: testvendor GET /v1/things stopped after 1 attempt\(s\)"):
        client.request("GET", PATH)
    assert time.monotonic() - started < 2.0, "the 20 s read timeout was not cut to the 1 s left"
    assert deadline.reached and waits == []


def test_a_retry_whose_wait_would_pass_the_deadline_is_not_started(sim: JsonSim) -> None:
    clock = FakeClock()
    sim.inject(Fault("status", times=-1, status=503, headers={"Retry-After": "10"}))
    deadline = deadline_in(25.0, clock)
    client = HttpClient(
        "testvendor", sim.url, retry=RetryPolicy(max_attempts=5), sleep=clock.sleep, clock=clock, deadline=deadline
    )
    with pytest.raises(DeadlineError, match=r"after 3 attempt\(s\) \(HTTP 503\): waiting 10\.5 s would pass"):
        client.request("GET", PATH)
    assert sim.count() == 3 and clock.waits == [10.0, 10.0]
    assert clock() - 1000.0 <= 25.0


def test_no_request_is_sent_once_the_deadline_has_come(sim: JsonSim, waits: list[float]) -> None:
    deadline = Deadline(lambda: 0.2)
    with pytest.raises(DeadlineError, match="before its first attempt"):
        client_for(sim, waits, deadline=deadline).request("GET", PATH)
    assert sim.count() == 0 and deadline.reached


def test_a_pacing_wait_past_the_deadline_is_refused() -> None:
    clock = FakeClock()
    limiter = RateLimiter(1.0, burst=1, clock=clock, sleep=clock.sleep)
    limiter.acquire()
    limiter.hold(30.0)
    deadline = deadline_in(10.0, clock)
    with pytest.raises(DeadlineError, match=r"request pacing: waiting 30\.0 s would pass"):
        limiter.acquire(deadline)
    assert clock.waits == [] and deadline.reached
    limiter.acquire(deadline_in(60.0, clock))
    assert clock.waits[0] == 30.0, "with time enough, the held wait is served"
