"""Secret values never leave the process: every secret read is registered here and scrubbed from text."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from typing import Final
from urllib.parse import quote, quote_plus

MASK: Final = "***"
# Strings shorter than this are too common to scrub without mangling ordinary text.
_MIN_SECRET_LENGTH: Final = 6
# The shortest head of a secret that is masked when a message was cut in the middle of the secret.
_MIN_HEAD: Final = 8
_AUTH_HEADER_RE: Final = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(basic|bearer)?\s*[^\s'\",}]+")


class Redactor:
    """A thread-safe set of secret strings, scrubbed from any text handed to `scrub`."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None
        self._forms: list[str] = []
        self._heads: re.Pattern[str] | None = None
        self._head_patterns: list[re.Pattern[str]] = []

    def register(self, *values: str | None) -> None:
        """Remember secrets; their URL-encoded, JSON-escaped and base64 forms are scrubbed as well."""
        with self._lock:
            added = {v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET_LENGTH}
            if not added - self._secrets:
                return
            self._secrets |= added
            forms = {form for secret in self._secrets for form in encoded_forms(secret)}
            self._forms = sorted(forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(form) for form in self._forms))
            self._head_patterns = [re.compile(_head_pattern(form)) for form in self._forms]
            self._heads = re.compile("|".join(p.pattern for p in self._head_patterns))

    def scrub(self, text: str) -> str:
        pattern = self._pattern
        if pattern is not None and self._heads is not None:
            text = self._mask_heads(pattern.sub(MASK, text))
        return _AUTH_HEADER_RE.sub(lambda m: f"{m.group(1)}{MASK}", text)

    def _mask_heads(self, text: str) -> str:
        """Each head found is masked to the longest match among the forms (the forms share their first characters)."""
        heads = self._heads
        if heads is None:
            return text
        parts: list[str] = []
        position = 0
        while (found := heads.search(text, position)) is not None:
            start = found.start()
            matches = [m.end() for p in self._head_patterns if (m := p.match(text, start)) is not None]
            parts += [text[position:start], MASK]
            position = max(matches, default=found.end())
        parts.append(text[position:])
        return "".join(parts)

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._forms = []
            self._heads = None
            self._head_patterns = []
            self._pattern = None


def _head_pattern(form: str) -> str:
    """Matches the form, or the longest head of it of at least _MIN_HEAD characters: a message cut short in
    the middle of a secret (and then quoted inside another) still shows none of it."""
    if len(form) <= _MIN_HEAD:
        return re.escape(form)
    tail = "".join(f"(?:{re.escape(ch)}" for ch in form[_MIN_HEAD:]) + ")?" * (len(form) - _MIN_HEAD)
    return re.escape(form[:_MIN_HEAD]) + tail


def encoded_forms(secret: str) -> set[str]:
    """The secret as it may be echoed back: as is, URL-encoded (a form body), JSON-escaped, and base64 (a Basic
    header encodes `id:secret`: the secret's bytes start at any of three offsets in a 3-byte group, so the
    runs of base64 that depend on the secret alone are taken at each offset)."""
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    raw = secret.encode()
    for offset in range(3):
        aligned = raw[offset:]
        aligned = aligned[: len(aligned) - len(aligned) % 3]
        if len(aligned) >= _MIN_SECRET_LENGTH:
            forms.add(base64.b64encode(aligned).decode())
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


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
