"""Redactor: registering many secrets and scrubbing a large text (the process-wide redactor sees every log line).

- 200 tokens (32 hex characters, as an API key) registered one call each, then the first scrub (which builds
  the pattern), best of 3 runs;
- scrubbing 100 KB of log-like text holding two of the tokens and a cut one, with the 200 registered;
- a 4,000-character OAuth access token (Keepnet registers its bearer token) registered and scrubbed.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any, Final

from bench.common import Row

TOKENS: Final = 200
TEXT_BYTES: Final = 100_000
REPEATS: Final = 3


def _best(action: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        action()
        best = min(best, time.perf_counter() - started)
    return best


def scenario() -> tuple[list[Row], dict[str, Any]]:
    from usagewatch.redaction import MASK, Redactor

    tokens = [secrets.token_hex(16) for _ in range(TOKENS)]
    filler = "2026-12-04T12:00:00Z INFO collected company c-0042 (Acme Ltd): 17 users, 3 licences; "
    text = (filler * (TEXT_BYTES // len(filler) + 1))[:TEXT_BYTES]
    text = f"{tokens[7]} {text[: TEXT_BYTES // 2]} key={tokens[150]} {text[TEXT_BYTES // 2 :]} cut {tokens[99][:12]}"

    def register_all() -> Redactor:
        redactor = Redactor()
        for token in tokens:
            redactor.register(token)
        redactor.scrub("")
        return redactor

    register_seconds = _best(register_all)
    redactor = register_all()
    scrubbed = redactor.scrub(text)
    leaked = [t for t in tokens if t[:8] in scrubbed]
    scrub_seconds = _best(lambda: redactor.scrub(text))

    long_token = secrets.token_urlsafe(3_000)[:4_000]

    def long_one() -> str:
        redactor = Redactor()
        redactor.register(long_token)
        return redactor.scrub(f"Authorization failed for {long_token} (cut: {long_token[:2_345]}")

    long_seconds = _best(long_one)
    long_ok = long_one() == f"Authorization failed for {MASK} (cut: {MASK}"

    rows = [
        Row(
            "redaction",
            f"register {TOKENS} tokens + build",
            register_seconds * 1000,
            "ms",
            bound=250.0,
            target="well under a second",
            ok=register_seconds * 1000 <= 250.0,
        ),
        Row(
            "redaction",
            f"scrub {TEXT_BYTES // 1000} KB, {TOKENS} registered",
            scrub_seconds * 1000,
            "ms",
            bound=100.0,
            target="a log line costs nothing",
            ok=scrub_seconds * 1000 <= 100.0 and not leaked,
            details={"leaked": len(leaked)},
        ),
        Row(
            "redaction",
            "4,000-char token: register + scrub",
            long_seconds * 1000,
            "ms",
            bound=50.0,
            target="no RecursionError",
            ok=long_seconds * 1000 <= 50.0 and long_ok,
        ),
    ]
    return rows, {
        "register_ms": register_seconds * 1000,
        "scrub_ms": scrub_seconds * 1000,
        "long_token_ms": long_seconds * 1000,
        "leaked": len(leaked),
        "long_token_masked": long_ok,
    }
