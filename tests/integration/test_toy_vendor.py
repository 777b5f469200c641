"""A fourth vendor registered in tests alone runs through the real handler, store, rules, alerts and CLI.

What a vendor needs beyond the registry entry is what docs/adding-a-vendor.md lists; if this test had to
touch anything in shared/ or functions/ to pass, the guide and the registry would be wrong.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.conftest import FakeLambdaContext
from tests.local_aws import LocalAws
from tests.toy.simulator import ToySimulator, make_customers
from usagewatch import registry
from usagewatch.cli import main as cli
from usagewatch.errors import ConfigError, VendorDataError
from usagewatch.handler import lambda_handler_for
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.rules import parse_rules_document

TOY = registry.Vendor(
    id="toyvendor",
    name="Toy Vendor",
    units=("seats",),
    template_name="ToyVendor",
    source="tests.toy.source:ToySource",
    settings="tests.toy.source:ToyAccount",
    billed_metrics=("seats_used",),
)
SECRET = "usagewatch/toyvendor"
API_KEY = "toy-api-key-5e6f7a8b"
EVENT = {"scheduled_time": "2026-11-22T06:00:00Z"}


@pytest.fixture
def toy() -> Iterator[registry.Vendor]:
    with registry.registered(TOY) as entry:
        yield entry


@pytest.fixture
def sim() -> Iterator[ToySimulator]:
    with ToySimulator(api_key=API_KEY, customers=make_customers(8, over=2)) as started:
        yield started  # type: ignore[misc]


def run(aws: LocalAws, monkeypatch: pytest.MonkeyPatch, sim: ToySimulator) -> dict[str, Any]:
    """The handler a `functions/toyvendor/app.py` would hold, with a collector's environment from the template."""
    aws.put_secret(SECRET, [{"account_id": "toy-main", "base_url": sim.url, "api_key": API_KEY}])
    env = aws.environment("keepnet") | {"VENDOR_SECRET_ID": SECRET}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    handler = lambda_handler_for(registry.source_factory("toyvendor"))
    result: dict[str, Any] = handler(EVENT, FakeLambdaContext())
    return result


def test_a_registered_vendor_is_collected_stored_totalled_and_alerted_once(
    toy: registry.Vendor, aws: LocalAws, sim: ToySimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim.throttle_next = 1
    summary = run(aws, monkeypatch, sim)

    assert summary["vendor"] == "toyvendor"
    assert (summary["tenants_collected"], summary["tenants_failed"]) == (8, 0)
    assert sim.statuses("/v1/customers").count(429) == 1
    stored = aws.usage("2026-11", vendor="toyvendor")
    assert {u["tenant_id"]: u["value"] for u in stored} == {c["id"]: c["seatsUsed"] for c in sim.customers}
    (total,) = [t for t in aws.totals("2026-11") if t["vendor"] == "toyvendor"]
    assert total["value"] == sum(c["seatsUsed"] for c in sim.customers)

    breached = [e for e in aws.drain_events() if e["event_type"] == "usage.threshold.breached"]
    assert sorted(e["tenant_id"] for e in breached) == ["toy-000", "toy-001"], [
        (e["tenant_id"], e["rule"], e["summary"]) for e in breached
    ]
    assert {e["rule"] for e in breached} == {"over_quota"}
    assert all("Toy Vendor" in e["summary"] for e in breached)

    run(aws, monkeypatch, sim)
    assert [e for e in aws.drain_events() if e["event_type"] == "usage.threshold.breached"] == []


def test_the_cli_and_the_rules_document_know_a_registered_vendor(
    toy: registry.Vendor,
    aws: LocalAws,
    sim: ToySimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run(aws, monkeypatch, sim)
    capsys.readouterr()
    assert cli(["report", "--period", "2026-11", "--vendor", "toyvendor", "--table", aws.table_name, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"record_type": "usage"' in line]
    assert len(rows) == 8
    assert {r["vendor"] for r in rows} == {"toyvendor"}

    document = {
        "quotas": [{"vendor": "toyvendor", "tenant_id": "toy-003", "metric": "seats_used", "quota": 5}],
        "silences": [{"vendor": "toyvendor", "until": "2027-01-01"}],
    }
    parsed = parse_rules_document(json.dumps(document))
    assert parsed.quotas[0].vendor == "toyvendor"


def test_a_vendor_nobody_registered_is_refused_everywhere(toy: registry.Vendor) -> None:
    registry.unregister("toyvendor")
    with pytest.raises(VendorDataError, match="unknown vendor"):
        UsageRecord("toyvendor", "a", Tenant("t", "T"), "seats_used", 1, "seats", Window.month(Period(2026, 11)))
    with pytest.raises(ConfigError, match="unknown vendor"):
        parse_rules_document(
            json.dumps({"quotas": [{"vendor": "toyvendor", "tenant_id": "t", "metric": "m", "quota": 1}]})
        )
    registry.register(TOY)  # the fixture forgets it again


def test_the_registry_refuses_a_second_vendor_with_a_taken_id() -> None:
    with pytest.raises(ValueError, match="already registered"):
        registry.register(registry.vendor("keepnet"))
    with pytest.raises(ValueError, match="template_name"):
        registry.Vendor("newone", "New", ("seats",), "not camel", "a.b:C", "a.b:D")
