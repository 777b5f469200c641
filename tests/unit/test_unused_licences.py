"""The `unused_licences` rule (docs/alerts.md section 3): paid seats nobody uses, per SKU, with its threshold,
overrides and free-SKU exclusions; off the ladder."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from usagewatch import registry
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.rules import RulesDocument, evaluate, parse_rules_document

NOW = datetime(2026, 12, 4, 6, 0, tzinfo=UTC)


def seats(value: int, quota: int | None, *, metric: str = "spb", vendor: str = "microsoft365") -> UsageRecord:
    return UsageRecord(
        vendor=vendor,
        account_id="csp",
        tenant=Tenant("b1c2", "Contoso"),
        metric=metric,
        value=value,
        unit=registry.vendor(vendor).units[0],
        window=Window.month(Period(2026, 12)),
        quota=quota,
    )


def rules_fired(record: UsageRecord, document: RulesDocument | None = None) -> list[tuple[str, float]]:
    return [(f.rule, f.threshold) for f in evaluate(record, document or RulesDocument(), NOW)]


def test_one_unused_seat_fires_by_default_as_info() -> None:
    findings = evaluate(seats(19, 20), RulesDocument(), NOW)
    unused = [f for f in findings if f.rule == "unused_licences"]
    assert [(f.severity, f.threshold, f.quota) for f in unused] == [("info", 1, 20)]


def test_every_seat_used_or_over_does_not_fire() -> None:
    assert "unused_licences" not in [r for r, _ in rules_fired(seats(20, 20))]
    assert [r for r, _ in rules_fired(seats(25, 20))] == ["over_quota"]


def test_no_enabled_quota_never_fires() -> None:
    assert rules_fired(seats(0, None)) == []


def test_every_seat_assigned_is_no_news_for_microsoft365_unless_asked() -> None:
    assert rules_fired(seats(20, 20)) == []
    assert rules_fired(seats(19, 20, metric="monthly_users", vendor="keepnet")) == [("quota_utilization", 18.0)]
    doc = parse_rules_document({"rules": {"quota_utilization": {"vendors": ["microsoft365"]}}})
    assert rules_fired(seats(20, 20), doc) == [("quota_utilization", 18.0)]
    assert rules_fired(seats(19, 20, metric="monthly_users", vendor="keepnet"), doc) == []


def test_fires_next_to_the_ladder() -> None:
    doc = parse_rules_document({"rules": {"quota_utilization": {"vendors": ["microsoft365"]}}})
    assert sorted(r for r, _ in rules_fired(seats(19, 20), doc)) == ["quota_utilization", "unused_licences"]
    assert sorted(r for r, _ in rules_fired(seats(25, 20), doc)) == ["over_quota"]


def test_threshold_and_per_sku_overrides() -> None:
    doc = parse_rules_document(
        {
            "rules": {
                "unused_licences": {
                    "threshold": 3,
                    "overrides": [{"metric": "enterprise*", "threshold": 10}, {"metric": "spb", "threshold": 1}],
                }
            }
        }
    )
    assert rules_fired(seats(17, 20, metric="o365_business_premium"), doc) == [("unused_licences", 3)]
    assert rules_fired(seats(18, 20, metric="o365_business_premium"), doc) == []
    assert "unused_licences" not in [r for r, _ in rules_fired(seats(91, 100, metric="enterprisepack"), doc)]
    assert ("unused_licences", 10) in rules_fired(seats(90, 100, metric="enterprisepack"), doc)
    assert ("unused_licences", 1) in rules_fired(seats(19, 20, metric="spb"), doc)


def test_free_and_trial_skus_are_excluded_by_default_and_the_list_is_the_operators() -> None:
    assert rules_fired(seats(3, 10_000, metric="flow_free")) == []
    assert rules_fired(seats(0, 25, metric="enterprisepremium_trial")) == []
    assert "flow_free" in registry.vendor("microsoft365").free_metrics
    doc = parse_rules_document({"rules": {"unused_licences": {"exclude": ["visio*"]}}})
    assert rules_fired(seats(3, 10_000, metric="flow_free"), doc) == [("unused_licences", 1)]
    assert rules_fired(seats(0, 5, metric="visioclient"), doc) == []


def test_other_vendors_only_when_the_document_names_them() -> None:
    keepnet = seats(40, 50, metric="monthly_users", vendor="keepnet")
    assert "unused_licences" not in [r for r, _ in rules_fired(keepnet)]
    doc = parse_rules_document({"rules": {"unused_licences": {"vendors": ["microsoft365", "keepnet"]}}})
    assert ("unused_licences", 1) in rules_fired(keepnet, doc)


def test_disabled_never_fires() -> None:
    doc = parse_rules_document({"rules": {"unused_licences": {"enabled": False}}})
    assert rules_fired(seats(0, 20), doc) == []


def test_the_operator_quota_is_the_paid_seats_when_given() -> None:
    doc = parse_rules_document(
        {"quotas": [{"vendor": "microsoft365", "tenant_id": "b1c2", "metric": "spb", "quota": 19}]}
    )
    assert "unused_licences" not in [r for r, _ in rules_fired(seats(19, 20), doc)]


def test_which_vendors_and_which_free_metrics_are_the_registry_s_facts() -> None:
    toy = registry.Vendor(
        id="toyseats",
        name="Toy Seats",
        units=("seats",),
        template_name="ToySeats",
        source="tests.toy.source:ToySource",
        settings="tests.toy.source:ToyAccount",
        unused_licence_alerts=True,
        free_metrics=("giveaway_*",),
    )
    with registry.registered(toy):
        assert rules_fired(seats(3, 10, metric="pro", vendor="toyseats")) == [("unused_licences", 1)]
        assert rules_fired(seats(3, 10, metric="giveaway_basic", vendor="toyseats")) == []
        # Microsoft's free SKUs are Microsoft's: a toy metric of that name is judged.
        assert rules_fired(seats(3, 10, metric="flow_free", vendor="toyseats")) == [("unused_licences", 1)]
        # The document's list replaces every vendor's own; its vendor list replaces the registry's choice.
        doc = parse_rules_document({"rules": {"unused_licences": {"exclude": ["pro"], "vendors": ["toyseats"]}}})
        assert rules_fired(seats(3, 10, metric="pro", vendor="toyseats"), doc) == []
        assert rules_fired(seats(3, 10, metric="giveaway_basic", vendor="toyseats"), doc) == [("unused_licences", 1)]
        assert "unused_licences" not in [r for r, _ in rules_fired(seats(3, 10, metric="spb"), doc)]


def test_a_listed_vendor_without_free_metrics_has_none_excluded() -> None:
    doc = parse_rules_document({"rules": {"unused_licences": {"vendors": ["microsoft365", "keepnet"]}}})
    keepnet_trial = seats(40, 50, metric="trial_users", vendor="keepnet")
    assert ("unused_licences", 1) in rules_fired(keepnet_trial, doc)
    assert rules_fired(seats(0, 25, metric="enterprisepremium_trial"), doc) == []


def test_docs_alerts_md_lists_microsoft365_s_free_skus_as_the_registry_has_them() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "alerts.md").read_text(encoding="utf-8")
    section = " ".join(text.split("Microsoft 365's is", 1)[1].split("and the other vendors", 1)[0].split())
    listed = [part.strip(" ,`") for part in section.replace(" and ", ", ").split(", ")]
    assert tuple(listed) == registry.vendor("microsoft365").free_metrics


@given(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(1, 50))
def test_fires_exactly_when_unused_seats_reach_the_threshold(value: int, quota: int, threshold: int) -> None:
    doc = parse_rules_document({"rules": {"unused_licences": {"threshold": threshold}}})
    fired = "unused_licences" in [r for r, _ in rules_fired(seats(value, quota), doc)]
    assert fired == (quota - value >= threshold)
