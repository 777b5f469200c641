"""The rules document (docs/alerts.md section 10): defaults, each rule's condition, the ladder, operator quotas,
silences, and strict validation that names the field and never crashes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from usagewatch.errors import ConfigError
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.rules import (
    DEFAULT_RULES,
    LADDER,
    RULE_NAMES,
    Finding,
    RulesDocument,
    evaluate,
    is_free_metric,
    parse_rules_document,
)

NOV = Period(2026, 11)
MID_NOV = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)


def record(
    *,
    value: float = 50,
    quota: float | None = 100,
    projected: float | None = None,
    minimum: float | None = None,
    limit_exceeded: bool | None = None,
    vendor: str = "thousandeyes",
    account_id: str = "te-main",
    tenant_id: str = "1234",
    metric: str = "cloud_units",
    unit: str = "units",
    window: Window | None = None,
) -> UsageRecord:
    return UsageRecord(
        vendor=vendor,
        account_id=account_id,
        tenant=Tenant(tenant_id, "Acme"),
        metric=metric,
        value=value,
        unit=unit,
        window=window or Window.month(NOV),
        quota=quota,
        projected=projected,
        minimum=minimum,
        limit_exceeded=limit_exceeded,
    )


def rules(doc: dict[str, Any]) -> RulesDocument:
    return parse_rules_document(json.dumps(doc))


def only_rule(rule: str) -> RulesDocument:
    """Every ladder rule disabled except `rule` (below_minimum_commitment keeps its default)."""
    return rules({"rules": {name: {"enabled": name == rule} for name in LADDER}})


def fired(rec: UsageRecord, doc: RulesDocument = DEFAULT_RULES, as_of: datetime = MID_NOV) -> list[str]:
    return [f.rule for f in evaluate(rec, doc, as_of)]


def one(rec: UsageRecord, doc: RulesDocument = DEFAULT_RULES, as_of: datetime = MID_NOV) -> Finding:
    findings = evaluate(rec, doc, as_of)
    assert len(findings) == 1, findings
    return findings[0]


# --- defaults --------------------------------------------------------------------------------------


def test_an_empty_document_is_the_defaults_of_the_contract() -> None:
    for doc in (parse_rules_document("{}"), parse_rules_document(b"{}"), parse_rules_document({}), DEFAULT_RULES):
        assert doc == RulesDocument()
        r = doc.rules
        assert [(n, r.config(n).enabled, r.config(n).severity) for n in RULE_NAMES] == [
            ("vendor_limit_exceeded", True, "critical"),
            ("over_quota", True, "critical"),
            ("projected_over_quota", True, "warning"),
            ("quota_utilization", True, "warning"),
            ("below_minimum_commitment", True, "info"),
            ("unused_licences", True, "info"),
            ("usage_jump", True, "info"),
            ("under_billed", True, "warning"),
            ("unmapped_tenant", True, "warning"),
            ("tenant_overlap", True, "warning"),
        ]
        assert r.projected_over_quota.min_period_elapsed == 0.0
        assert r.quota_utilization.threshold == 0.9
        assert r.below_minimum_commitment.days_before_period_end == 3
        assert doc.quotas == () and doc.silences == ()
        assert doc.repeat_after_hours == 0
        assert doc.notify_resolved is True


def test_the_contract_example_document_parses() -> None:
    doc = parse_rules_document(
        """{
          "rules": {
            "vendor_limit_exceeded":    {"enabled": true, "severity": "critical"},
            "over_quota":               {"enabled": true, "severity": "critical"},
            "projected_over_quota":     {"enabled": true, "severity": "warning", "min_period_elapsed": 0.0},
            "quota_utilization":        {"enabled": true, "severity": "warning", "threshold": 0.9},
            "below_minimum_commitment": {"enabled": true, "severity": "info", "days_before_period_end": 3}
          },
          "quotas":   [{"vendor": "gravityzone", "tenant_id": "5f3a", "metric": "endpoint_monthly_usage", "quota": 50}],
          "silences": [{"vendor": "keepnet", "tenant_id": "c-42", "rule": "*", "until": "2026-12-31",
                        "reason": "non-profit"}],
          "repeat_after_hours": 0,
          "notify_resolved": true
        }"""
    )
    assert doc.quotas[0].quota == 50 and doc.quotas[0].account_id == "*"
    assert doc.silences[0].reason == "non-profit"
    assert doc.silences[0].until == datetime(2027, 1, 1, tzinfo=UTC)  # the whole of 2026-12-31


def test_partial_rule_objects_keep_the_other_defaults() -> None:
    doc = rules({"rules": {"over_quota": {"severity": "warning"}, "quota_utilization": {"threshold": 0.75}}})
    assert doc.rules.over_quota.enabled is True
    assert doc.rules.over_quota.severity == "warning"
    assert doc.rules.quota_utilization.threshold == 0.75
    assert doc.rules.quota_utilization.severity == "warning"
    assert doc.rules.vendor_limit_exceeded.severity == "critical"


# --- each rule's condition ---------------------------------------------------------------------------


def test_nothing_fires_for_ordinary_usage() -> None:
    assert fired(record(value=50, quota=100, projected=80, minimum=10, limit_exceeded=False)) == []
    assert fired(record(value=5000, quota=None)) == []  # no quota, no flag: nothing to compare with


def test_vendor_flag_fires_even_without_a_quota() -> None:
    finding = one(record(value=7, quota=None, limit_exceeded=True))
    assert (finding.rule, finding.severity, finding.threshold, finding.quota) == (
        "vendor_limit_exceeded",
        "critical",
        7,
        None,
    )
    finding = one(record(value=7, quota=5, limit_exceeded=True))
    assert (finding.threshold, finding.quota) == (5, 5)
    assert fired(record(value=7, quota=5, limit_exceeded=False)) == ["over_quota"]


def test_over_quota_is_strictly_greater() -> None:
    assert fired(record(value=101, quota=100)) == ["over_quota"]
    assert fired(record(value=100, quota=100)) == ["quota_utilization"]
    assert fired(record(value=1, quota=0)) == ["over_quota"]
    assert fired(record(value=0, quota=0)) == []
    finding = one(record(value=101, quota=100))
    assert (finding.threshold, finding.quota, finding.severity) == (100, 100, "critical")


def test_projected_over_quota_needs_a_quota_and_a_projection() -> None:
    assert fired(record(value=10, quota=100, projected=101)) == ["projected_over_quota"]
    assert fired(record(value=10, quota=100, projected=100)) == []
    assert fired(record(value=10, quota=None, projected=10**6)) == []
    finding = one(record(value=10, quota=100, projected=150))
    assert (finding.threshold, finding.severity) == (100, "warning")


def test_min_period_elapsed_holds_a_projection_back_early_in_the_period() -> None:
    doc = rules({"rules": {"projected_over_quota": {"min_period_elapsed": 0.5}}})
    early = record(value=10, quota=100, projected=500)
    # November has 30 days: half of it has passed at 2026-11-16T00:00Z.
    half = datetime(2026, 11, 16, tzinfo=UTC)
    assert fired(early, doc, half - timedelta(seconds=1)) == []
    assert fired(early, doc, half) == ["projected_over_quota"]
    assert fired(early, doc, datetime(2026, 12, 3, tzinfo=UTC)) == ["projected_over_quota"]  # after the end: 1.0
    # The default (0) fires from the first instant; 1.0 only once the period is over.
    assert fired(early, DEFAULT_RULES, NOV.start) == ["projected_over_quota"]
    full = rules({"rules": {"projected_over_quota": {"min_period_elapsed": 1}}})
    assert fired(early, full, NOV.end - timedelta(seconds=1)) == []
    assert fired(early, full, NOV.end) == ["projected_over_quota"]


def test_min_period_elapsed_uses_the_records_own_billing_window() -> None:
    doc = rules({"rules": {"projected_over_quota": {"min_period_elapsed": 0.5}}})
    start = datetime(2026, 11, 10, tzinfo=UTC)
    window = Window(NOV, start, start + timedelta(days=10))  # a 10-day vendor billing window
    rec = record(value=1, quota=10, projected=20, window=window)
    assert fired(rec, doc, start + timedelta(days=4, hours=23)) == []
    assert fired(rec, doc, start + timedelta(days=5)) == ["projected_over_quota"]


def test_quota_utilization_threshold_is_inclusive() -> None:
    assert fired(record(value=90, quota=100)) == ["quota_utilization"]
    assert fired(record(value=89.99, quota=100)) == []
    finding = one(record(value=95, quota=100))
    assert finding.threshold == pytest.approx(90)
    assert finding.quota == 100
    doc = rules({"rules": {"quota_utilization": {"threshold": 0.5}}})
    assert fired(record(value=50, quota=100), doc) == ["quota_utilization"]
    assert fired(record(value=49, quota=100), doc) == []
    # threshold 0 fires for any record with a positive quota; a zero quota never "utilizes".
    zero = rules({"rules": {"quota_utilization": {"threshold": 0}}})
    assert fired(record(value=0, quota=100), zero) == ["quota_utilization"]
    assert fired(record(value=0, quota=0), zero) == []
    # threshold 1 fires at exactly the quota (above it is over_quota).
    full = rules({"rules": {"quota_utilization": {"threshold": 1}}})
    assert fired(record(value=100, quota=100), full) == ["quota_utilization"]
    assert fired(record(value=99, quota=100), full) == []


def test_below_minimum_commitment_only_near_or_after_the_period_end() -> None:
    rec = record(value=5, quota=None, minimum=10, metric="endpoint_monthly_usage", vendor="gravityzone", unit="seats")
    end = NOV.end  # 2026-12-01T00:00Z
    assert fired(rec, DEFAULT_RULES, end - timedelta(days=3, seconds=1)) == []
    assert fired(rec, DEFAULT_RULES, end - timedelta(days=3)) == ["below_minimum_commitment"]
    assert fired(rec, DEFAULT_RULES, end + timedelta(days=5)) == ["below_minimum_commitment"]  # late collection
    finding = one(rec, DEFAULT_RULES, end - timedelta(days=1))
    assert (finding.severity, finding.threshold) == ("info", 10)
    # at or above the minimum: nothing; no minimum: nothing
    assert fired(record(value=10, quota=None, minimum=10), DEFAULT_RULES, end - timedelta(hours=1)) == []
    assert fired(record(value=0, quota=None, minimum=None), DEFAULT_RULES, end - timedelta(hours=1)) == []
    zero_days = rules({"rules": {"below_minimum_commitment": {"days_before_period_end": 0}}})
    assert fired(rec, zero_days, end - timedelta(seconds=1)) == []
    assert fired(rec, zero_days, end) == ["below_minimum_commitment"]
    month = rules({"rules": {"below_minimum_commitment": {"days_before_period_end": 31}}})
    assert fired(rec, month, NOV.start) == ["below_minimum_commitment"]


def test_below_minimum_is_independent_of_the_ladder() -> None:
    rec = record(value=5, quota=4, minimum=10)
    assert fired(rec, DEFAULT_RULES, NOV.end - timedelta(days=1)) == ["over_quota", "below_minimum_commitment"]


# --- the ladder ----------------------------------------------------------------------------------


def everything_holds() -> UsageRecord:
    # vendor flag, over quota (120 > 100), projected over (200 > 100), utilization (120 >= 90)
    return record(value=120, quota=100, projected=200, limit_exceeded=True)


def test_ladder_one_record_with_every_condition_gives_the_highest_only() -> None:
    assert fired(everything_holds()) == ["vendor_limit_exceeded"]
    assert fired(record(value=120, quota=100, projected=200)) == ["over_quota"]
    assert fired(record(value=95, quota=100, projected=200)) == ["projected_over_quota"]


@pytest.mark.parametrize("disabled", range(len(LADDER)))
def test_disabling_the_top_rungs_lets_the_next_one_fire(disabled: int) -> None:
    off = {name: {"enabled": False} for name in LADDER[:disabled]}
    doc = rules({"rules": off})
    assert fired(everything_holds(), doc) == [LADDER[disabled]]


def test_a_disabled_rule_never_fires() -> None:
    for rule in RULE_NAMES:
        doc = rules({"rules": {rule: {"enabled": False}}})
        for as_of in (MID_NOV, NOV.end):
            for rec in (everything_holds(), record(value=1, minimum=10), record(value=95, quota=100)):
                assert rule not in fired(rec, doc, as_of)


def test_every_rung_on_its_own() -> None:
    assert fired(record(value=1, quota=100, limit_exceeded=True), only_rule("vendor_limit_exceeded")) == [
        "vendor_limit_exceeded"
    ]
    assert fired(record(value=101, quota=100), only_rule("over_quota")) == ["over_quota"]
    assert fired(record(value=1, quota=100, projected=101), only_rule("projected_over_quota")) == [
        "projected_over_quota"
    ]
    assert fired(record(value=91, quota=100), only_rule("quota_utilization")) == ["quota_utilization"]
    assert fired(everything_holds(), rules({"rules": {n: {"enabled": False} for n in LADDER}})) == []


def test_severity_comes_from_the_document() -> None:
    doc = rules({"rules": {"over_quota": {"severity": "info"}, "quota_utilization": {"severity": "critical"}}})
    assert one(record(value=101), doc).severity == "info"
    assert one(record(value=95), doc).severity == "critical"


# --- operator quotas -----------------------------------------------------------------------------


def quota_doc(quota: float, **entry: Any) -> RulesDocument:
    base = {"vendor": "thousandeyes", "tenant_id": "1234", "metric": "cloud_units", "quota": quota}
    return rules({"quotas": [{**base, **entry}]})


def test_operator_quota_overrides_the_vendor_quota() -> None:
    rec = record(value=80, quota=100)
    assert fired(rec) == []
    finding = one(rec, quota_doc(50))
    assert (finding.rule, finding.quota, finding.threshold) == ("over_quota", 50, 50)
    finding = one(rec, quota_doc(85))
    assert finding.rule == "quota_utilization"
    assert finding.quota == 85
    # a quota where the vendor has none
    assert fired(record(value=80, quota=None), quota_doc(50)) == ["over_quota"]
    # a more generous operator quota silences the vendor quota's breach
    assert fired(record(value=120, quota=100), quota_doc(1000)) == []
    # projections are measured against the operator quota too
    assert fired(record(value=10, quota=1000, projected=60), quota_doc(50)) == ["projected_over_quota"]


def test_operator_quota_replaces_the_vendor_flag() -> None:
    """With an operator quota the vendor's own over-limit verdict is ignored for that tenant and metric:
    the operator's contract is the measure. docs/alerts.md says so."""
    flagged = record(value=80, quota=100, limit_exceeded=True)
    assert fired(flagged) == ["vendor_limit_exceeded"]
    assert fired(flagged, quota_doc(200)) == []
    assert fired(flagged, quota_doc(60)) == ["over_quota"]
    # another tenant's flag is untouched by this tenant's quota
    assert fired(record(value=80, quota=100, limit_exceeded=True, tenant_id="other"), quota_doc(200)) == [
        "vendor_limit_exceeded"
    ]


def test_operator_quota_matches_vendor_tenant_metric_and_account() -> None:
    rec = record(value=80, quota=100)
    assert fired(rec, quota_doc(50, tenant_id="other")) == []
    assert fired(rec, quota_doc(50, metric="enterprise_units")) == []
    assert fired(rec, quota_doc(50, vendor="keepnet")) == []
    assert fired(rec, quota_doc(50, account_id="te-main")) == ["over_quota"]
    assert fired(rec, quota_doc(50, account_id="te-other")) == []
    # account_id is an exact match or "*", not a pattern
    assert fired(rec, quota_doc(50, account_id="te-*")) == []


def test_first_matching_operator_quota_wins() -> None:
    entry = {"vendor": "thousandeyes", "tenant_id": "1234", "metric": "cloud_units"}
    doc = rules({"quotas": [{**entry, "quota": 50}, {**entry, "quota": 500}]})
    assert doc.operator_quota(record()) == 50


# --- silences ------------------------------------------------------------------------------------


def silence_doc(**silence: Any) -> RulesDocument:
    return rules({"silences": [{"until": "2026-12-31", **silence}]})


def silenced(doc: RulesDocument, now: datetime = MID_NOV, **fields: str) -> bool:
    base = {
        "vendor": "keepnet",
        "account_id": "kn-main",
        "tenant_id": "c-42",
        "metric": "target_users",
        "rule": "over_quota",
    }
    return doc.silenced(**{**base, **fields}, now=now)


def test_silence_fields_default_to_everything() -> None:
    doc = silence_doc()
    assert silenced(doc)
    assert silenced(doc, vendor="gravityzone", tenant_id="x", metric="y", rule="collection")


def test_silence_wildcards() -> None:
    doc = silence_doc(vendor="keepnet", tenant_id="c-*", rule="*")
    assert silenced(doc)
    assert silenced(doc, tenant_id="c-7")
    assert not silenced(doc, tenant_id="d-42")
    assert not silenced(doc, vendor="gravityzone")
    doc = silence_doc(metric="*_users", rule="quota_utilization")
    assert silenced(doc, rule="quota_utilization")
    assert not silenced(doc, rule="over_quota")
    assert not silenced(doc, metric="cloud_units", rule="quota_utilization")
    doc = silence_doc(account_id="kn-?ain")
    assert silenced(doc)
    assert not silenced(doc, account_id="kn-other")
    # matching is case-sensitive: ids are ids
    assert not silenced(silence_doc(tenant_id="C-42"))


def test_silence_until_a_date_covers_that_whole_day_utc() -> None:
    doc = silence_doc(until="2026-11-30")
    assert silenced(doc, now=datetime(2026, 11, 30, 23, 59, 59, tzinfo=UTC))
    assert not silenced(doc, now=datetime(2026, 12, 1, tzinfo=UTC))


def test_silence_until_a_time() -> None:
    doc = silence_doc(until="2026-11-30T12:00:00Z")
    assert silenced(doc, now=datetime(2026, 11, 30, 11, 59, tzinfo=UTC))
    assert not silenced(doc, now=datetime(2026, 11, 30, 12, 0, tzinfo=UTC))
    offset = silence_doc(until="2026-11-30T12:00:00+02:00")  # 10:00Z
    assert not silenced(offset, now=datetime(2026, 11, 30, 10, 0, tzinfo=UTC))
    naive = silence_doc(until="2026-11-30T12:00:00")  # naive means UTC
    assert naive.silences[0].until == datetime(2026, 11, 30, 12, tzinfo=UTC)


def test_any_matching_silence_is_enough() -> None:
    doc = rules(
        {
            "silences": [
                {"tenant_id": "a", "until": "2026-01-01"},
                {"tenant_id": "c-42", "rule": "over_quota", "until": "2027-01-01", "reason": "contract renewal"},
            ]
        }
    )
    assert silenced(doc)
    assert not silenced(doc, rule="quota_utilization")


# --- strict validation ---------------------------------------------------------------------------

QUOTA = {"vendor": "keepnet", "tenant_id": "c-42", "metric": "target_users", "quota": 5}
SILENCE = {"tenant_id": "c-42", "until": "2026-12-31"}

INVALID: list[tuple[Any, str]] = [
    ({"rules": {"quota_utilization": {"threshold": "0.9"}}}, "rules.quota_utilization.threshold"),
    ({"rules": {"quota_utilization": {"threshold": 1.5}}}, "rules.quota_utilization.threshold"),
    ({"rules": {"quota_utilization": {"threshold": -0.1}}}, "rules.quota_utilization.threshold"),
    ({"rules": {"quota_utilization": {"threshold": None}}}, "rules.quota_utilization.threshold"),
    ({"rules": {"projected_over_quota": {"min_period_elapsed": 2}}}, "rules.projected_over_quota.min_period_elapsed"),
    (
        {"rules": {"projected_over_quota": {"min_period_elapsed": "half"}}},
        "rules.projected_over_quota.min_period_elapsed",
    ),
    ({"rules": {"over_quota": {"enabled": "true"}}}, "rules.over_quota.enabled"),
    ({"rules": {"over_quota": {"enabled": 1}}}, "rules.over_quota.enabled"),
    ({"rules": {"over_quota": {"severity": "high"}}}, "rules.over_quota.severity"),
    ({"rules": {"over_quota": {"severity": "CRITICAL"}}}, "rules.over_quota.severity"),
    ({"rules": {"over_quota": {"enable": True}}}, "rules.over_quota.enable"),
    ({"rules": {"over_quota": True}}, "rules.over_quota"),
    ({"rules": {"overquota": {}}}, "rules.overquota"),
    ({"rules": []}, "rules"),
    ({"rules": None}, "rules"),
    (
        {"rules": {"below_minimum_commitment": {"days_before_period_end": 3.0}}},
        "rules.below_minimum_commitment.days_before_period_end",
    ),
    (
        {"rules": {"below_minimum_commitment": {"days_before_period_end": 32}}},
        "rules.below_minimum_commitment.days_before_period_end",
    ),
    (
        {"rules": {"below_minimum_commitment": {"days_before_period_end": -1}}},
        "rules.below_minimum_commitment.days_before_period_end",
    ),
    ({"rules": {"unused_licences": {"threshold": 0}}}, "rules.unused_licences.threshold"),
    ({"rules": {"quota_utilization": {"vendors": ["sophos"]}}}, "rules.quota_utilization.vendors"),
    ({"rules": {"unused_licences": {"threshold": 1.5}}}, "rules.unused_licences.threshold"),
    ({"rules": {"unused_licences": {"vendors": ["sophos"]}}}, "rules.unused_licences.vendors"),
    ({"rules": {"unused_licences": {"exclude": [""]}}}, "rules.unused_licences.exclude[0]"),
    ({"rules": {"unused_licences": {"digest_fold_below": -1}}}, "rules.unused_licences.digest_fold_below"),
    ({"rules": {"unused_licences": {"digest_fold_below": 2.5}}}, "rules.unused_licences.digest_fold_below"),
    (
        {"rules": {"unused_licences": {"overrides": [{"metric": "spb"}]}}},
        "rules.unused_licences.overrides[0].threshold",
    ),
    (
        {"rules": {"unused_licences": {"overrides": [{"sku": "spb", "threshold": 2}]}}},
        "rules.unused_licences.overrides[0].sku",
    ),
    ({"repeat_after_hours": -1}, "repeat_after_hours"),
    ({"repeat_after_hours": "24"}, "repeat_after_hours"),
    ({"repeat_after_hours": True}, "repeat_after_hours"),
    ({"repeat_after_hours": 1e300}, "repeat_after_hours"),
    ({"notify_resolved": "false"}, "notify_resolved"),
    ({"notify_resolved": 0}, "notify_resolved"),
    ({"repeat_after_hour": 1}, "repeat_after_hour"),
    ({"quotas": {}}, "quotas"),
    ({"quotas": "none"}, "quotas"),
    ({"quotas": [{**QUOTA, "vendor": "sophos"}]}, "quotas[0].vendor"),
    ({"quotas": [QUOTA, {**QUOTA, "quota": -1}]}, "quotas[1].quota"),
    ({"quotas": [{**QUOTA, "quota": "5"}]}, "quotas[0].quota"),
    ({"quotas": [{**QUOTA, "quota": 10**16}]}, "quotas[0].quota"),
    ({"quotas": [{**QUOTA, "tenant_id": ""}]}, "quotas[0].tenant_id"),
    ({"quotas": [{**QUOTA, "tenant_id": 42}]}, "quotas[0].tenant_id"),
    ({"quotas": [{"vendor": "keepnet", "tenant_id": "c-42", "quota": 5}]}, "quotas[0].metric"),
    ({"quotas": [{**QUOTA, "limit": 5}]}, "quotas[0].limit"),
    ({"quotas": ["c-42"]}, "quotas[0]"),
    ({"silences": [{**SILENCE, "until": "2026-13-01"}]}, "silences[0].until"),
    ({"silences": [{**SILENCE, "until": "2026-02-30"}]}, "silences[0].until"),
    ({"silences": [{**SILENCE, "until": "31/12/2026"}]}, "silences[0].until"),
    ({"silences": [{**SILENCE, "until": "next week"}]}, "silences[0].until"),
    ({"silences": [{**SILENCE, "until": 20261231}]}, "silences[0].until"),
    ({"silences": [{**SILENCE, "until": None}]}, "silences[0].until"),
    ({"silences": [{"tenant_id": "c-42"}]}, "silences[0].until"),
    ({"silences": [SILENCE, {**SILENCE, "tenant_id": ""}]}, "silences[1].tenant_id"),
    ({"silences": [{**SILENCE, "tenant_id": 42}]}, "silences[0].tenant_id"),
    ({"silences": [{**SILENCE, "rule": ["over_quota"]}]}, "silences[0].rule"),
    ({"silences": [{**SILENCE, "reason": "x" * 501}]}, "silences[0].reason"),
    ({"silences": [{**SILENCE, "tenant": "c-42"}]}, "silences[0].tenant"),
    ({"silences": {"tenant_id": "c-42"}}, "silences"),
    ({"rules": {"usage_jump": {"percent": -1}}}, "rules.usage_jump.percent"),
    ({"rules": {"usage_jump": {"units": "10"}}}, "rules.usage_jump.units"),
    ({"rules": {"usage_jump": {"window_days": 7}}}, "rules.usage_jump.window_days"),
    (
        {"rules": {"usage_jump": {"overrides": [{"vendor": "sophos", "metric": "m"}]}}},
        "rules.usage_jump.overrides[0].vendor",
    ),
    ({"rules": {"usage_jump": {"overrides": [{"vendor": "keepnet"}]}}}, "rules.usage_jump.overrides[0].metric"),
    (
        {"rules": {"usage_jump": {"overrides": [{"vendor": "keepnet", "metric": "m", "percent": True}]}}},
        "rules.usage_jump.overrides[0].percent",
    ),
    (
        {"rules": {"usage_jump": {"overrides": [{"vendor": "keepnet", "metric": "m", "unit": 5}]}}},
        "rules.usage_jump.overrides[0].unit",
    ),
    ({"rules": {"usage_jump": {"overrides": {"vendor": "keepnet"}}}}, "rules.usage_jump.overrides"),
]


@pytest.mark.parametrize(("doc", "path"), INVALID, ids=[p for _, p in INVALID])
def test_invalid_documents_are_rejected_naming_the_field(doc: Any, path: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules_document(json.dumps(doc), source="rules document /usagewatch/rules")
    message = str(caught.value)
    assert message.startswith("rules document /usagewatch/rules: ")
    assert f" {path}: " in message or message.endswith(f" {path}")


def test_several_bad_fields_are_all_named() -> None:
    with pytest.raises(ConfigError) as caught:
        rules({"rules": {"over_quota": {"enabled": "yes"}}, "notify_resolved": "no", "extra": 1})
    message = str(caught.value)
    for path in ("rules.over_quota.enabled", "notify_resolved", "extra"):
        assert path in message


@pytest.mark.parametrize("text", ["", "nul", "{", "[]", '"rules"', "42", "null", "{'rules': {}}", "[" * 100_000])
def test_not_a_json_object_is_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_rules_document(text)


@pytest.mark.parametrize("raw", [b"\x80\x81", b'{"notify_resolved": "\xff"}', b"\xff\xfe{}"])
def test_undecodable_bytes_are_a_config_error_not_a_crash(raw: bytes) -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        parse_rules_document(raw)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_rejected(token: str) -> None:
    for template in (
        '{"repeat_after_hours": %s}',
        '{"rules": {"quota_utilization": {"threshold": %s}}}',
        '{"rules": {"projected_over_quota": {"min_period_elapsed": %s}}}',
        '{"quotas": [{"vendor": "keepnet", "tenant_id": "a", "metric": "m", "quota": %s}]}',
    ):
        with pytest.raises(ConfigError):
            parse_rules_document(template % token)


def test_error_messages_never_echo_the_offending_value() -> None:
    secretish = "tok-3f9a8b7c6d5e4f"
    for doc in (
        {"silences": [{**SILENCE, "until": secretish}]},
        {"notify_resolved": secretish},
        {"rules": {"over_quota": {"severity": secretish}}},
        {"quotas": [{**QUOTA, "vendor": secretish}]},
    ):
        with pytest.raises(ConfigError) as caught:
            rules(doc)
        assert secretish not in str(caught.value)


def test_integers_are_accepted_where_numbers_are_expected() -> None:
    doc = rules(
        {
            "rules": {"quota_utilization": {"threshold": 1}, "projected_over_quota": {"min_period_elapsed": 0}},
            "repeat_after_hours": 24,
            "quotas": [{**QUOTA, "quota": 7.5}],
        }
    )
    assert doc.rules.quota_utilization.threshold == 1
    assert doc.repeat_after_hours == 24
    assert doc.quotas[0].quota == 7.5


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
KEYS = ["rules", "quotas", "silences", "repeat_after_hours", "notify_resolved", *RULE_NAMES]
FIELDS = ["enabled", "severity", "threshold", "min_period_elapsed", "days_before_period_end", "vendor", "tenant_id"]
FIELDS += ["metric", "quota", "account_id", "rule", "until", "reason"]
SHAPED = st.recursive(
    JSON,
    lambda inner: st.dictionaries(st.sampled_from(KEYS + FIELDS), inner, max_size=5) | st.lists(inner, max_size=3),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(SHAPED)
def test_any_json_gives_a_document_or_a_config_error(value: Any) -> None:
    try:
        doc = parse_rules_document(json.dumps(value))
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith("rules document: ")
        return
    # whatever passes is fully usable: evaluation never crashes on it
    for rec in (everything_holds(), record(value=1, minimum=10), record(quota=None)):
        for as_of in (MID_NOV, NOV.end):
            evaluate(rec, doc, as_of)
    doc.silenced(vendor="keepnet", account_id="a", tenant_id="t", metric="m", rule="over_quota", now=MID_NOV)


def test_every_rules_document_shown_in_the_operator_docs_is_valid() -> None:
    docs = Path(__file__).resolve().parents[2] / "docs"
    text = "\n".join(p.read_text(encoding="utf-8") for p in (docs / "alerts.md", docs / "vendors" / "microsoft365.md"))
    documents = [
        json.loads(block)
        for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)
        if '"accounts"' not in block  # the vendor page's secret
        # events, message attributes, filter policies and chat messages are not rules documents
        if not any(mark in block for mark in ("schema_version", "DataType", '"$or"', '"source": "custom"'))
    ]
    assert len(documents) >= 3
    for document in documents:
        parse_rules_document(json.dumps(document))


@pytest.mark.parametrize(
    ("silence", "field"),
    [
        ({"vendor": "kepnet", "until": "2026-12-31"}, "silences[0].vendor"),
        ({"rule": "over_qouta", "until": "2026-12-31"}, "silences[0].rule"),
    ],
)
def test_a_silence_that_can_match_nothing_is_refused(silence: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(field)):
        parse_rules_document({"silences": [silence]})


def test_silence_patterns_may_use_wildcards_over_known_names() -> None:
    document = parse_rules_document(
        {
            "silences": [
                {"vendor": "*zone", "rule": "*quota*", "until": "2026-12-31"},
                {"rule": "collection", "until": "2026-12-31"},
            ]
        }
    )
    assert [s.vendor for s in document.silences] == ["*zone", "*"]


def test_the_digest_fold_sits_with_the_unused_licences_settings() -> None:
    assert DEFAULT_RULES.rules.unused_licences.digest_fold_below == 5
    document = parse_rules_document({"rules": {"unused_licences": {"threshold": 2, "digest_fold_below": 10}}})
    assert (document.rules.unused_licences.threshold, document.rules.unused_licences.digest_fold_below) == (2, 10)


def test_free_metrics_are_the_registry_s_whatever_the_rules_document_says() -> None:
    assert is_free_metric("microsoft365", "flow_free") and is_free_metric("microsoft365", "dynamics_365_trial")
    assert not is_free_metric("microsoft365", "spb")
    assert not is_free_metric("keepnet", "flow_free") and not is_free_metric("nobody", "flow_free")
