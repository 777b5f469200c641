"""Free and trial SKUs (docs/vendors/microsoft365.md): stored and shown by `usagewatch report` with a marker, never
judged, never a reconciliation line: the real CLI against moto's DynamoDB."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.local_aws import LocalAws
from usagewatch import cli
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.stored import Total

NOW = Period.of(datetime.now(UTC))
AT = datetime(NOW.year, NOW.month, 1, 6, tzinfo=UTC)
SKUS = (("spb", 9, 12), ("flow_free", 3, 10_000), ("teams_exploratory", 1, 100))


def test_report_shows_free_skus_with_a_marker(aws: LocalAws, capsys: pytest.CaptureFixture[str]) -> None:
    store = aws.store()
    tenant = Tenant("9a1c0d2e-0000-4000-8000-000000000001", "Contoso Dental")
    records = [
        UsageRecord("microsoft365", "csp-main", tenant, metric, used, "seats", Window.month(NOW), quota=paid)
        for metric, used, paid in SKUS
    ]
    store.add_tenant(records, as_of=AT, collected_at=AT)
    store.flush()
    store.write_totals(
        [
            Total("microsoft365", "csp-main", str(NOW), m, "seats", used, 1, 0, "2026-12-01T06:00Z")
            for m, used, _ in SKUS
        ]
    )
    capsys.readouterr()
    code = cli.main(["report", "--period", str(NOW), "--table", aws.table_name])
    out = capsys.readouterr().out
    assert code == 0
    totals = {line.split()[3]: line for line in out.splitlines() if line.startswith("Microsoft 365 ")}
    assert set(totals) == {"spb", "flow_free", "teams_exploratory"}
    assert "flow_free (free)" in totals["flow_free"] and "teams_exploratory (free)" in totals["teams_exploratory"]
    assert "(free)" not in totals["spb"]
    headers = [line.split() for line in out.splitlines() if line.startswith("customer ")]
    assert ["customer", "flow_free", "(free)", "quota", "projected"] in headers
    assert ["customer", "spb", "quota", "projected"] in headers
