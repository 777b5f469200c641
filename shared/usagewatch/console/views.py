"""What each console page shows and the changes it makes, all through the existing readers and the billing
store's change API (the same code `customers import|ignore|unignore` runs): no key is built here."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from usagewatch import registry
from usagewatch.billing_report import Reconciliation, UsageReader, gather, line_row, render_csv, unmapped_tenants
from usagewatch.console.access import Caller
from usagewatch.customers import Customer, NamedTenant, TenantRef, canonical_tenant_id, unmapped
from usagewatch.imports import parse_mappings
from usagewatch.matching import Suggestion, suggest
from usagewatch.model import Period
from usagewatch.reconcile import STATUS_ORDER, tenants_once
from usagewatch.store import DynamoStore, audit
from usagewatch.store.billing import BillingStore, ImportResult
from usagewatch.stored import AlertState, RunRecord

MAPPING_COLUMNS = ("customer_id", "customer_name", "vendor", "account_id", "tenant_id")


def this_month() -> Period:
    return Period.of(datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class AccountRun:
    vendor: str
    account_id: str
    last: RunRecord | None


def overview(store: DynamoStore, period: Period) -> dict[str, Any]:
    billing = BillingStore(store)
    accounts = sorted(set(billing.accounts()) | set(store.period_accounts(str(period))))
    runs = [AccountRun(v, a, next(iter(store.runs(v, a, limit=1)), None)) for v, a in accounts]
    result = gather(store, period)
    return {"runs": runs, "result": result, "counts": result.counts, "unmapped": unmapped_tenants(result.lines)}


def _tenants(store: DynamoStore, period: Period) -> list[NamedTenant]:
    seen: dict[TenantRef, str] = {}
    for item in UsageReader(store).items(period):
        ref = TenantRef(str(item["vendor"]), str(item["account_id"]), str(item["tenant_id"]))
        seen.setdefault(ref, str(item.get("tenant_name", "")))
    return [NamedTenant(ref, name) for ref, name in seen.items()]


def _key(t: TenantRef) -> tuple[str, str, str]:
    return (t.vendor, t.account_id, canonical_tenant_id(t.vendor, t.tenant_id))


def same_tenant(a: TenantRef, b: TenantRef) -> bool:
    """One vendor tenant, however its id is spelled (Microsoft 365's GUIDs ignore case)."""
    return _key(a) == _key(b)


def unmapped_tenants_of(store: DynamoStore, period: Period) -> tuple[list[NamedTenant], BillingStore]:
    """The tenants with usage in `period` that no customer owns and nobody ignores."""
    billing = BillingStore(store)
    skip = {_key(t) for t in billing.ignored()}
    mappings = billing.mappings()
    tenants, _ = tenants_once([t for t in _tenants(store, period) if _key(t.tenant) not in skip], mappings)
    return unmapped(tenants, mappings), billing


def suggestions(store: DynamoStore, period: Period) -> list[Suggestion]:
    """The unmapped tenants of `period` (ignored and mapped ones left out), each with its best suggestion."""
    tenants, billing = unmapped_tenants_of(store, period)
    return suggest(tenants, billing.customers(), billing.mappings())


def store_mappings(
    store: DynamoStore, rows: Sequence[tuple[Customer, TenantRef]], *, what: str, source: str, new: bool = False
) -> ImportResult:
    """`rows` written as `customers import` writes a mapping file: parsed and validated as one (its line errors,
    ImportRejectedError), then one all-or-nothing change of the billing items."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow((*MAPPING_COLUMNS, "external_ref"))
    for c, t in rows:
        writer.writerow((c.customer_id, c.name, t.vendor, t.account_id, t.tenant_id, c.external_ref or ""))
    parsed = parse_mappings(buffer.getvalue(), vendors=registry.vendor_ids(), source=source)
    return BillingStore(store).import_mappings(parsed.customers, parsed.mappings, what=what, new_customers=new)


def ignored(store: DynamoStore) -> list[TenantRef]:
    return sorted(BillingStore(store).ignored())


def tenant_ref(text: str) -> TenantRef:
    """`vendor/account/tenant` as the pages send it (tenant ids may hold '/': only the first two split)."""
    vendor, _, rest = text.partition("/")
    account, _, tenant = rest.partition("/")
    if vendor not in registry.vendor_ids() or not account or not tenant:
        raise ValueError(f"not a tenant of a known vendor: {text!r}")
    return TenantRef(vendor, account, tenant)


def accept(store: DynamoStore, who: Caller, period: Period, chosen: Sequence[TenantRef]) -> str:
    """Store the suggestion of each chosen tenant as `customers import` would: parsed and validated as a
    mapping file, then one all-or-nothing change; each accepted tenant recorded in the trail."""
    who.require_operator()
    wanted = {_key(t) for t in chosen}
    picked = [s for s in suggestions(store, period) if _key(s.tenant) in wanted]
    if not picked:
        return "Nothing accepted: the chosen tenants are no longer unmapped."
    known = {c.customer_id: c for c in BillingStore(store).customers()}  # an existing customer stays as stored
    rows = [(known.get(s.customer_id) or Customer(s.customer_id, s.customer_name), s.tenant) for s in picked]
    result = store_mappings(store, rows, what=f"console accept ({who.username})", source="accepted suggestions")
    audit.record(
        store,
        [audit.entry(who.username, "map tenant", str(s.tenant), "unmapped", f"{s.customer_id} ({s.customer_name})")
         for s in picked],
    )  # fmt: skip
    return f"Mapped {len(picked)} tenant(s): {result.written} item(s) written, {result.unchanged} unchanged."


def set_ignored(store: DynamoStore, who: Caller, tenants: Sequence[TenantRef], *, ignore: bool) -> str:
    who.require_operator()
    what = "ignore" if ignore else "unignore"
    result = BillingStore(store).set_ignored(tenants, ignore=ignore, what=f"console {what} ({who.username})")
    before, after = ("listed", "ignored") if ignore else ("ignored", "listed")
    audit.record(store, [audit.entry(who.username, f"{what} tenant", str(t), before, after) for t in tenants])
    return f"{'Ignored' if ignore else 'Restored'} {len(tenants)} tenant(s): {result.written} item(s) written."


@dataclass(frozen=True, slots=True)
class MonthFilter:
    status: str = ""
    vendor: str = ""
    customer: str = ""


def month(store: DynamoStore, period: Period, wanted: MonthFilter) -> tuple[Reconciliation, list[dict[str, Any]]]:
    result = gather(store, period, customer_id=wanted.customer or None, history_months=6)
    rows = [
        line_row(period, x, result.currency)
        for x in result.lines
        if (not wanted.status or x.status == wanted.status) and (not wanted.vendor or x.vendor == wanted.vendor)
    ]
    return result, rows


def month_csv(store: DynamoStore, period: Period, customer: str | None) -> str:
    return render_csv(gather(store, period, customer_id=customer or None))


def customer_tenants(store: DynamoStore, customer_id: str) -> list[TenantRef]:
    return sorted(m.tenant for m in BillingStore(store).mappings() if m.customer_id == customer_id)


def customer_contracts(store: DynamoStore, customer_id: str) -> list[Any]:
    billing = BillingStore(store)
    return [c for v in registry.vendor_ids() for c in billing.contracts(v) if c.customer_id == customer_id]


def alerts(store: DynamoStore, period: Period) -> list[AlertState]:
    billing = BillingStore(store)
    accounts = sorted(set(billing.accounts()) | set(store.period_accounts(str(period))))
    firing = [s for v, a in accounts for s in store.open_alerts(v, a).values()]
    return sorted(firing, key=lambda s: (s.severity, s.rule, s.since))


STATUSES = STATUS_ORDER
