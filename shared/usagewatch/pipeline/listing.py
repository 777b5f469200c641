"""The listing reconciliation: stored customers this run did not see, carried or marked removed."""

from __future__ import annotations

from collections.abc import Mapping

from usagewatch.alerts import TenantFailureInfo
from usagewatch.model import CollectionRequest, Tenant, utc_iso
from usagewatch.observability import logger
from usagewatch.pipeline.account import AccountRun
from usagewatch.pipeline.ports import UsageStore
from usagewatch.stored import StoredUsage
from usagewatch.text import clip_error


def is_beneath(tenant_id: str, ancestor: str, parents: Mapping[str, str | None]) -> bool:
    """Whether `ancestor` is on the tenant's chain of parents (as stored)."""
    seen: set[str] = set()
    current = parents.get(tenant_id)
    while current is not None and current not in seen:
        if current == ancestor:
            return True
        seen.add(current)
        current = parents.get(current)
    return False


def hidden_count(gap: Tenant, unseen: set[str], parents: Mapping[str, str | None], *, alone: bool) -> int:
    """How many stored customers not seen this run a failed part of the listing may hide.

    Those beneath it (by their stored parents); else, for the run's only gap, every unseen customer; else those
    beneath the gap's own parent (a folder's customers are stored under the company that holds the folder).
    """
    beneath = sum(1 for tenant_id in unseen if is_beneath(tenant_id, gap.tenant_id, parents))
    if beneath or not unseen:
        return beneath
    if alone:
        return len(unseen)
    if gap.parent_tenant_id is not None:
        return sum(1 for tenant_id in unseen if is_beneath(tenant_id, gap.parent_tenant_id, parents))
    return sum(1 for tenant_id in unseen if parents.get(tenant_id) is None)


def reconcile_listing(store: UsageStore, run: AccountRun, request: CollectionRequest) -> dict[str, str]:
    """Customers stored for this run's periods that the run did not see at all.

    After a listing with gaps they may be hidden beneath a failed part: their last numbers are carried (and
    a gap hiding no stored customer makes the totals incomplete). After a complete listing they are gone:
    their items are marked removed (out of the totals) and their ids returned, to close their alerts.
    """
    unseen, parents = _unseen(store, run)
    if run.gaps:
        _carry_beneath_gaps(run, unseen, parents)
        return {}
    if not unseen:
        return {}
    store.mark_removed([u for usages in unseen.values() for u in usages], removed_at=utc_iso(request.as_of))
    logger.info("customers no longer listed", extra={"account_id": run.account_id, "tenants": sorted(unseen)})
    return {tenant_id: usages[0].record.tenant.tenant_name or tenant_id for tenant_id, usages in unseen.items()}


def _unseen(store: UsageStore, run: AccountRun) -> tuple[dict[str, list[StoredUsage]], dict[str, str | None]]:
    """The stored, not removed items of tenants this run did not see, and every stored tenant's parent."""
    seen = run.ok_tenants.keys() | run.failures.keys()
    unseen: dict[str, list[StoredUsage]] = {}
    parents: dict[str, str | None] = {}
    for period in sorted(run.periods):
        for usage in store.period_usage(period, vendor=run.vendor, account_id=run.account_id):
            tenant = usage.record.tenant
            parents[tenant.tenant_id] = tenant.parent_tenant_id
            if tenant.tenant_id not in seen and not usage.removed_at:
                unseen.setdefault(tenant.tenant_id, []).append(usage)
    return unseen, parents


def _carry_beneath_gaps(
    run: AccountRun, unseen: dict[str, list[StoredUsage]], parents: Mapping[str, str | None]
) -> None:
    """After a listing with gaps: the unseen keep their numbers; each gap says what it hides (or that the
    totals are incomplete when it hides no stored customer)."""
    for usages in unseen.values():
        for usage in usages:
            run.totals.carry(usage.record)
    for gap_id, gap in run.gaps.items():
        hidden = hidden_count(gap, set(unseen), parents, alone=len(run.gaps) == 1)
        info = run.failures[gap_id]
        if hidden:
            note = f"; {hidden} customer(s) beneath it, known from earlier runs, keep their last numbers"
        else:
            note = "; no customer beneath it was stored before, so the totals are incomplete"
            run.incomplete.append(gap.tenant_name)
        run.failures[gap_id] = TenantFailureInfo(info.tenant_name, clip_error(info.error + note))


def carry_failed_tenants(store: UsageStore, run: AccountRun) -> None:
    """A tenant that failed this run keeps its last stored numbers in the total, so totals match the items.

    A listing gap whose own tenant was read this run (a company whose children could not be read) is not
    carried: its fresh numbers are in the total already.
    """
    for tenant_id in run.failures:
        if tenant_id in run.ok_tenants:
            continue
        for period in run.periods:
            for usage in store.tenant_usage(run.vendor, run.account_id, tenant_id, period):
                run.totals.carry(usage.record)
