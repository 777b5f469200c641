"""The PSA's part of the monthly report (docs/psa.md, "In the monthly report"): the month's applied changes from
the audit trail, and the month's plan made as `usagewatch psa plan` makes it, announced by one event:
`psa.plan.ready`, or `psa.plan.failed` when the PSA could not be reached (the report is written either way)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from usagewatch.billing_html import AppliedChange
from usagewatch.errors import ConfigError, VendorApiError, VendorDataError
from usagewatch.events import PSA_PLAN_FAILED, PSA_PLAN_READY
from usagewatch.model import Period, utc_iso
from usagewatch.psa.connectwise.mapping import PSA, clip
from usagewatch.psa.planning import MonthPlan, open_client, plan_month
from usagewatch.psa.proposals import ProposalStatus
from usagewatch.store.psa import PsaStore
from usagewatch.text import csv_cell

if TYPE_CHECKING:
    from usagewatch.psa.contract import PsaReader
    from usagewatch.reconcile import Line
    from usagewatch.store import DynamoStore

APPLIED_CSV_COLUMNS: Final = (
    "period", "customer_id", "product", "line", "from", "to", "applied_by", "approved_by", "at", "psa_status"
)  # fmt: skip
PLAN_ERRORS: Final = (VendorApiError, VendorDataError, ConfigError)
"""What keeps the plan from being made while the report stands: the PSA not reached or refusing, its secret."""


def applied_changes(store: DynamoStore, period: Period) -> list[AppliedChange]:
    """The month's audit records whose proposal ended applied, with its customer and product, oldest first."""
    psa = PsaStore(store)
    records = [r for r in psa.audit(str(period)) if r.outcome is ProposalStatus.APPLIED]
    if not records:
        return []
    proposals = {p.id: p for p in psa.proposals(str(period))}
    changes = []
    for r in sorted(records, key=lambda r: r.at):
        p = proposals.get(r.proposal_id)
        changes.append(
            AppliedChange(
                customer_id=p.customer_id if p else "",
                product=p.product_identifier if p else "",
                line=r.line,
                before=r.before,
                after=r.after,
                applied_by=r.applier,
                approved_by=r.approver,
                at=r.at,
                psa_status=r.psa_status,
            )
        )
    return changes


def applied_csv(period: Period, changes: Iterable[AppliedChange]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(APPLIED_CSV_COLUMNS)
    for c in changes:
        cells = (period, c.customer_id, c.product, c.line, "" if c.before is None else c.before,
                 "" if c.after is None else c.after, c.applied_by, c.approved_by or "",
                 c.at.isoformat(timespec="seconds"), c.psa_status)  # fmt: skip
        writer.writerow([csv_cell(str(cell)) for cell in cells])
    return buffer.getvalue()


def _id(content: object) -> str:
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:32]


def ready_event(month: MonthPlan, psa: str, currency: str, now: datetime) -> dict[str, Any]:
    made = month.plan
    statuses = month.by_status()
    skipped = month.skipped_by_kind()
    value = f"{month.value:f}"
    waiting = statuses.get(ProposalStatus.PROPOSED.value, 0)
    content = {
        "period": made.period,
        "psa": psa,
        "proposals": sorted((p.id, str(p.from_quantity), p.status.value) for p in month.stored),
        "skipped": skipped,
        "value": value,
    }
    counts = ", ".join(f"{n} {status}" for status, n in statuses.items()) or "none"
    ended = " The month has ended: a change now bills the invoices to come." if made.ended else ""
    return {
        "schema_version": 1,
        "event_type": PSA_PLAN_READY,
        "event_id": _id(content),
        "severity": "warning" if waiting else "info",
        "period": made.period,
        "psa": psa,
        "ended": made.ended,
        "proposals": statuses,
        "skipped": skipped,
        "currency": currency,
        "value": value,
        "observed_at": utc_iso(now),
        "summary": (
            f"PSA plan for {made.period}: {len(month.stored)} proposal(s) ({counts}), worth {currency} {value} a "
            f"month; {sum(skipped.values())} line(s) left out.{ended}"
        ),
    }


def failed_event(period: Period, reason: str, now: datetime) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "event_type": PSA_PLAN_FAILED,
        "event_id": _id({"period": str(period), "psa": PSA, "reason": reason}),
        "severity": "warning",
        "period": str(period),
        "psa": PSA,
        "reason": reason,
        "observed_at": utc_iso(now),
        "summary": f"PSA plan for {period} not made (the billing report is written): {reason}",
    }


def plan_email(event: Mapping[str, Any]) -> str:
    lines = [str(event["summary"]), "", f"Period: {event['period']}", f"PSA: {event['psa']}"]
    if event["event_type"] == PSA_PLAN_READY:
        lines += [f"Proposals: {n} {status}" for status, n in event["proposals"].items()]
        lines += [f"Left out: {n} {kind.replace('_', ' ')}" for kind, n in event["skipped"].items()]
        lines += [
            "",
            f"Review with `usagewatch psa plan --period {event['period']}`, then `psa approve` and `psa apply`.",
        ]
    else:
        lines += ["", "Check the connection with `usagewatch psa check`; see docs/psa.md."]
    return "\n".join(lines)


def make_plan(
    store: DynamoStore,
    period: Period,
    lines: list[Line],
    *,
    secret_id: str,
    currency: str,
    now: datetime,
    connect: Callable[[str], PsaReader] = open_client,
) -> dict[str, Any]:
    """The month's plan (raises only, as `psa plan` makes it by default) as its event: `psa.plan.ready`, or
    `psa.plan.failed` naming why in one line, secrets masked."""
    try:
        client = connect(secret_id)
    except PLAN_ERRORS as exc:
        return failed_event(period, clip(str(exc)), now)
    try:
        month = plan_month(store, client, period, lines, today=now.date())
    except PLAN_ERRORS as exc:
        return failed_event(period, clip(str(exc)), now)
    finally:
        close = getattr(client, "close", None)
        if close is not None:
            close()
    return ready_event(month, client.psa, currency, now)
