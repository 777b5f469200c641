"""The collectors' CloudWatch metrics: what the pipeline reports for them, and how they are emitted (EMF).

The dashboard and the alarms plot these (tests/infrastructure/test_dashboard.py); a real invocation's output is
checked against the catalogue in tests/integration/test_metrics.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests import emf
from tests.fakes.memory_store import MemoryStore
from tests.unit.test_pipeline_memory import ACCOUNT, PERIOD, Events, ScriptedSource, failure, usage
from usagewatch import observability, registry
from usagewatch.model import CollectionRequest, TenantResult
from usagewatch.observability import (
    ACCOUNT_DIMENSIONS,
    CATALOGUE,
    LAST_SUCCESS_AGE,
    RUN_METRICS,
    USAGE_DIMENSIONS,
    USAGE_TOTAL,
    VENDOR_DIMENSIONS,
    emit_account,
    emit_run,
    metrics,
)
from usagewatch.pipeline import Pipeline
from usagewatch.rules import DEFAULT_RULES

T0 = datetime(2026, 11, 22, 6, 0, tzinfo=UTC)


@pytest.fixture
def run() -> Any:
    source, store = ScriptedSource(), MemoryStore()

    def _run(when: datetime, *results: TenantResult, down: bool = False) -> Any:
        source.results, source.down = list(results), down
        pipeline = Pipeline(source, store, Events(), DEFAULT_RULES, clock=lambda: when)
        return pipeline.run([ACCOUNT], CollectionRequest(PERIOD, when)).accounts[0]

    return _run


def test_the_last_success_is_this_run_then_the_last_good_one_while_the_account_fails(run: Any) -> None:
    ok = run(T0, usage("a", 40), usage("b", 120))
    assert (ok.status, ok.last_success_at, ok.totals) == ("ok", "2026-11-22T06:00:00Z", {"licensed_users": 160})

    failed = run(T0 + timedelta(hours=6), down=True)
    assert (failed.status, failed.last_success_at, failed.totals) == ("failed", "2026-11-22T06:00:00Z", {})
    failed_again = run(T0 + timedelta(hours=12), down=True)
    assert failed_again.last_success_at == "2026-11-22T06:00:00Z"

    partial = run(T0 + timedelta(hours=18), usage("a", 41), failure("b"))
    assert partial.status == "partial", "some tenants failed, the others were read: the numbers are fresh"
    assert partial.last_success_at == "2026-11-23T00:00:00Z"
    assert partial.totals == {"licensed_users": 161}, "b's last number is carried in the total"


def test_an_account_that_never_succeeded_has_no_last_success(run: Any) -> None:
    assert run(T0, down=True).last_success_at is None


def test_an_account_emits_its_age_and_only_its_vendors_declared_totals(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    emit_account(
        "keepnet",
        "kn-main",
        last_success_age=7200.0,
        totals={"monthly_users": 310, "target_users": 400, "inactive_target_users": 12},
    )
    data = emf.data(capsys.readouterr().out)

    age = [d for d in data if d.name == LAST_SUCCESS_AGE.name]
    assert [(d.value, d.unit, d.dimensions["account"], d.dimensions["vendor"]) for d in age] == [
        (7200.0, "Seconds", "kn-main", "keepnet")
    ]
    totals = {d.dimensions["usage_metric"]: d.value for d in data if d.name == USAGE_TOTAL.name}
    assert totals == {"monthly_users": 310.0, "target_users": 400.0}, "inactive_target_users is not declared"
    assert {d.key for d in data} == {
        (observability.NAMESPACE, LAST_SUCCESS_AGE.name, frozenset(ACCOUNT_DIMENSIONS)),
        (observability.NAMESPACE, USAGE_TOTAL.name, frozenset(USAGE_DIMENSIONS)),
    }


def test_an_unknown_age_emits_no_age(capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    emit_account("thousandeyes", "te", last_success_age=None, totals={"cloud_units": 5.5})
    data = emf.data(capsys.readouterr().out)
    assert [(d.name, d.value) for d in data] == [("UsageTotal", 5.5)]


@pytest.mark.parametrize(("accounts_failed", "succeeded"), [(0, 1.0), (2, 0.0)])
def test_a_run_succeeds_when_no_account_failed(accounts_failed: int, succeeded: float) -> None:
    summary = {
        "vendor": "gravityzone",
        "accounts_failed": accounts_failed,
        "tenants_collected": 30,
        "tenants_failed": 1,
        "records_written": 90,
        "alerts_published": 4,
        "publish_failures": 0,
    }
    metrics.clear_metrics()
    try:
        emit_run(summary)
        document = metrics.serialize_metric_set()
    finally:
        metrics.clear_metrics()
    (directive,) = document["_aws"]["CloudWatchMetrics"]
    assert [set(d) for d in directive["Dimensions"]] == [set(VENDOR_DIMENSIONS)]
    assert {m["Name"] for m in directive["Metrics"]} == {spec.name for spec in RUN_METRICS}
    assert document["vendor"] == "gravityzone"
    assert (document["RunSucceeded"], document["AccountsFailed"], document["TenantsCollected"]) == (
        [succeeded],
        [float(accounts_failed)],
        [30.0],
    )


def test_every_vendor_declares_a_handful_of_billed_totals() -> None:
    assert all(1 <= len(v.billed_metrics) <= 3 for v in registry.vendors()), "each is a metric per account: they cost"
    assert len({spec.name for spec in CATALOGUE}) == len(CATALOGUE)
