"""A local HTTP front for the console (`make console`, the browser tests): what the stack's HTTP API does in
front of the function. The shell and its assets pass; every other request needs a token that TokenVerifier
accepts (else 401, as API Gateway answers), whose claims reach the function in the HTTP API's event shape."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from usagewatch.console.access import UnauthorizedError
from usagewatch.console.auth import TokenVerifier

PUBLIC: Final = ("/", "/static/")
MAX_BODY: Final = 1 << 20
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


class _Context:
    function_name = "usagewatch-console"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:usagewatch-console"
    aws_request_id = "local"


def event(
    method: str, target: str, headers: dict[str, str], body: str, claims: dict[str, Any] | None
) -> dict[str, Any]:
    """An HTTP API (payload format 2.0) event, as API Gateway builds it after its JWT authorizer."""
    url = urlsplit(target)
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    context: dict[str, Any] = {
        "http": {"method": method, "path": url.path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                 "userAgent": headers.get("user-agent", "")},
        "requestId": "local", "routeKey": "$default", "stage": "$default", "timeEpoch": 0,
    }  # fmt: skip
    if claims is not None:
        flat = {k: (f"[{' '.join(map(str, v))}]" if isinstance(v, list) else v) for k, v in claims.items()}
        context["authorizer"] = {"jwt": {"claims": flat, "scopes": None}}
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": url.path,
        "rawQueryString": url.query,
        "headers": headers,
        "queryStringParameters": query or None,
        "requestContext": context,
        "body": body or None,
        "isBase64Encoded": False,
    }


def serve(handler: Handler, verifier: TokenVerifier, port: int = 0) -> ThreadingHTTPServer:
    """Start the front on 127.0.0.1 (`port` 0: a free one) in a daemon thread; `.shutdown()` stops it."""

    class Front(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            return

        def _answer(self) -> None:
            path = urlsplit(self.path).path
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = min(int(headers.get("content-length") or 0), MAX_BODY)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            claims = None
            if not (path == PUBLIC[0] or path.startswith(PUBLIC[1])):
                try:
                    claims = verifier.claims(headers.get("authorization"))
                except UnauthorizedError:
                    self._send(401, {"Content-Type": "application/json"}, json.dumps({"message": "Unauthorized"}))
                    return
            result = handler(event(self.command, self.path, headers, body, claims), _Context())
            self._send(int(result["statusCode"]), result.get("headers") or {}, str(result.get("body") or ""))

        def _send(self, status: int, headers: dict[str, str], body: str) -> None:
            data = body.encode("utf-8")
            self.send_response(status)
            for name, value in headers.items():
                if name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = _answer  # noqa: N815 (http.server's names)
        do_POST = _answer  # noqa: N815

    server = ThreadingHTTPServer(("127.0.0.1", port), Front)
    threading.Thread(target=server.serve_forever, daemon=True, name="console-front").start()
    return server
