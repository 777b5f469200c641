"""Secret values never leave the process: every secret read is registered here and scrubbed from text."""

from __future__ import annotations

import logging
import re
import threading
from typing import Final

MASK: Final = "***"
# Strings shorter than this are too common to scrub without mangling ordinary text.
_MIN_SECRET_LENGTH: Final = 6
_AUTH_HEADER_RE: Final = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(basic|bearer)?\s*[^\s'\",}]+")


class Redactor:
    """A thread-safe set of secret strings, scrubbed from any text handed to `scrub`."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def register(self, *values: str | None) -> None:
        with self._lock:
            added = {v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET_LENGTH}
            if not added - self._secrets:
                return
            self._secrets |= added
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(s) for s in ordered))

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None:
            text = pattern.sub(MASK, text)
        return _AUTH_HEADER_RE.sub(lambda m: f"{m.group(1)}{MASK}", text)

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._pattern = None


redactor: Final = Redactor()


class RedactingFilter(logging.Filter):
    """Scrubs registered secrets and Authorization headers from a log record before it is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) or record.args:
            record.msg = redactor.scrub(record.getMessage())
            record.args = ()
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS and isinstance(value, str):
                setattr(record, key, redactor.scrub(value))
        return True


_STANDARD_ATTRS: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
