"""Secret values never leave the process: every secret read is registered here and scrubbed from text."""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any, Final
from urllib.parse import quote, quote_plus

MASK: Final = "***"
# Strings shorter than this are too common to scrub without mangling ordinary text.
_MIN_SECRET_LENGTH: Final = 6
# The shortest head of a secret that is masked when a message was cut in the middle of the secret.
_MIN_HEAD: Final = 8
_AUTH_HEADER_RE: Final = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(basic|bearer)?\s*[^\s'\",}]+")


class Redactor:
    """A thread-safe set of secret strings, scrubbed from any text handed to `scrub`.

    Every place where a form of a secret begins (its first _MIN_HEAD characters, or all of a shorter form) is
    masked as far as the text goes on agreeing with the longest such form: a whole secret, or what is left of
    one cut short. Overlapping hits are masked as one. Registering only adds the new secrets' forms; the
    search pattern (one alternation of heads, at most _MIN_HEAD characters deep) is built when next needed.
    """

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        self._by_head: dict[str, list[str]] = {}
        self._index: _Index | None = None

    def register(self, *values: str | None) -> None:
        """Remember secrets; their URL-encoded, JSON-escaped and base64 forms are scrubbed as well."""
        with self._lock:
            added = {v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET_LENGTH} - self._secrets
            if not added:
                return
            self._secrets |= added
            for form in {form for secret in added for form in encoded_forms(secret)}:
                forms = self._by_head.setdefault(form[:_MIN_HEAD], [])
                if form not in forms:
                    forms.append(form)
                    forms.sort(key=len, reverse=True)
            self._index = None

    def scrub(self, text: str) -> str:
        index = self._current_index()
        if index is not None:
            text = index.mask(text)
        return _AUTH_HEADER_RE.sub(lambda m: f"{m.group(1)}{MASK}", text)

    def _current_index(self) -> _Index | None:
        index = self._index
        if index is None and self._by_head:
            with self._lock:
                if self._index is None and self._by_head:
                    self._index = _Index({head: tuple(forms) for head, forms in self._by_head.items()})
                index = self._index
        return index

    def clear(self) -> None:
        with self._lock:
            self._secrets.clear()
            self._by_head = {}
            self._index = None


class _Index:
    """The registered forms grouped by head, and one pattern finding every position where a head starts."""

    def __init__(self, by_head: dict[str, tuple[str, ...]]) -> None:
        self._by_head = by_head
        self._head_lengths = sorted({len(head) for head in by_head}, reverse=True)
        # A lookahead finds overlapping hits too; the trie keeps the alternation cheap to try at each position.
        self._starts = re.compile(f"(?=(?:{_trie_pattern(by_head)}))")

    def mask(self, text: str) -> str:
        parts: list[str] = []
        position = 0  # the end of what is already in parts
        masking: tuple[int, int] | None = None  # the run being masked, extended while hits overlap it
        for found in self._starts.finditer(text):
            start = found.start()
            if masking is not None and start >= masking[1]:
                parts += [text[position : masking[0]], MASK]
                position, masking = masking[1], None
            end = start + self._longest(text, start)
            if end > start:
                masking = (start, end) if masking is None else (masking[0], max(masking[1], end))
        if masking is not None:
            parts += [text[position : masking[0]], MASK]
            position = masking[1]
        parts.append(text[position:])
        return "".join(parts)

    def _longest(self, text: str, start: int) -> int:
        """How far from `start` the text agrees with a form whose head starts there (0: none does)."""
        best = 0
        for length in self._head_lengths:
            for form in self._by_head.get(text[start : start + length], ()):
                if len(form) <= best:
                    break  # longest first: no shorter form can go further
                agreed = _common_prefix_length(form, text, start)
                if agreed >= min(len(form), _MIN_HEAD):
                    best = max(best, agreed)
        return best


def _common_prefix_length(form: str, text: str, start: int) -> int:
    if text.startswith(form, start):
        return len(form)
    low, high = 0, min(len(form), len(text) - start)  # form[:low] agrees; form[:high + 1] does not
    while low < high:
        middle = (low + high + 1) // 2
        if text.startswith(form[:middle], start):
            low = middle
        else:
            high = middle - 1
    return low


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex alternation matching any of `words` (short literal heads), shared prefixes factored out."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}
    return _node_pattern(trie)


def _node_pattern(node: dict[str, Any]) -> str:
    branches = [re.escape(ch) + _node_pattern(child) for ch, child in sorted(node.items()) if ch]
    if not branches:
        return ""
    body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    return f"(?:{body})?" if "" in node else body


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
