"""Redactor, RedactingFilter and the shared Powertools logger: a registered secret never reaches a log line."""

from __future__ import annotations

import base64
import json
import logging
import sys
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from usagewatch.errors import VendorApiError
from usagewatch.observability import logger
from usagewatch.redaction import MASK, RedactingFilter, Redactor, redactor

# Distinctive values registered with the process-wide redactor (never cleared: other tests may rely on
# what they registered, and these strings appear nowhere else).
SECRET = "sk-live-PLANTED-4c1e9a7d"
OTHER_SECRET = "tok_PLANTED_b83f02aa"
SHORT = "ab1c9"  # five characters: too short to register


@pytest.fixture(autouse=True)
def _registered() -> None:
    redactor.register(SECRET, OTHER_SECRET, SHORT)


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
    write to the current one for the length of the test. The handler, its formatter and its
    RedactingFilter are the production ones.
    """
    handlers = [h for h in logger.handlers if isinstance(h, logging.StreamHandler)]
    assert handlers, "the Powertools logger has no stream handler"
    assert all(any(isinstance(f, RedactingFilter) for f in h.filters) for h in handlers)
    previous = [h.setStream(_CurrentStdout()) for h in handlers]
    yield lambda: capsys.readouterr().out
    for handler, stream in zip(handlers, previous, strict=True):
        handler.setStream(stream)


def lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


# --- Redactor ----------------------------------------------------------------------------------


def test_registered_secrets_are_scrubbed() -> None:
    r = Redactor()
    r.register("alpha-secret-1", "beta-secret-22")
    text = "GET https://x.example/api?key=alpha-secret-1 then beta-secret-22, alpha-secret-1 again"
    assert r.scrub(text) == f"GET https://x.example/api?key={MASK} then {MASK}, {MASK} again"


def test_nothing_registered_leaves_text_alone() -> None:
    assert Redactor().scrub("plain text, nothing to hide") == "plain text, nothing to hide"


def test_longer_secret_wins_over_its_own_prefix() -> None:
    r = Redactor()
    r.register("abcdef", "abcdefghijkl")
    assert r.scrub("x abcdefghijkl y abcdef z") == f"x {MASK} y {MASK} z"


def test_regex_metacharacters_in_a_secret_are_literal() -> None:
    r = Redactor()
    r.register("p4ss.w*rd+(1)?")
    assert r.scrub("pw=p4ss.w*rd+(1)? and p4ssXwwrd1") == f"pw={MASK} and p4ssXwwrd1"


def test_short_and_non_string_values_are_not_registered() -> None:
    r = Redactor()
    r.register("ab1c9", "", None, "12345")
    r.register(42)  # type: ignore[arg-type]
    assert r.scrub("ab1c9 12345 42") == "ab1c9 12345 42"
    r.register("ab1c9X")  # six characters: registered
    assert r.scrub("ab1c9X") == MASK


def test_clear_forgets_secrets() -> None:
    r = Redactor()
    r.register("forget-me-now")
    r.clear()
    assert r.scrub("forget-me-now") == "forget-me-now"


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig", "eyJhbGciOiJIUzI1NiJ9"),
        ("authorization: basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA"),
        ('{"Authorization": "Bearer abcDEF123456", "Accept": "application/json"}', "abcDEF123456"),
        ("{'Authorization': 'Basic dXNlcjpwYXNz', 'Accept': 'application/json'}", "dXNlcjpwYXNz"),
        ('headers={"authorization":"Bearer zzz999yyy"}', "zzz999yyy"),
        ("AUTHORIZATION=Bearer qwerty987654", "qwerty987654"),
        ("Authorization: rawtokenvalue99", "rawtokenvalue99"),
    ],
)
def test_authorization_values_are_masked_without_registration(text: str, hidden: str) -> None:
    scrubbed = Redactor().scrub(text)
    assert hidden not in scrubbed
    assert MASK in scrubbed
    assert "uthorization" in scrubbed.lower()  # the header name stays: the reader knows what was hidden


def test_authorization_mask_keeps_the_rest_of_a_json_document() -> None:
    scrubbed = Redactor().scrub('{"Authorization": "Bearer abcDEF123456", "Accept": "application/json"}')
    assert json.loads(scrubbed) == {"Authorization": MASK, "Accept": "application/json"}


def test_ordinary_text_about_authorization_survives() -> None:
    text = "authorization failed for account kn-eu (HTTP 401)"
    assert Redactor().scrub(text) == text


# --- the logger ------------------------------------------------------------------------------


def test_secret_in_the_message(log_output: Callable[[], str]) -> None:
    logger.info(f"calling https://api.example/v1?key={SECRET}")
    out = log_output()
    assert SECRET not in out
    assert lines(out)[0]["message"] == f"calling https://api.example/v1?key={MASK}"


def test_secret_in_format_args(log_output: Callable[[], str]) -> None:
    logger.warning("token %s refused for %s", SECRET, "kn-eu")
    out = log_output()
    assert SECRET not in out
    assert lines(out)[0]["message"] == f"token {MASK} refused for kn-eu"


def test_secret_in_mapping_format_args(log_output: Callable[[], str]) -> None:
    logger.info("token %(token)s", {"token": OTHER_SECRET})
    out = log_output()
    assert OTHER_SECRET not in out
    assert lines(out)[0]["message"] == f"token {MASK}"


def test_secret_in_string_extra(log_output: Callable[[], str]) -> None:
    logger.info("retry", extra={"url": f"https://x.example/?t={SECRET}", "attempt": 2, "ok": True})
    out = log_output()
    assert SECRET not in out
    line = lines(out)[0]
    assert line["url"] == f"https://x.example/?t={MASK}"
    assert line["attempt"] == 2  # non-string extras keep their type
    assert line["ok"] is True


def test_secret_nested_in_extra(log_output: Callable[[], str]) -> None:
    logger.info(
        "vendor answer",
        extra={
            "detail": {"headers": {"X-Api-Key": SECRET}, "count": 3, "items": [OTHER_SECRET, 7, None]},
            "pair": ("kn-eu", SECRET),
            "by_key": {7: "seven", SECRET: 2},
        },
    )
    out = log_output()
    assert SECRET not in out
    assert OTHER_SECRET not in out
    line = lines(out)[0]
    assert line["detail"] == {"headers": {"X-Api-Key": MASK}, "count": 3, "items": [MASK, 7, None]}
    assert line["pair"] == ["kn-eu", MASK]
    assert line["by_key"] == {"7": "seven", MASK: 2}  # keys too; a non-string key is left alone


def test_secret_in_an_object_extra(log_output: Callable[[], str]) -> None:
    @dataclass
    class Failure:
        tenant: str
        error: str

    logger.info("tenant failed", extra={"failure": Failure("c-1", f"bad key {SECRET}")})
    out = log_output()
    assert SECRET not in out
    assert "c-1" in lines(out)[0]["failure"]


def test_secret_in_a_dict_message(log_output: Callable[[], str]) -> None:
    logger.info({"event": "token issued", "token": SECRET, "expires_in": 3600})
    out = log_output()
    assert SECRET not in out
    assert lines(out)[0]["message"] == {"event": "token issued", "token": MASK, "expires_in": 3600}


def test_secret_in_a_logged_exception(log_output: Callable[[], str]) -> None:
    try:
        try:
            raise ValueError(f"inner {OTHER_SECRET}")
        except ValueError as inner:
            raise VendorApiError(f"outer {SECRET}") from inner
    except VendorApiError:
        logger.exception("collection failed")
    out = log_output()
    assert SECRET not in out
    assert OTHER_SECRET not in out
    line = lines(out)[0]
    assert line["message"] == "collection failed"
    assert line["exception_name"] == "VendorApiError"
    assert f"VendorApiError: outer {MASK}" in line["exception"]
    assert f"ValueError: inner {MASK}" in line["exception"]


def test_exception_without_secret_keeps_its_structured_trace(log_output: Callable[[], str]) -> None:
    try:
        raise KeyError("tenant_id")
    except KeyError:
        logger.exception("mapping failed")
    line = lines(log_output())[0]
    assert line["exception_name"] == "KeyError"
    assert "KeyError: 'tenant_id'" in line["exception"]
    assert line["stack_trace"]["type"] == "KeyError"


def test_authorization_header_in_a_log_line(log_output: Callable[[], str]) -> None:
    logger.info("sent %s", {"Authorization": "Bearer unregisteredTOKEN123", "Accept": "application/json"})
    out = log_output()
    assert "unregisteredTOKEN123" not in out
    assert "application/json" in out


def test_short_strings_are_not_scrubbed(log_output: Callable[[], str]) -> None:
    logger.info("page %s of account %s", SHORT, "ab")
    assert lines(log_output())[0]["message"] == f"page {SHORT} of account ab"


def test_bad_format_arguments_do_not_raise_or_leak(log_output: Callable[[], str]) -> None:
    logger.info("two placeholders %s %s, one argument", SECRET)  # must not raise into the caller
    out = log_output()
    assert SECRET not in out
    assert "two placeholders" in lines(out)[0]["message"]


def test_secret_registered_after_an_account_is_parsed(log_output: Callable[[], str]) -> None:
    # No 8-character run shared with a secret another test file registers in this process (PLANTED-...).
    token = "fresh-oauth-token-unseen-91d2"
    logger.info("before %s", token)
    redactor.register(token)
    logger.info("after %s", token)
    before, after = lines(log_output())
    assert before["message"] == f"before {token}"  # shows the test is not vacuous
    assert after["message"] == f"after {MASK}"


def test_filter_on_a_plain_logging_handler() -> None:
    """The filter works with the standard formatter too (a handler someone adds for local runs)."""
    records: list[str] = []

    class ListHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    plain = logging.getLogger("usagewatch.test.plain")
    plain.propagate = False
    handler = ListHandler()
    handler.addFilter(RedactingFilter())
    plain.addHandler(handler)
    try:
        plain.warning("key %s", SECRET)
        try:
            raise RuntimeError(f"boom {SECRET}")
        except RuntimeError:
            plain.exception("failed")
    finally:
        plain.removeHandler(handler)
    assert records[0] == f"key {MASK}"
    assert SECRET not in records[1]
    assert f"RuntimeError: boom {MASK}" in records[1]


SPECIAL = 'kn/secret+with="quotes"&more=0123456789abcdef'


@pytest.mark.parametrize(
    "echo",
    [
        pytest.param(lambda s: urllib.parse.quote(s, safe=""), id="percent-encoded"),
        pytest.param(urllib.parse.quote_plus, id="form-encoded"),
        pytest.param(lambda s: json.dumps(s)[1:-1], id="json-escaped"),
        pytest.param(lambda s: base64.b64encode(f"client:{s}".encode()).decode(), id="basic-header-offset-1"),
        pytest.param(lambda s: base64.b64encode(f"id:{s}".encode()).decode(), id="basic-header-offset-0"),
        pytest.param(lambda s: base64.b64encode(f"c:{s}".encode()).decode(), id="basic-header-offset-2"),
    ],
)
def test_encoded_forms_of_a_secret_are_masked(echo: Any) -> None:
    redactor.clear()
    redactor.register(SPECIAL)
    form = echo(SPECIAL)
    scrubbed = redactor.scrub(f"vendor said: {form} is not valid")
    assert MASK in scrubbed
    # What survives is the part that encodes the neighbours (`client:`) and at most a group at each end.
    secret_part = form[12:-4] if form.endswith("=") or "%" not in form else form
    windows = {secret_part[i : i + 8] for i in range(len(secret_part) - 8)}
    assert not [w for w in windows if w in scrubbed], scrubbed


def test_a_secret_cut_in_the_middle_then_quoted_shows_none_of_it() -> None:
    redactor.clear()
    redactor.register(SPECIAL)
    cut = f"error for key {SPECIAL}"[:30]
    scrubbed = redactor.scrub(f"company 7: ({cut}...) and more")
    assert SPECIAL[:8] not in scrubbed and scrubbed == f"company 7: (error for key {MASK}...) and more"
    assert (
        redactor.scrub("kn/secr is too short a head to mean anything") == "kn/secr is too short a head to mean anything"
    )


def test_a_4000_character_token_registers_and_is_scrubbed_whole_or_cut() -> None:
    """An OAuth access token can be thousands of characters: registering it must not recurse once per character."""
    token = "".join(f"{i:04x}" for i in range(1000))  # 4,000 characters, no repeating 8-character run
    r = Redactor()
    r.register(token)  # raised RecursionError when the head pattern nested one group per character
    assert r.scrub(f"Bearer refused: {token}.") == f"Bearer refused: {MASK}."
    cut = f"token {token}"[:2_000]
    assert r.scrub(f"vendor said ({cut}...)") == f"vendor said (token {MASK}...)"
    assert r.scrub(urllib.parse.quote(f"a={token}&b=1", safe="=&")) == f"a={MASK}&b=1"


def test_many_secrets_are_each_scrubbed_and_registering_again_changes_nothing() -> None:
    tokens = [f"tok{i:03d}-{i * 7919:08x}" for i in range(200)]
    r = Redactor()
    for token in tokens:
        r.register(token)
    r.register(*tokens[:50])
    text = " | ".join(f"t{i}={token}" for i, token in enumerate(tokens))
    assert r.scrub(text) == " | ".join(f"t{i}={MASK}" for i in range(200))
    assert r.scrub("tok123-0 and tok123-") == f"{MASK} and tok123-"  # a head of 8 is masked, 7 is not


def test_overlapping_secrets_are_masked_as_one_run() -> None:
    """Where one secret's end is another's start, neither shows: the masked runs are merged."""
    r = Redactor()
    r.register("AAAABBBBCCCC", "BBBBCCCCDDDDEEEE")
    assert r.scrub("x AAAABBBBCCCCDDDDEEEE y") == f"x {MASK} y"
    assert r.scrub("x AAAABBBBCCCC BBBBCCCCDDDDEEEE y") == f"x {MASK} {MASK} y"
    assert r.scrub("AAAABBBBCCCCAAAABBBBCCCC") == MASK + MASK  # back to back: two runs, as before


def test_a_secret_registered_while_another_thread_scrubs_is_scrubbed_afterwards() -> None:
    import threading

    r = Redactor()
    r.register("first-secret-000")
    stop = threading.Event()
    seen: list[str] = []

    def scrub_loop() -> None:
        while not stop.is_set():
            seen.append(r.scrub("first-secret-000 second-secret-111"))

    worker = threading.Thread(target=scrub_loop)
    worker.start()
    try:
        for i in range(50):
            r.register(f"extra-secret-{i:04d}")
        r.register("second-secret-111")
    finally:
        stop.set()
        worker.join()
    assert r.scrub("first-secret-000 second-secret-111") == f"{MASK} {MASK}"
    assert all(s.startswith(f"{MASK} ") for s in seen)
