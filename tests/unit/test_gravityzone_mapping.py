"""GravityZone: counters -> records, account validation, error classification (pure, no sockets)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest

from usagewatch.errors import ConfigError, VendorDataError
from usagewatch.model import CollectionRequest, Period, Tenant
from usagewatch.pacing import PacedLimiter
from usagewatch.sources.gravityzone import (
    DOCUMENTED_COUNTERS,
    GravityZoneAccount,
    GravityZoneRpcError,
    GravityZoneSource,
    is_no_licence_error,
    is_no_licence_result,
    metric_name,
    read_counters,
    read_result,
    target_month,
    unit_for,
    usage_records,
)

PERIOD = Period(2026, 11)
TENANT = Tenant("5f3a0000000000000000aa01", "Acme AG")

SEED_RESULT: dict[str, Any] = {  # the example answer of Bitdefender's cloud getMonthlyUsage page (B4c)
    "endpointMonthlyUsage": 101,
    "emailSecurityMonthlyUsage": 162,
    "exchangeMonthlyUsage": 15,
    "encryptionMonthlyUsage": 69,
    "atsMonthlyUsage": 25,
    "edrMonthlyUsage": 14,
    "mdrFoundationsMonthlyUsage": 14,
    "mdrResponseMonthlyUsage": 0,
    "patchManagementMonthlyUsage": 28,
    "containerProtectionMonthlyUsage": 12,
    "integrityMonitoringUsage": 12,
    "integrityMonitoring90DaysUsage": 2,
    "integrityMonitoring180DaysUsage": 3,
    "integrityMonitoring1YearUsage": 4,
    "xdrIdentitySensorsMonthlyUsage": 0,
    "xdrProductivitySensorsMonthlyUsage": 2,
    "xdrNetworkSensorsMonthlyUsage": 1,
    "xdrCloudSensorsMonthlyUsage": 0,
    "sveVsMonthlyUsage": 5,
    "sveVdiMonthlyUsage": 30,
    "minimumUsage": {"endpointMonthlyUsage": 25},
}


def records(result: object, *, per_product_type: bool = False) -> dict[str, Any]:
    counters = read_result(result, per_product_type=per_product_type)
    return {r.metric: r for r in usage_records(counters, account_id="gz", tenant=TENANT, period=PERIOD)}


@pytest.mark.parametrize(
    ("counter", "metric"),
    [
        ("endpointMonthlyUsage", "endpoint_monthly_usage"),
        ("integrityMonitoring90DaysUsage", "integrity_monitoring_90_days_usage"),
        ("integrityMonitoring180DaysUsage", "integrity_monitoring_180_days_usage"),
        ("integrityMonitoring1YearUsage", "integrity_monitoring_1_year_usage"),
        ("xdrIdentitySensorsMonthlyUsage", "xdr_identity_sensors_monthly_usage"),
        ("sveVdiMonthlyUsage", "sve_vdi_monthly_usage"),
        ("aLaCarteMonthlyUsage", "a_la_carte_monthly_usage"),
        ("aLaCarteMonhtlyUsage", "a_la_carte_monthly_usage"),  # the documented misspelling
        ("mspSecurePlusMonthlyUsage", "msp_secure_plus_monthly_usage"),
        ("EDRMonthlyUsage", "edr_monthly_usage"),
        ("o365MailboxUsage", "o_365_mailbox_usage"),
    ],
)
def test_metric_names_are_snake_case(counter: str, metric: str) -> None:
    assert metric_name(counter) == metric


def test_seed_answer_becomes_one_record_per_counter_with_catalogue_units() -> None:
    by_metric = records(SEED_RESULT)

    assert len(by_metric) == 20  # every numeric counter; minimumUsage is not one
    assert by_metric["endpoint_monthly_usage"].value == 101
    assert by_metric["integrity_monitoring_90_days_usage"].value == 2
    assert by_metric["sve_vdi_monthly_usage"].unit == "hours"
    assert by_metric["email_security_monthly_usage"].unit == "mailboxes"
    assert by_metric["exchange_monthly_usage"].unit == "mailboxes"
    assert by_metric["edr_monthly_usage"].unit == "seats"
    assert by_metric["sve_vs_monthly_usage"].unit == "seats"
    record = by_metric["endpoint_monthly_usage"]
    assert (record.vendor, record.account_id, record.tenant, record.period) == ("gravityzone", "gz", TENANT, PERIOD)
    assert record.window.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert record.window.end == datetime(2026, 12, 1, tzinfo=UTC)


def test_minimum_usage_lands_on_endpoint_usage_only() -> None:
    by_metric = records(SEED_RESULT)

    assert by_metric["endpoint_monthly_usage"].minimum == 25
    assert all(r.minimum is None for m, r in by_metric.items() if m != "endpoint_monthly_usage")


@pytest.mark.parametrize(("unit_metric", "unit"), [("sve_vdi_monthly_usage", "hours"), ("new_counter_usage", "seats")])
def test_units(unit_metric: str, unit: str) -> None:
    assert unit_for(unit_metric) == unit


def test_unknown_counters_are_kept() -> None:
    by_metric = records({"endpointMonthlyUsage": 3, "quantumShieldMonthlyUsage": 7})

    assert by_metric["quantum_shield_monthly_usage"].value == 7
    assert by_metric["quantum_shield_monthly_usage"].unit == "seats"


def test_misspelled_counter_is_normalised_and_never_added_to_the_right_one() -> None:
    assert records({"aLaCarteMonhtlyUsage": 9})["a_la_carte_monthly_usage"].value == 9
    both = records({"aLaCarteMonhtlyUsage": 9, "aLaCarteMonthlyUsage": 9})
    assert both["a_la_carte_monthly_usage"].value == 9
    # Right spelling wins whatever the key order.
    assert records({"aLaCarteMonhtlyUsage": 4, "aLaCarteMonthlyUsage": 9})["a_la_carte_monthly_usage"].value == 9
    assert records({"aLaCarteMonthlyUsage": 9, "aLaCarteMonhtlyUsage": 4})["a_la_carte_monthly_usage"].value == 9


def test_overlapping_package_counters_are_their_own_metrics() -> None:
    by_metric = records({"endpointMonthlyUsage": 40, "mspSecurePlusMonthlyUsage": 40, "mspSecureMonthlyUsage": 0})

    assert by_metric["endpoint_monthly_usage"].value == 40  # not 80
    assert by_metric["msp_secure_plus_monthly_usage"].value == 40
    assert by_metric["msp_secure_monthly_usage"].value == 0


def test_undocumented_nested_null_boolean_and_text_fields_are_skipped() -> None:
    by_metric = records(
        {
            "endpointMonthlyUsage": 5,
            "breakdown": {"a": 1},
            "history": [1, 2],
            "legacyMonthlyUsage": None,
            "isAddon": True,
            "currency": "EUR",
            "minimumUsage": None,
        }
    )

    assert set(by_metric) == {"endpoint_monthly_usage"}
    assert by_metric["endpoint_monthly_usage"].minimum is None


@pytest.mark.parametrize("counter", sorted(DOCUMENTED_COUNTERS))
@pytest.mark.parametrize(
    ("value", "said"),
    [("lots", "the text 'lots'"), (True, "the boolean true"), (None, "null"), ({"n": 1}, "a dict"), ([3], "a list")],
)
def test_a_documented_counter_of_the_wrong_type_fails_naming_the_field(counter: str, value: object, said: str) -> None:
    with pytest.raises(VendorDataError, match=rf"field {counter}: a documented counter.*got {re.escape(said)}"):
        read_counters(
            {"endpointMonthlyUsage": 5, counter: value} if counter != "endpointMonthlyUsage" else {counter: value}
        )


def test_a_documented_counter_that_is_negative_fails_naming_the_field() -> None:
    with pytest.raises(VendorDataError, match=r"field xdrCloudSensorsMonthlyUsage: expected a count >= 0, got -3"):
        read_counters({"endpointMonthlyUsage": 5, "xdrCloudSensorsMonthlyUsage": -3})


@pytest.mark.parametrize(
    ("result", "field"),
    [
        ({"endpointMonthlyUsage": 5, "minimumUsage": 25}, "minimumUsage: expected an object"),
        (
            {"endpointMonthlyUsage": 5, "minimumUsage": {"endpointMonthlyUsage": "many"}},
            "minimumUsage.endpointMonthlyUsage",
        ),
        (
            {"usages": [{"endpointMonthlyUsage": 1}, {"endpointMonthlyUsage": False}]},
            r"usages\[1\]\.endpointMonthlyUsage",
        ),
    ],
)
def test_the_documented_minimum_and_product_type_entries_are_typed_too(result: dict[str, Any], field: str) -> None:
    with pytest.raises(VendorDataError, match=field):
        read_result(result, per_product_type=True)


def test_the_documented_set_is_the_vendor_pages_counters() -> None:
    assert set(SEED_RESULT) - {"minimumUsage"} <= DOCUMENTED_COUNTERS  # B4c: the cloud page's example
    partner_page = {
        "aLaCarteMonhtlyUsage",
        "mspSecureMonthlyUsage",
        "mspSecurePlusMonthlyUsage",
        "mspSecureExtraMonthlyUsage",
    }
    assert partner_page | {"mobileSecurityMonthlyUsage"} <= DOCUMENTED_COUNTERS


def test_zero_and_empty_answers_give_zero_records_or_none() -> None:
    assert is_no_licence_result(0)  # documented answer of a company without a monthly licence
    assert is_no_licence_result(None) and is_no_licence_result({}) and is_no_licence_result({"usages": []})
    assert not is_no_licence_result({"endpointMonthlyUsage": 0}) and not is_no_licence_result({"usages": [{}]})
    assert not is_no_licence_result(False)
    assert records(0) == {}
    assert records(None) == {}
    assert records({}) == {}
    assert records({"usages": []}, per_product_type=True) == {}
    zeros = records({"endpointMonthlyUsage": 0, "edrMonthlyUsage": 0})
    assert [r.value for r in zeros.values()] == [0, 0]


MINIMUM_FIELD = "minimumUsage.endpointMonthlyUsage"


@pytest.mark.parametrize(
    ("result", "field"),
    [
        ({"endpointMonthlyUsage": "12"}, "endpointMonthlyUsage"),
        ({"edrMonthlyUsage": -1}, "edrMonthlyUsage"),
        (
            {"endpointMonthlyUsage": 5, "minimumUsage": {"endpointMonthlyUsage": "25"}},
            "minimumUsage.endpointMonthlyUsage",
        ),
        (
            {"endpointMonthlyUsage": 5, "minimumUsage": {"endpointMonthlyUsage": -2}},
            "minimumUsage.endpointMonthlyUsage",
        ),
        ({"sveVdiMonthlyUsage": float("nan")}, "sveVdiMonthlyUsage"),
    ],
)
def test_bad_values_fail_naming_the_field(result: dict[str, Any], field: str) -> None:
    with pytest.raises(VendorDataError, match=field.replace(".", r"\.")):
        read_counters(result)


def test_a_non_object_answer_is_a_data_error() -> None:
    with pytest.raises(VendorDataError, match="expected an object"):
        read_result(["endpointMonthlyUsage"])


def test_per_product_type_sums_every_counter_across_entries() -> None:
    answer = {
        "usages": [
            {"productType": 0, "endpointMonthlyUsage": 30, "edrMonthlyUsage": 3, "aLaCarteMonhtlyUsage": 1,
             "minimumUsage": {"endpointMonthlyUsage": 20}},
            {"productType": 2, "endpointMonthlyUsage": 0, "edrMonthlyUsage": 0, "mobileSecurityMonthlyUsage": 4},
            {"productType": 5, "endpointMonthlyUsage": 12, "edrMonthlyUsage": 1, "aLaCarteMonthlyUsage": 2,
             "minimumUsage": {"endpointMonthlyUsage": 20}},
        ]
    }  # fmt: skip

    by_metric = records(answer, per_product_type=True)

    assert by_metric["endpoint_monthly_usage"].value == 42  # not the last entry's 12
    assert by_metric["edr_monthly_usage"].value == 4
    assert by_metric["mobile_security_monthly_usage"].value == 4
    assert by_metric["a_la_carte_monthly_usage"].value == 3
    assert by_metric["endpoint_monthly_usage"].minimum == 20  # a company-wide minimum repeated, not doubled
    assert "product_type" not in by_metric


def test_per_product_type_bad_entry_names_its_index() -> None:
    with pytest.raises(VendorDataError, match=r"usages\[1\]\.edrMonthlyUsage"):
        read_result({"usages": [{"edrMonthlyUsage": 1}, {"edrMonthlyUsage": "2"}]}, per_product_type=True)
    with pytest.raises(VendorDataError, match=r"usages\[0\]"):
        read_result({"usages": ["x"]}, per_product_type=True)


def test_per_product_type_tolerates_a_flat_answer() -> None:
    assert records({"endpointMonthlyUsage": 7}, per_product_type=True)["endpoint_monthly_usage"].value == 7


def test_target_month_is_mm_slash_yyyy() -> None:
    assert target_month(Period(2026, 3)) == "03/2026"
    assert target_month(Period(2026, 11)) == "11/2026"


@pytest.mark.parametrize(
    ("message", "details", "expected"),
    [
        ("Server error", "The company does not have a monthly license.", True),
        ("Server error", "Company has no monthly licence", True),
        ("The company is not on a monthly subscription", None, True),
        ("Server error", "An internal error occurred", False),
        ("Invalid params", "Invalid value for 'targetMonth'", False),
        ("Server error", "The monthly license of this company expired", False),
    ],
)
def test_no_licence_errors_are_recognised(message: str, details: str | None, expected: bool) -> None:
    error = GravityZoneRpcError(
        api="licensing", method="getMonthlyUsage", code=-32000, message=message, details=details
    )
    assert is_no_licence_error(error) is expected


def test_rpc_error_message_carries_code_and_details() -> None:
    error = GravityZoneRpcError(
        api="network", method="getCompaniesList", code=-32602, message="Invalid params", details="Invalid value for 'x'"
    )
    assert (
        str(error)
        == "GravityZone network.getCompaniesList: JSON-RPC error -32602 (Invalid params): Invalid value for 'x'"
    )


# --- account ---------------------------------------------------------------------------------------


def raw_account(**extra: Any) -> dict[str, Any]:
    return {
        "account_id": "gz-eu",
        "access_url": "https://cloudgz.gravityzone.bitdefender.com/api/",
        "api_key": "k" * 40,
        **extra,
    }


def test_account_defaults() -> None:
    account = GravityZoneSource().parse_account(raw_account())

    assert isinstance(account, GravityZoneAccount)
    assert account.access_url == "https://cloudgz.gravityzone.bitdefender.com/api"
    assert account.licensing_requests_per_second == 5
    assert account.network_requests_per_second == 10
    assert (account.concurrency, account.previous_month_days, account.per_product_type) == (5, 3, False)
    assert account.root_company_id is None
    assert "k" * 40 not in repr(account)


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"access_url": "http://cloudgz.gravityzone.bitdefender.com/api"}, "access_url"),
        ({"access_url": "https://gravityzone.bitdefender.com/api"}, "access_url"),
        ({"base_url": "https://cloudgz.gravityzone.bitdefender.com/api"}, "base_url"),
        ({"api_key": ""}, "api_key"),
        ({"licensing_requests_per_second": 0}, "licensing_requests_per_second"),
        ({"previous_month_days": -1}, "previous_month_days"),
        ({"concurrency": 0}, "concurrency"),
    ],
)
def test_account_errors_name_the_field_never_the_key(extra: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field) as caught:
        GravityZoneSource().parse_account(raw_account(**extra))
    assert "k" * 40 not in str(caught.value)


def test_account_without_access_url_is_refused() -> None:
    raw = raw_account()
    del raw["access_url"]
    with pytest.raises(ConfigError, match="access_url"):
        GravityZoneSource().parse_account(raw)


@pytest.mark.parametrize(
    ("as_of_day", "explicit", "days", "expected"),
    [
        (1, False, 3, ["2026-11", "2026-10"]),
        (3, False, 3, ["2026-11", "2026-10"]),
        (4, False, 3, ["2026-11"]),
        (2, True, 3, ["2026-11"]),
        (2, False, 0, ["2026-11"]),
    ],
)
def test_previous_month_in_the_first_days(as_of_day: int, explicit: bool, days: int, expected: list[str]) -> None:
    source = GravityZoneSource()
    account = source.parse_account(raw_account(previous_month_days=days))
    request = CollectionRequest(PERIOD, datetime(2026, 11, as_of_day, 5, tzinfo=UTC), period_explicit=explicit)

    assert [str(p) for p in source.periods(account, request)] == expected


def test_january_collects_the_previous_december() -> None:
    source = GravityZoneSource()
    account = source.parse_account(raw_account())
    request = CollectionRequest(Period(2027, 1), datetime(2027, 1, 1, 6, tzinfo=UTC))

    assert [str(p) for p in source.periods(account, request)] == ["2027-01", "2026-12"]


# --- pacing ------------------------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 1e-6)  # a float-rounding wait must still move the clock


def test_limiter_paces_a_little_under_the_configured_rate_without_a_burst() -> None:
    fake = FakeTime()
    limiter = PacedLimiter(5, clock=fake.clock, sleep=fake.sleep)

    for _ in range(6):
        limiter.acquire()

    # Six requests never fit in one second: the server's rolling window is never exceeded. The first waits
    # too: a previous invocation's calls may still be in the server's window.
    assert fake.now - 100.0 > 1.0
    assert fake.now - 100.0 == pytest.approx(6 / (5 * 0.97), abs=1e-3)


def test_an_isolated_429_costs_only_its_hold() -> None:
    fake = FakeTime()
    limiter = PacedLimiter(5, clock=fake.clock, sleep=fake.sleep)
    configured = limiter.rate

    for _ in range(3):
        limiter.hold(1.0)
        fake.now += 10.5
        assert limiter.rate == configured
    assert limiter.slowdowns == 0


def test_limiter_slows_down_after_429s_and_recovers_after_a_quiet_spell() -> None:
    fake = FakeTime()
    limiter = PacedLimiter(5, clock=fake.clock, sleep=fake.sleep)
    configured = limiter.rate

    limiter.hold(1.0)
    assert limiter.rate == configured  # one 429 alone: held, not slowed
    limiter.hold(1.0)
    limiter.hold(1.0)  # the same burst of 429s: one slowdown
    assert limiter.rate == pytest.approx(configured * 0.7)
    assert limiter.slowdowns == 1
    fake.now += 1.5
    limiter.hold(1.0)
    assert limiter.rate == pytest.approx(configured * 0.49)

    fake.now += 11
    limiter.acquire()
    assert limiter.rate == pytest.approx(configured * 0.59)
    limiter.restore()
    assert limiter.rate == configured


def test_limiter_never_goes_below_its_floor() -> None:
    fake = FakeTime()
    limiter = PacedLimiter(5, clock=fake.clock, sleep=fake.sleep)

    for _ in range(30):
        limiter.hold(0.0)
        fake.now += 2

    assert limiter.rate == pytest.approx(0.5)


def test_one_limiter_per_key_and_api() -> None:
    source = GravityZoneSource()
    first = source.parse_account(raw_account())
    same_key = source.parse_account(raw_account(account_id="gz-us"))
    other_key = source.parse_account(raw_account(api_key="z" * 40))

    assert source.limiter(first, "licensing") is source.limiter(same_key, "licensing")
    assert source.limiter(first, "licensing") is not source.limiter(first, "network")
    assert source.limiter(first, "licensing") is not source.limiter(other_key, "licensing")
    assert source.limiter(first, "network").rate == pytest.approx(10 * 0.97)
