"""The demo's PSA story (tests/demo_psa.py, run by `make demo` after its billing story) on a small billed month:
the simulator bills the contracts' quantities, the under-billed lines are proposed, the first apply writes each
once and the second writes nothing; the commands that need no PSA are remembered for `make demo-shell`."""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tests.demo_billing import PERIOD, psa_company
from tests.demo_psa import psa_story
from tests.local_aws import LocalAws
from usagewatch import cli
from usagewatch.contracts import Contract
from usagewatch.customers import Customer, TenantMapping, TenantRef
from usagewatch.model import Period, Tenant, UsageRecord, Window
from usagewatch.redaction import redactor
from usagewatch.store.billing import BillingStore

AT = datetime(2026, 11, 28, 6, tzinfo=UTC)


def run_cli(argv: list[str]) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(argv) == 0, argv
    return out.getvalue()


def test_the_psa_story_proposes_the_under_billed_lines_and_applies_them_once(
    aws: LocalAws, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redactor.clear()
    monkeypatch.chdir(tmp_path)
    store = aws.store()
    used = {"acme": 130, "globex": 40, "initech": 12}
    for n, (cid, value) in enumerate(used.items()):
        record = UsageRecord("keepnet", "kn", Tenant(f"t{n}", cid.title()), "monthly_users", value, "users",
                             Window.month(Period.parse(PERIOD)))  # fmt: skip
        store.add_usage(record, as_of=AT, collected_at=AT)
    store.flush()
    billing = BillingStore(store)
    billing.import_mappings(
        [Customer(cid, cid.title(), psa_company(cid)) for cid in used],
        [TenantMapping(cid, TenantRef("keepnet", "kn", f"t{n}")) for n, cid in enumerate(used)],
    )
    billed = {"acme": 120, "globex": 38, "initech": 12}  # two under-billed, one exact
    billing.import_contracts(
        [
            Contract(cid, "keepnet", "monthly_users", q, Period(2026, 1), unit_price=Decimal("2.50"))
            for cid, q in billed.items()
        ]
    )
    rows = "".join(f"{cid},keepnet,monthly_users,{q},2026-01,2.50\n" for cid, q in billed.items())
    (tmp_path / "contracts.csv").write_text("customer_id,vendor,metric,quantity,effective_from,unit_price\n" + rows)
    said: list[str] = []
    shown: list[list[str]] = []

    def show(argv: list[str], note: str = "") -> str:
        shown.append(argv)
        said.append("$ usagewatch " + " ".join(argv))
        return ""

    story = psa_story(aws, run_cli, said.append, tmp_path, show=show)
    assert (story.proposed, story.written_first, story.written_again) == (2, 2, 0)
    text = "\n".join(said)
    assert "Plan for 2026-11: 2 proposal(s), 2 new, raises worth 30.00." in text
    assert "Dry run: 2 request(s) would be sent" in text and '"path": "quantity", "value": 130' in text
    assert "Apply 2026-11: 2 applied." in text and "Nothing to apply for 2026-11." in text
    assert [argv[:2] for argv in shown] == [["psa", "approve"], ["psa", "log"]]  # only those run in demo-shell
    assert "privKeyDemo" not in text
