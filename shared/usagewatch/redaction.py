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
    """Scrubs registered secrets and Authorization headers from a log record before it is formatted.

    Covers the message and its arguments (a string or a dict message), every `extra` value (nested
    dicts, lists and tuples, and any other object as its `str`) and a logged exception's text.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            try:
                message = record.getMessage()
            except (TypeError, ValueError, KeyError):  # a bad format must not raise into the caller
                message = f"{record.msg} {record.args!r}"
            record.msg = redactor.scrub(message)
            record.args = ()
        else:
            record.msg = _scrub_value(record.msg)
        if record.exc_info and record.exc_info[0] is not None:
            text = record.exc_text or logging.Formatter().formatException(record.exc_info)
            scrubbed = redactor.scrub(text)
            if scrubbed != text:
                # The exception object itself would be formatted again downstream: hand on its text only,
                # as exc_text (standard formatters) and the `exception` keys Powertools prefers.
                record.exc_text = scrubbed
                vars(record).setdefault("exception", scrubbed)
                vars(record).setdefault("exception_name", record.exc_info[0].__name__)
                record.exc_info = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRS:
                setattr(record, key, _scrub_value(value))
        return True


_MAX_DEPTH: Final = 8


def _scrub_value(value: object, depth: int = 0) -> object:
    """`value` with secrets scrubbed from every string in it (a tuple comes back as a list, as JSON has it)."""
    if isinstance(value, str):
        return redactor.scrub(value)
    if value is None or isinstance(value, int | float):
        return value
    if depth < _MAX_DEPTH and isinstance(value, dict):
        return {redactor.scrub(k) if isinstance(k, str) else k: _scrub_value(v, depth + 1) for k, v in value.items()}
    if depth < _MAX_DEPTH and isinstance(value, list | tuple):
        return [_scrub_value(item, depth + 1) for item in value]
    try:
        text = str(value)
    except Exception:  # unprintable: the log formatter cannot print it either
        return value
    scrubbed = redactor.scrub(text)
    return value if scrubbed == text else scrubbed


_STANDARD_ATTRS: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None)))
