"""The real Keepnet handler's metrics, read from its EMF output: exactly the declared catalogue, with the values
the run stored (the dashboard plots this catalogue: tests/infrastructure/test_dashboard.py)."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from tests import emf
from tests.integration.conftest import Invoke, event_file
from tests.local_aws import LocalAws
from tests.simulators.base import Fault, on_path
from tests.simulators.keepnet import KeepnetSimulator, make_companies
from usagewatch import registry
from usagewatch.handler import CollectionFailedError
from usagewatch.model import parse_utc
from usagewatch.observability import CATALOGUE, metrics

SECRET = "usagewatch/keepnet"
CLIENT_SECRET = "kn-secret-metrics-0001"
COMPANIES = make_companies(30, seed=5, over_limit=2, unlimited=1)


@pytest.fixture
def keepnet() -> Iterator[KeepnetSimulator]:
    with KeepnetSimulator(
        companies=copy.deepcopy(COMPANIES), clients={"msp-reseller": (CLIENT_SECRET, "Reseller")}
    ) as sim:
        yield sim  # type: ignore[misc]


@pytest.fixture
def env(aws: LocalAws, keepnet: KeepnetSimulator) -> dict[str, str]:
    account = {"account_id": "kn-main", "base_url": keepnet.url, "client_id": "msp-reseller"}
    aws.put_secret(SECRET, [{**account, "client_secret": CLIENT_SECRET}])
    metrics.clear_metrics()  # nothing left over from a test that called `handle` without the Lambda decorator
    return aws.environment("keepnet", secret_name=SECRET)


def test_a_run_emits_exactly_the_catalogue_with_the_stored_totals(
    aws: LocalAws, env: dict[str, str], invoke: Invoke, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    summary = invoke("keepnet", event_file("keepnet-scheduled.json"), env)
    data = emf.data(capsys.readouterr().out)

    namespace = env["POWERTOOLS_METRICS_NAMESPACE"]
    assert {d.key for d in data} == {(namespace, s.name, frozenset(s.dimensions)) for s in CATALOGUE}
    service = env["POWERTOOLS_SERVICE_NAME"]
    assert {(d.dimensions["service"], d.dimensions["vendor"]) for d in data} == {(service, "keepnet")}
    by_name = {d.name: d for d in data if d.name != "UsageTotal"}
    assert by_name["RunSucceeded"].value == 1
    assert by_name["TenantsCollected"].value == summary["tenants_collected"] == 30
    assert by_name["AlertsPublished"].value == summary["alerts_published"] > 0
    age = by_name["LastSuccessAgeSeconds"]
    assert age.dimensions["account"] == "kn-main" and 0 <= age.value < 5
    stored = {t["metric"]: t["value"] for t in aws.totals("2026-11")}
    emitted = {d.dimensions["usage_metric"]: d.value for d in data if d.name == "UsageTotal"}
    assert emitted == {metric: float(stored[metric]) for metric in registry.vendor("keepnet").billed_metrics}


@pytest.mark.realtime  # the age metric is measured on the real clock
def test_a_failed_run_reports_no_success_and_the_age_of_the_last_one(
    aws: LocalAws, env: dict[str, str], invoke: Invoke, keepnet: KeepnetSimulator, capsys: pytest.CaptureFixture[str]
) -> None:
    invoke("keepnet", event_file("keepnet-scheduled.json"), env)
    keepnet.inject(Fault("status", on_path("/connect/token"), times=-1, status=401))
    time.sleep(1.1)  # so that the age of the first run's success is at least a second
    started = datetime.now(UTC)
    capsys.readouterr()

    with pytest.raises(CollectionFailedError):
        invoke("keepnet", {"scheduled_time": "2026-11-22T12:00:00Z"}, env)
    finished = datetime.now(UTC)
    data = emf.data(capsys.readouterr().out)

    values = {d.name: d.value for d in data}
    assert (values["RunSucceeded"], values["AccountsFailed"]) == (0, 1)
    assert "UsageTotal" not in values, "a failed account has no fresh totals"
    statuses = {r.as_of: (r.status, r.finished_at) for r in aws.store().runs("keepnet", "kn-main")}
    assert statuses["2026-11-22T12:00:00Z"][0] == "failed"
    status, last_ok = statuses["2026-11-22T06:00:00Z"]
    assert status == "ok"
    # Measured from the first run's finish (kept to the second, rounded down) to the failed run's end.
    since_ok = parse_utc(last_ok)
    age = values["LastSuccessAgeSeconds"]
    assert 1 <= (started - since_ok).total_seconds() <= age <= (finished - since_ok).total_seconds()
