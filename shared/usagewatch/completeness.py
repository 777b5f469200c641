"""Which accounts and tenants of a month are not fully read, and why: from the run records, totals and stored
readings. What makes a reconciliation line `incomplete` (docs/billing.md, "Complete, provisional, amended")."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

from usagewatch.customers import TenantMapping, TenantRef
from usagewatch.errors import ConfigError
from usagewatch.model import Period, utc_iso
from usagewatch.stored import RunRecord, Total

if TYPE_CHECKING:
    from usagewatch.store import DynamoStore

FINISHED: Final = ("ok", "partial", "failed")
RUNS_READ: Final = 200
MAX_REASON: Final = 240
_TENANT_ERROR: Final = re.compile(r"^tenant (?P<id>\S+) \(")


class FuturePeriodError(ConfigError):
    """A month that has not begun: nothing of it can be collected yet."""


def refuse_future(period: Period, now: datetime) -> None:
    current = Period.of(now)
    if current < period:
        raise FuturePeriodError(f"period {period} has not begun (this month is {current}): nothing to reconcile")


@dataclass(frozen=True, slots=True)
class Gaps:
    accounts: dict[tuple[str, str], str]
    """(vendor, account) -> why its month is not fully read, the account named first (the footer's line)."""
    tenants: dict[TenantRef, str]
    """A mapped tenant whose own read failed -> why (its number is carried, or it has none)."""


def _when(moment: str) -> str:
    return moment[:16].replace("T", " ")


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def period_runs(store: DynamoStore, vendor: str, account_id: str, period: Period) -> list[RunRecord]:
    """The finished runs of one account that read `period`, newest first: runs of the month or of the next
    (which reads the month before to its end), one Query."""
    runs = store.runs_between(vendor, account_id, utc_iso(period.start), utc_iso(period.next().end), limit=RUNS_READ)
    return [r for r in runs if r.status in FINISHED and str(period) in r.periods]


def assess(
    period: Period,
    runs: Mapping[tuple[str, str], list[RunRecord]],
    totals: Iterable[Total],
    read: Collection[TenantRef],
    mappings: Iterable[TenantMapping],
) -> Gaps:
    """`runs`: per account with mapped tenants, its finished runs of the month (newest first); `read`: the
    tenants with a reading of the month, current or removed by a complete listing."""
    by_account: dict[tuple[str, str], list[Total]] = {}
    for total in totals:
        by_account.setdefault((total.vendor, total.account_id), []).append(total)
    mapped: dict[tuple[str, str], list[TenantRef]] = {}
    for mapping in mappings:
        mapped.setdefault((mapping.tenant.vendor, mapping.tenant.account_id), []).append(mapping.tenant)
    held = {(t.vendor, t.account_id) for t in read}
    accounts: dict[tuple[str, str], str] = {}
    tenants: dict[TenantRef, str] = {}
    for key in sorted(set(runs) | set(mapped)):
        account = key[1]
        stored = by_account.get(key, [])
        cut = [t for t in stored if not t.complete]
        listing = f"part of its listing failed ({', '.join(cut[0].missing)})" if cut else ""
        finished = runs.get(key) or []
        newest = finished[0] if finished else None
        if newest is None:
            if key not in held and not stored:
                accounts[key] = f"{account}: no collection of {period} (its runs never ran or left no record)"
            elif cut:
                accounts[key] = _clip(f"{account}: {listing}")
            elif any(t.carried_tenant_count for t in stored):
                accounts[key] = f"{account}: numbers carried from an earlier run"
            continue
        when = _when(newest.as_of)
        if newest.status == "failed":
            why = newest.errors[0] if newest.errors else "no error recorded"
            accounts[key] = _clip(f"{account}: failed on {when}, {why}")
            continue
        if cut:
            accounts[key] = _clip(f"{account}: {listing} on {when}")
        failed = {m["id"] for e in newest.errors if (m := _TENANT_ERROR.match(e))}
        if len(failed) < newest.tenants_failed:
            accounts.setdefault(key, f"{account}: {newest.tenants_failed} tenant read(s) failed on {when}")
        for tenant in mapped.get(key, []):
            if tenant.tenant_id not in failed:
                continue  # read, or gone from a complete listing: it counts as it stands (0 if absent)
            if tenant in read:
                tenants[tenant] = f"{account}/{tenant.tenant_id}: read failed on {when}, number carried from earlier"
            else:
                tenants[tenant] = f"{account}/{tenant.tenant_id}: read failed on {when}, no reading of {period}"
    return Gaps(accounts, tenants)
