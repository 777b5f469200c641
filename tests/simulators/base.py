"""A loopback HTTP server that vendor simulators build on: request log, latency, fault injection.

A vendor simulator subclasses `Simulator` and implements `handle(request) -> SimResponse`. Tests and
the demo start it as a context manager and point an account's base URL at `sim.url`.

Faults are queued with `sim.inject(Fault(...))`: each matches requests (by a predicate over the
request: count, path, page, method, company) and replaces the vendor's answer `times` times.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

FaultAction = Literal["status", "hang", "reset", "truncate", "html", "empty", "garble", "json"]


@dataclass
class SimRequest:
    index: int
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    client: tuple[str, int] = ("", 0)  # the client's address: one per TCP connection

    def json(self) -> Any:
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace")).items()}

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


@dataclass
class SimResponse:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None

    def encoded(self) -> bytes:
        if self.raw is not None:
            return self.raw
        return b"" if self.body is None else json.dumps(self.body).encode()


@dataclass
class Fault:
    """Replace the vendor's answer for matching requests.

    action: `status` (answer `status` with `headers` and `body`), `hang` (sleep `seconds` then answer
    normally), `reset` (close the connection without answering), `truncate` (declare the full length,
    send half), `html` (a 200 HTML page), `empty` (200 with no body), `garble` (200 with broken JSON),
    `json` (200 with `body` as the JSON answer).
    """

    action: FaultAction
    match: Callable[[SimRequest], bool] = lambda _req: True
    times: int = 1
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    seconds: float = 0.0
    fired: int = 0

    def wants(self, request: SimRequest) -> bool:
        return (self.times < 0 or self.fired < self.times) and self.match(request)


def on_path(path: str) -> Callable[[SimRequest], bool]:
    return lambda req: req.path == path


def on_request(*indexes: int) -> Callable[[SimRequest], bool]:
    return lambda req: req.index in indexes


class Simulator:
    """Base vendor simulator: a ThreadingHTTPServer on 127.0.0.1 with an ephemeral port."""

    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.requests: list[SimRequest] = []
        self.responses: list[tuple[SimRequest, int]] = []
        self.faults: list[Fault] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- to implement -------------------------------------------------------------------------
    def handle(self, request: SimRequest) -> SimResponse:
        raise NotImplementedError

    # --- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "simulator not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Simulator:
        simulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _serve(self) -> None:
                simulator._dispatch(self)

            do_GET = do_POST = do_PUT = do_DELETE = _serve  # noqa: N815

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 drops SYNs when many workers connect at once

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=type(self).__name__, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- faults and introspection -------------------------------------------------------------
    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self.faults.clear()

    def count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if path is None or r.path == path)

    def statuses(self, path: str | None = None) -> list[int]:
        with self._lock:
            return [status for req, status in self.responses if path is None or req.path == path]

    # --- internals ----------------------------------------------------------------------------
    def _dispatch(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        with self._lock:
            request = SimRequest(
                index=len(self.requests) + 1,
                method=handler.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers=dict(handler.headers.items()),
                body=body,
                client=(str(handler.client_address[0]), int(handler.client_address[1])),
            )
            self.requests.append(request)
            fault = next((f for f in self.faults if f.wants(request)), None)
            if fault is not None:
                fault.fired += 1
        if self.latency:
            time.sleep(self.latency)
        if fault is not None and fault.action == "hang":
            time.sleep(fault.seconds)
            fault = None
        if fault is not None and fault.action == "reset":
            self._record(request, 0)
            handler.close_connection = True
            try:
                handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            finally:
                handler.connection.close()
            return
        if fault is not None and fault.action == "truncate" and fault.body is None:
            response = self._safe_handle(request)  # the vendor's real answer, cut short below
        else:
            response = self._fault_response(fault) if fault is not None else self._safe_handle(request)
        payload = response.encoded()
        declared = len(payload)
        if fault is not None and fault.action == "truncate":
            payload = payload[: max(1, declared // 2)]
        self._record(request, response.status)
        try:
            handler.send_response(response.status)
            content_type = "text/html" if fault is not None and fault.action == "html" else "application/json"
            headers = {"Content-Type": content_type, **response.headers, "Content-Length": str(declared)}
            for key, value in headers.items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(payload)
            handler.wfile.flush()
            if fault is not None and fault.action == "truncate":
                handler.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True

    def _safe_handle(self, request: SimRequest) -> SimResponse:
        try:
            return self.handle(request)
        except Exception as exc:  # a simulator bug must show as a 500, not a hung test
            return SimResponse(500, {"error": f"simulator error: {exc!r}"})

    def _fault_response(self, fault: Fault) -> SimResponse:
        if fault.action == "status":
            return SimResponse(fault.status, fault.body, dict(fault.headers))
        if fault.action == "html":
            return SimResponse(200, raw=b"<!DOCTYPE html><html><body>Maintenance</body></html>")
        if fault.action == "empty":
            return SimResponse(200, raw=b"")
        if fault.action == "garble":
            return SimResponse(200, raw=b'{"status": "SUCCESS", "data": {"results": [{"compa')
        if fault.action == "json":
            return SimResponse(200, fault.body, dict(fault.headers))
        return SimResponse(200, fault.body)

    def _record(self, request: SimRequest, status: int) -> None:
        with self._lock:
            self.responses.append((request, status))
