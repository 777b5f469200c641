"""Vendor-controlled text made safe for people: names without control characters, one-line subjects and
mail lines, CSV cells a spreadsheet will not run as formulas (OWASP "CSV Injection"), chat text that neither
mentions anyone nor formats, and messages (errors, notes) without secrets and of bounded length."""

from __future__ import annotations

import re
from typing import Final

from usagewatch.redaction import MASK, redactor

# C0 and C1 controls, DEL, and the Unicode bidirectional overrides that reorder what a reader sees.
_CONTROLS: Final = re.compile("[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_BREAKS: Final = re.compile("[\t\n\r\u000b\u000c\u0085\u2028\u2029]+")
_SPACES: Final = re.compile(r" {2,}")
FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")


def one_line(text: str) -> str:
    """Line breaks and tabs become one space, other control characters go; what is left is one line."""
    flat = _CONTROLS.sub("", _BREAKS.sub(" ", text))
    return _SPACES.sub(" ", flat).strip()


MAX_MESSAGE: Final = 500
"""The longest message a source says (a tenant failure, a note): what a run record keeps of one."""
# An access token (a JWT: base64url header, payload, signature), should a message ever quote one.
_JWT: Final = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*)?")


def clip(text: str, limit: int = MAX_MESSAGE, *, flatten: bool = True, marker: str = "\u2026") -> str:
    """A message fit to log, store or show: registered secrets and access tokens masked, its runs of white space
    made one space (unless `flatten` is False), and cut to at most `limit` characters, ending in `marker` where
    it was cut."""
    if flatten:
        text = " ".join(text.split())
    text = _JWT.sub(MASK, redactor.scrub(text))
    if len(text) <= limit:
        return text
    return (text[: max(0, limit - len(marker))] + marker)[:limit]


def clip_error(message: str) -> str:
    """An error as a run record, log line or event keeps it: `clip` keeping its line breaks."""
    return clip(message, MAX_MESSAGE, flatten=False, marker="...")


def clean_name(text: str) -> str:
    """A customer name as stored and shown: one line, no control characters."""
    return one_line(text)


def csv_cell(value: object) -> object:
    """A text cell made one line without control characters; one that then starts like a formula (`=`, `+`,
    `-`, `@`; a leading tab or CR is removed first) gets a leading `'`, so a spreadsheet shows it as text.
    Numbers are left alone (a negative number is a number)."""
    if not isinstance(value, str):
        return value
    text = one_line(value)
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


# AWS Chatbot renders client-markdown in the chat platform's own markdown (Slack mrkdwn, Teams markdown), which
# share no escape syntax (Slack has no backslash escape). So the characters that mention or format are shown as
# look-alikes: `<` `>` (Slack's <!channel>, <@U1>, <url|text>; HTML in Teams), `*` `~` `` ` `` `[` `]` `|`, and
# `_` where it can open or close emphasis (not inside a word: over_quota stays). `@` before a word and `&`
# before an entity name get a WORD JOINER (U+2060, invisible): no @here, @channel or &lt; is recognised.
_CHAT_LOOKALIKES: Final = str.maketrans(
    {
        "<": "\uff1c",
        ">": "\uff1e",
        "*": "\u2217",
        "~": "\u223c",
        "`": "\u02cb",
        "[": "\uff3b",
        "]": "\uff3d",
        "|": "\uff5c",
    }
)
_EMPHASIS_UNDERSCORE: Final = re.compile(r"(?<![^\W_])_|_(?![^\W_])")
_MENTION_OR_ENTITY: Final = re.compile(r"([@&])(?=[\w#!])")
WORD_JOINER: Final = "\u2060"


def chat_text(text: str) -> str:
    """Vendor text as it should read in a Slack or Teams message: literally, pinging no one, unformatted."""
    text = _EMPHASIS_UNDERSCORE.sub("\uff3f", text.translate(_CHAT_LOOKALIKES))
    return _MENTION_OR_ENTITY.sub(lambda m: m.group(1) + WORD_JOINER, text)
