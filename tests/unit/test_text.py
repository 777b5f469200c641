"""Vendor text made safe: one-line names, CSV cells that are never formulas, chat text that pings no one."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from usagewatch.redaction import MASK, redactor
from usagewatch.text import MAX_MESSAGE, WORD_JOINER, chat_text, clean_name, clip, csv_cell, one_line


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Acme\r\nSeverity: info", "Acme Severity: info"),
        ("Esc\x1b[2Jape\x07\x00", "Esc[2Jape"),
        ("C1\x85next\x9bline", "C1 nextline"),
        ("Z\u00fcrich \u202eevil\u202c GmbH", "Z\u00fcrich evil GmbH"),
        ("  tabs\tand   spaces  ", "tabs and spaces"),
        ("\u65e5\u672c\u8a9e OK", "\u65e5\u672c\u8a9e OK"),
        ("Arabic\u061cmark and \u2066isolate\u2069", "Arabicmark and isolate"),
    ],
)
def test_names_are_one_line_without_controls(raw: str, shown: str) -> None:
    assert clean_name(raw) == shown == one_line(raw)


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\t=evil", "'=evil"),
        ("\r=evil", "'=evil"),
        ("Acme = Co", "Acme = Co"),
        (-5, -5),
        (12.5, 12.5),
        (None, None),
        (True, True),
    ],
)
def test_csv_cells_never_start_a_formula(value: object, cell: object) -> None:
    assert csv_cell(value) == cell


# What Slack mrkdwn or Teams markdown would act on: a mention or link in angle brackets, @here/@channel/@everyone,
# an HTML entity, emphasis, strike, code, a markdown link, a table cell.
_ACTIVE = re.compile(r"[<>*~`\[\]|]|@(?:here|channel|everyone)\b|&(?:amp|lt|gt|#\d+);|(?<![^\W_])_\w|\w_(?![^\W_])")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("<!channel> Acme", "\uff1c!channel\uff1e Acme"),
        (
            "<!here|here> <@U012AB> <#C1|ops>",
            f"\uff1c!here\uff5chere\uff1e \uff1c@{WORD_JOINER}U012AB\uff1e \uff1c#C1\uff5cops\uff1e",
        ),
        ("*bold* [x](http://evil.example)", "\u2217bold\u2217 \uff3bx\uff3d(http://evil.example)"),
        ("ping @here and @channel", f"ping @{WORD_JOINER}here and @{WORD_JOINER}channel"),
        ("_italic_ ~strike~ `code`", "\uff3fitalic\uff3f \u223cstrike\u223c \u02cbcode\u02cb"),
        ("Smith &amp; Sons &lt;b&gt;", f"Smith &{WORD_JOINER}amp; Sons &{WORD_JOINER}lt;b&{WORD_JOINER}gt;"),
        ("<at>Everyone</at>", "\uff1cat\uff1eEveryone\uff1c/at\uff1e"),
        ("over_quota of Acme & Co (c-1)", "over_quota of Acme & Co (c-1)"),
        ("", ""),
    ],
)
def test_chat_text_shows_vendor_text_literally_without_mentions_or_formatting(raw: str, shown: str) -> None:
    assert chat_text(raw) == shown
    assert not _ACTIVE.search(shown), shown


def test_chat_text_of_every_hostile_string_keeps_its_words() -> None:
    hostile = ["<!channel>", "<!everyone>", "@here", "*b* _i_ ~s~ `c`", "[x](http://evil)", "a|b", "&lt;&#64;"]
    for raw in hostile:
        shown = chat_text(raw)
        assert not _ACTIVE.search(shown), shown
        # The words are all still there: a reader sees what the vendor sent.
        assert re.findall(r"[A-Za-z0-9]+", shown.replace(WORD_JOINER, "")) == re.findall(r"[A-Za-z0-9]+", raw)


def test_clip_masks_registered_secrets_and_access_tokens_and_makes_one_line() -> None:
    secret = "clip-test-secret-9f8e7d"
    redactor.register(secret)
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    said = clip(f"refused:\n  key {secret}\tand token {token} ")
    assert said == f"refused: key {MASK} and token {MASK}"


def test_clip_cuts_to_the_limit_with_its_marker() -> None:
    assert clip("x" * MAX_MESSAGE) == "x" * MAX_MESSAGE
    cut = clip("x" * (MAX_MESSAGE + 1))
    assert len(cut) == MAX_MESSAGE and cut.endswith("\u2026")
    assert clip("abcdefgh", 5) == "abcd\u2026"
    assert clip("abcdefgh", 5, marker="...") == "ab..."


def test_clip_can_keep_the_lines_of_a_message() -> None:
    assert clip("line one\nline  two", flatten=False) == "line one\nline  two"
    assert clip("line one\nline  two") == "line one line two"


@given(st.text(max_size=700), st.integers(1, 600))
def test_clip_never_exceeds_its_limit(text: str, limit: int) -> None:
    assert len(clip(text, limit)) <= limit
