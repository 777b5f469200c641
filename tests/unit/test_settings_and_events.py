"""Environment, vendor secret shape, account parsing and the invocation event: each error names the field
and none quotes a secret value."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from usagewatch.errors import ConfigError
from usagewatch.invocation import collection_request
from usagewatch.model import CollectionRequest, Period
from usagewatch.redaction import MASK, redactor
from usagewatch.settings import Environment, load_environment, parse_secret
from usagewatch.sources.base import HttpAccountConfig, parse_account

PLANTED = "PLANTED-secret-value-do-not-echo-71c3"
TOPIC = "arn:aws:sns:eu-west-1:123456789012:usagewatch-alerts"
EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"


def environ(**overrides: str) -> dict[str, str]:
    base = {
        "USAGE_TABLE_NAME": "usagewatch",
        "ALERT_TOPIC_ARN": TOPIC,
        "VENDOR_SECRET_ID": "usagewatch/keepnet",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v != "<unset>"}


# --- load_environment ------------------------------------------------------------------------


def test_environment_complete() -> None:
    env = load_environment(environ(ALERT_RULES_PARAMETER=" /usagewatch/rules ", USAGE_TABLE_NAME=" usagewatch "))
    assert env == Environment(
        usage_table_name="usagewatch",
        alert_topic_arn=TOPIC,
        vendor_secret_id="usagewatch/keepnet",
        alert_rules_parameter="/usagewatch/rules",
        snapshot_retention_days=400,
    )


def test_environment_optional_rules_parameter_blank_means_defaults() -> None:
    assert load_environment(environ(ALERT_RULES_PARAMETER="  ")).alert_rules_parameter is None


def test_environment_read_from_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in environ(SNAPSHOT_RETENTION_DAYS="30").items():
        monkeypatch.setenv(name, value)
    assert load_environment().snapshot_retention_days == 30


@pytest.mark.parametrize("name", ["USAGE_TABLE_NAME", "ALERT_TOPIC_ARN", "VENDOR_SECRET_ID"])
@pytest.mark.parametrize("value", ["<unset>", "", "   "])
def test_environment_missing_variable_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=rf"^environment variable\(s\) not set: {name}$"):
        load_environment(environ(**{name: value}))


def test_environment_every_missing_variable_named() -> None:
    with pytest.raises(ConfigError) as info:
        load_environment({})
    assert str(info.value) == ("environment variable(s) not set: USAGE_TABLE_NAME, ALERT_TOPIC_ARN, VENDOR_SECRET_ID")


@pytest.mark.parametrize(
    "arn",
    [
        "usagewatch-alerts",
        "arn:aws:sqs:eu-west-1:123456789012:usagewatch-alerts",
        "https://sns.eu-west-1.amazonaws.com/123456789012/usagewatch-alerts",
    ],
)
def test_environment_bad_topic_arn(arn: str) -> None:
    with pytest.raises(ConfigError, match=r"^ALERT_TOPIC_ARN: expected an SNS topic ARN"):
        load_environment(environ(ALERT_TOPIC_ARN=arn))


@pytest.mark.parametrize(("value", "days"), [("1", 1), ("3650", 3650), (" 90 ", 90), ("", 400), ("<unset>", 400)])
def test_environment_retention_days_accepted(value: str, days: int) -> None:
    assert load_environment(environ(SNAPSHOT_RETENTION_DAYS=value)).snapshot_retention_days == days


@pytest.mark.parametrize("value", ["0", "3651", "-5", "1.5", "abc", "1e3", "²", "10²"])
def test_environment_retention_days_refused(value: str) -> None:
    with pytest.raises(ConfigError, match=r"^SNAPSHOT_RETENTION_DAYS: expected a whole number of days from 1 to 3650$"):
        load_environment(environ(SNAPSHOT_RETENTION_DAYS=value))


# --- parse_secret ----------------------------------------------------------------------------


def account(account_id: str = "kn-eu", **extra: Any) -> dict[str, Any]:
    return {"account_id": account_id, "base_url": "https://api.vendor.example", "client_secret": PLANTED, **extra}


def secret_error(text: object) -> str:
    with pytest.raises(ConfigError) as info:
        parse_secret(text, secret_id="usagewatch/keepnet", vendor="keepnet")
    message = str(info.value)
    assert PLANTED not in message
    assert PLANTED[:12] not in message
    assert message.startswith("keepnet secret 'usagewatch/keepnet': ")
    # a JSON decoder's message or document must not ride along as the cause either
    assert info.value.__cause__ is None
    return message.removeprefix("keepnet secret 'usagewatch/keepnet': ")


def test_secret_accounts_returned() -> None:
    text = json.dumps({"accounts": [account("kn-eu"), account("kn-us")]})
    accounts = parse_secret(text, secret_id="usagewatch/keepnet", vendor="keepnet")
    assert [a["account_id"] for a in accounts] == ["kn-eu", "kn-us"]


def test_secret_as_bytes() -> None:
    text = json.dumps({"accounts": [account()]}).encode()
    assert parse_secret(text, secret_id="s", vendor="keepnet")[0]["client_secret"] == PLANTED


@pytest.mark.parametrize(
    "text",
    [
        '{"accounts": [{"account_id": "kn-eu", "client_secret": "' + PLANTED + '"',  # cut short
        "client_secret=" + PLANTED,
        "{'accounts': [{'client_secret': '" + PLANTED + "'}]}",  # Python, not JSON
        b'{"accounts": [{"client_secret": "' + PLANTED.encode() + b'"',
        "",
    ],
)
def test_secret_not_json(text: str | bytes) -> None:
    assert secret_error(text) == "not valid JSON"


def test_secret_not_a_string() -> None:
    assert secret_error({"accounts": [account()]}) == "expected a JSON string"


@pytest.mark.parametrize(
    "document",
    [
        [account()],
        PLANTED,
        None,
        42,
        {"acounts": [account()]},  # misspelt
        {"account": account()},
    ],
)
def test_secret_not_an_object_with_accounts(document: Any) -> None:
    assert secret_error(json.dumps(document)) == "expected an object with an 'accounts' list"


@pytest.mark.parametrize("accounts", [[], {}, None, account(), PLANTED])
def test_secret_accounts_not_a_non_empty_list(accounts: Any) -> None:
    assert secret_error(json.dumps({"accounts": accounts})) == "accounts: expected a non-empty list"


def test_secret_unknown_top_level_fields_named_not_their_values() -> None:
    text = json.dumps({"accounts": [account()], "client_secret": PLANTED, "Region": PLANTED})
    assert secret_error(text) == "unknown field(s): Region, client_secret"


@pytest.mark.parametrize("second_id", ["kn-eu", " kn-eu", "kn-eu "])
def test_secret_duplicate_account_id(second_id: str) -> None:
    # account ids are stripped when parsed, so " kn-eu" would become a second "kn-eu"
    text = json.dumps({"accounts": [account("kn-us"), account("kn-eu"), account(second_id)]})
    message = secret_error(text)
    assert message.startswith("accounts[2].account_id: duplicate ")
    assert "kn-eu" in message


@pytest.mark.parametrize("entry", [PLANTED, ["kn-eu", PLANTED], None, 7])
def test_secret_non_object_account_entry(entry: Any) -> None:
    text = json.dumps({"accounts": [account(), entry]})
    assert secret_error(text) == "accounts[1]: expected an object"


def test_secret_entry_validation_is_left_to_the_vendor_module() -> None:
    # shape only: a missing account_id or an odd field is parse_account's to report, with the field named
    accounts = parse_secret(json.dumps({"accounts": [{"base_url": 1}]}), secret_id="s", vendor="keepnet")
    assert accounts == [{"base_url": 1}]


# --- parse_account (sources.base) --------------------------------------------------------------


class ExampleAccount(HttpAccountConfig):
    client_id: str
    client_secret: SecretStr
    page_size: int = 100


def account_error(raw: Any, index: int = 3) -> str:
    with pytest.raises(ConfigError) as info:
        parse_account(ExampleAccount, raw, index=index, vendor="keepnet")
    message = str(info.value)
    assert PLANTED not in message
    return message


def good_raw(**overrides: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "account_id": "kn-eu",
        "base_url": "https://api.vendor.example/",
        "client_id": "client-1",
        "client_secret": PLANTED,
    }
    raw.update(overrides)
    return raw


def test_account_parsed_and_secret_registered() -> None:
    parsed = parse_account(ExampleAccount, good_raw(account_id=" kn-eu "), index=0, vendor="keepnet")
    assert parsed.account_id == "kn-eu"
    assert parsed.base_url == "https://api.vendor.example"
    assert parsed.client_secret.get_secret_value() == PLANTED
    assert PLANTED not in repr(parsed)
    assert redactor.scrub(f"secret={PLANTED}") == f"secret={MASK}"


def test_account_secret_registered_even_when_the_account_is_refused() -> None:
    value = "another-PLANTED-value-5d0e"
    account_error(good_raw(client_secret=value, base_url="http://example.com"))
    assert redactor.scrub(value) == MASK


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (good_raw(base_url="http://example.com"), "accounts[3].base_url"),
        (good_raw(base_url=f"https://user:{PLANTED}@api.vendor.example"), "accounts[3].base_url"),
        (good_raw(base_url=f"https://api.vendor.example/?key={PLANTED}"), "accounts[3].base_url"),
        (good_raw(account_id=""), "accounts[3].account_id"),
        (good_raw(account_id="has space"), "accounts[3].account_id"),
        (good_raw(client_secret=42), "accounts[3].client_secret"),
        (good_raw(page_size="many"), "accounts[3].page_size"),
        (good_raw(api_key=PLANTED), "accounts[3].api_key"),
        ({k: v for k, v in good_raw().items() if k != "client_id"}, "accounts[3].client_id"),
    ],
)
def test_account_error_names_the_field_not_the_value(raw: dict[str, Any], field: str) -> None:
    message = account_error(raw)
    assert message.startswith(f"keepnet secret: {field}: ")
    assert "user:" not in message


def test_account_not_an_object() -> None:
    assert account_error(PLANTED, index=1) == "keepnet secret: accounts[1] must be an object"


# --- collection_request -----------------------------------------------------------------------------

NOW = datetime(2026, 12, 1, 0, 30, tzinfo=UTC)
SCHEDULED = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)
ENVELOPE: dict[str, Any] = {
    "version": "0",
    "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
    "detail-type": "Scheduled Event",
    "source": "aws.events",
    "account": "123456789012",
    "time": "2026-11-22T06:00:00Z",
    "region": "eu-west-1",
    "resources": ["arn:aws:events:eu-west-1:123456789012:rule/usagewatch"],
    "detail": {},
}


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        ({"scheduled_time": "2026-11-22T06:00:00Z"}, CollectionRequest(Period(2026, 11), SCHEDULED)),
        (
            {"scheduled_time": "2026-11-22T06:00:00Z", "period": "2026-10"},
            CollectionRequest(Period(2026, 10), SCHEDULED, period_explicit=True),
        ),
        (ENVELOPE, CollectionRequest(Period(2026, 11), SCHEDULED)),
        ({**ENVELOPE, "period": "2026-09"}, CollectionRequest(Period(2026, 9), SCHEDULED, period_explicit=True)),
        ({}, CollectionRequest(Period(2026, 12), NOW)),
        ({"period": "2026-11"}, CollectionRequest(Period(2026, 11), NOW, period_explicit=True)),
        (None, CollectionRequest(Period(2026, 12), NOW)),
        ({"period": None}, CollectionRequest(Period(2026, 12), NOW)),
        ({"period": ""}, CollectionRequest(Period(2026, 12), NOW)),
        # an offset is converted: 23:30 at UTC-5 on 30 November is already December in UTC
        (
            {"scheduled_time": "2026-11-30T23:30:00-05:00"},
            CollectionRequest(Period(2026, 12), datetime(2026, 12, 1, 4, 30, tzinfo=UTC)),
        ),
        ({"scheduled_time": "2026-11-22T06:00:00"}, CollectionRequest(Period(2026, 11), SCHEDULED)),  # naive = UTC
    ],
)
def test_event_shapes(event: Any, expected: CollectionRequest) -> None:
    assert collection_request(event, NOW) == expected


@pytest.mark.parametrize("path", sorted(EVENTS_DIR.glob("*.json")), ids=lambda p: p.name)
def test_sample_events_in_the_repository_parse(path: Path) -> None:
    event = json.loads(path.read_text())
    request = collection_request(event, NOW)
    assert request.period_explicit == ("period" in event)
    if event:
        assert request.as_of == SCHEDULED


def test_there_are_sample_events() -> None:
    assert len(list(EVENTS_DIR.glob("*.json"))) >= 3


@pytest.mark.parametrize("period", ["2026-13", "2026-00", "2026-1", "26-11", "1999-12", "2026/11", "November", 202611])
@pytest.mark.parametrize("base", [{}, {"scheduled_time": "2026-11-22T06:00:00Z"}, ENVELOPE])
def test_event_malformed_period(base: dict[str, Any], period: Any) -> None:
    with pytest.raises(ConfigError, match=r"^event\.period: expected YYYY-MM \(e\.g\. 2026-11\), got "):
        collection_request({**base, "period": period}, NOW)


@pytest.mark.parametrize("value", ["yesterday", "2026-13-01T00:00:00Z", "22/11/2026 06:00", "", None, 1763791200])
def test_event_malformed_scheduled_time(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^event\.scheduled_time: expected an ISO 8601 time, got "):
        collection_request({"scheduled_time": value, "period": "2026-11"}, NOW)


@pytest.mark.parametrize("value", ["yesterday", "", None])
def test_event_malformed_envelope_time(value: Any) -> None:
    with pytest.raises(ConfigError, match=r"^event\.time: expected an ISO 8601 time, got "):
        collection_request({**ENVELOPE, "time": value}, NOW)


def test_event_envelope_without_time() -> None:
    envelope = {k: v for k, v in ENVELOPE.items() if k != "time"}
    with pytest.raises(ConfigError, match=r"^event\.time: "):
        collection_request(envelope, NOW)


@pytest.mark.parametrize("period", [None, "2026-10"])
def test_event_unsubstituted_scheduler_placeholder(period: str | None) -> None:
    event: dict[str, Any] = {"scheduled_time": "<aws.scheduler.scheduled-time>"}
    if period:
        event["period"] = period
    with pytest.raises(ConfigError) as info:
        collection_request(event, NOW)
    message = str(info.value)
    assert message.startswith("event.scheduled_time: the Scheduler placeholder was not substituted")
    assert "{}" in message  # says what to send instead


@pytest.mark.parametrize("event", [[], ["2026-11"], "2026-11", 42, True])
def test_event_not_an_object(event: Any) -> None:
    with pytest.raises(ConfigError, match=rf"^event: expected a JSON object, got {type(event).__name__}$"):
        collection_request(event, NOW)


def test_the_console_and_psa_sync_settings_come_from_settings() -> None:
    from usagewatch import settings

    env = settings.load_console_environment(
        {"USAGE_TABLE_NAME": "t", "AWS_REGION": "eu-central-1", "COGNITO_CLIENT_ID": "c", "CONSOLE_PERIOD": "2026-11"}
    )
    assert env.cognito_client_id == "c" and env.period == "2026-11" and not env.psa_linked
    assert env.cognito_endpoint == "https://cognito-idp.eu-central-1.amazonaws.com"
    local = settings.load_console_environment({"COGNITO_ENDPOINT": "http://127.0.0.1:5000", "PSA_SECRET_ID": "cw"})
    assert local.cognito_endpoint == "http://127.0.0.1:5000" and local.psa_linked and local.period == ""
    with pytest.raises(ConfigError, match="USAGE_TABLE_NAME not set"):
        settings.usage_table_name({})
    assert settings.usage_table_name({"USAGE_TABLE_NAME": "usage"}) == "usage"
