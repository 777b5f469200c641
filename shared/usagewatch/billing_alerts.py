"""The collectors' billing rules: `under_billed` (a customer uses more than its contract), `unmapped_tenant`
(a tenant with usage that no customer owns) and `tenant_overlap` (one vendor tenant stored under two accounts of
the vendor). docs/alerts.md and docs/billing.md.

A tenant reached through several accounts is billed through one: the account that maps it, else the account whose
id sorts first (as the reconciliation counts it). Only that account's run may call it unmapped; every other
account's run raises `tenant_overlap` on it instead, so each incident is alerted once.

One account's run reads its view once (the vendor's accounts, their mappings, the vendor's contracts: a
handful of paged Queries, never one per tenant), keeps while streaming only the sums of the customers'
contracted metrics and one record per unmapped tenant, and turns them into findings at the finish.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from usagewatch import registry
from usagewatch.contracts import Contract, as_number, in_force
from usagewatch.customers import canonical_tenant_id
from usagewatch.model import Number, Period, Tenant, UsageRecord, Window
from usagewatch.rules import Finding, RulesDocument
from usagewatch.store.interface import BillingReader
from usagewatch.stored import AlertState

UNDER_BILLED: Final = "under_billed"
UNMAPPED_TENANT: Final = "unmapped_tenant"
TENANT_OVERLAP: Final = "tenant_overlap"
BILLING_RULES: Final = (UNDER_BILLED, UNMAPPED_TENANT, TENANT_OVERLAP)
CUSTOMER_PREFIX: Final = "customer:"
"""An under_billed alert's `tenant_id` is the customer's, prefixed: its numbers are the sum of its tenants."""


Elsewhere = Callable[[Sequence[str]], dict[str, list[str]]]
"""Tenant ids -> the other accounts of the vendor (sorted) that store a reading of them this period."""


def customer_tenant_id(customer_id: str) -> str:
    return f"{CUSTOMER_PREFIX}{customer_id}"


@dataclass
class BillingView:
    """What one account's run knows of customers and contracts, and what it has summed so far."""

    vendor: str
    account_id: str
    period: Period
    owners: dict[str, str]
    """tenant id -> customer id, for this account's mapped tenants."""
    shared: frozenset[str]
    """Customers with tenants of this vendor in other accounts too: the monthly reconciliation judges them."""
    contracts: dict[tuple[str, str], Contract]
    """(customer id, metric) -> the contract in force this period, for this vendor."""
    active: bool
    """Whether the operator maps this vendor's tenants at all (no mapping: no unmapped alerts)."""
    ignored: frozenset[str] = frozenset()
    """Tenant ids (canonical_tenant_id) of this account nobody bills on purpose: never alerted as unmapped."""
    used: dict[tuple[str, str], tuple[Number, str]] = field(default_factory=dict)
    """(customer, metric) -> [sum, unit] over the customer's tenants read this run."""
    unmapped: dict[str, UsageRecord] = field(default_factory=dict)
    mapped_elsewhere: dict[str, str] = field(default_factory=dict)
    """tenant id -> the first other account of the vendor that maps it."""
    elsewhere: Elsewhere | None = None
    overlap: dict[str, tuple[UsageRecord, str]] = field(default_factory=dict)
    """tenant id -> (its record, the account billing counts it through), when that is another account."""
    seen: set[str] = field(default_factory=set)

    def observe(self, record: UsageRecord) -> None:
        if not record.tenant.billed or str(record.period) != str(self.period):
            return
        self.seen.add(record.tenant_id)
        owner = self.owners.get(record.tenant_id)
        other = self.mapped_elsewhere.get(record.tenant_id)
        if other is not None and (owner is None or other < self.account_id):
            held_overlap = self.overlap.get(record.tenant_id)
            if held_overlap is None or _preferred(record, held_overlap[0]):
                self.overlap[record.tenant_id] = (record, other)
            return
        if owner is None:
            if (
                self.active
                and record.value > 0
                and canonical_tenant_id(self.vendor, record.tenant_id) not in self.ignored
            ):
                held = self.unmapped.get(record.tenant_id)
                if held is None or _preferred(record, held):
                    self.unmapped[record.tenant_id] = record
            return
        key = (owner, record.metric)
        if key in self.contracts and owner not in self.shared:
            held_sum = self.used.get(key)
            self.used[key] = (record.value + (held_sum[0] if held_sum else 0), record.unit)

    def findings(
        self, document: RulesDocument, failed_tenants: Iterable[str], names: Callable[[], Mapping[str, str]]
    ) -> tuple[list[Finding], set[str]]:
        """This run's billing findings, and the customers it could not judge (a tenant of theirs failed).

        `names` (customer id -> name) is called only if a customer is under-billed."""
        rules = document.rules
        failed = set(failed_tenants)
        failed_owners = {self.owners[t] for t in failed if t in self.owners}
        if failed:
            # A listing with failures may hide a customer's tenants: its sum is not the whole, so not judged.
            failed_owners |= {c for t, c in self.owners.items() if t not in self.seen}
        self._move_shared_unmapped()
        out: list[Finding] = []
        if rules.unmapped_tenant.enabled:
            for record in self.unmapped.values():
                out.append(Finding(record, UNMAPPED_TENANT, rules.unmapped_tenant.severity, 0, None))
        if rules.tenant_overlap.enabled:
            for tenant_id, (record, _) in sorted(self.overlap.items()):
                owner = self.owners.get(tenant_id)
                out.append(Finding(record, TENANT_OVERLAP, rules.tenant_overlap.severity, 0, None, owner))
        if rules.under_billed.enabled:
            window = Window.month(self.period)
            known: Mapping[str, str] | None = None
            for (customer, metric), (used, unit) in sorted(self.used.items()):
                if customer in failed_owners:
                    continue
                contract = self.contracts[(customer, metric)]
                quantity = as_number(contract.quantity)
                if used <= quantity:
                    continue
                if known is None:
                    known = names()
                record = UsageRecord(
                    vendor=self.vendor,
                    account_id=self.account_id,
                    tenant=Tenant(customer_tenant_id(customer), known.get(customer, customer)),
                    metric=metric,
                    value=used,
                    unit=unit,
                    window=window,
                    quota=quantity,
                )
                out.append(
                    Finding(
                        record,
                        UNDER_BILLED,
                        rules.under_billed.severity,
                        quantity,
                        quantity,
                        customer,
                    )
                )
        return out, failed_owners

    def _move_shared_unmapped(self) -> None:
        """An unmapped tenant that an account sorting before this one also stores is that account's to call
        unmapped: here it is an overlap."""
        if self.elsewhere is None or not self.unmapped:
            return
        for tenant_id, accounts in self.elsewhere(sorted(self.unmapped)).items():
            first = min(accounts, default=None)
            if first is not None and first < self.account_id and tenant_id in self.unmapped:
                self.overlap[tenant_id] = (self.unmapped.pop(tenant_id), first)

    def judged(self, failed_owners: set[str], open_states: Iterable[AlertState]) -> set[tuple[str, str, str]]:
        """(tenant id, metric, period) of every customer reading this run stands for, firing or not.

        An open under_billed alert whose contract or mapping is gone is judged too, so it resolves.
        """
        period = str(self.period)
        judged = {(customer_tenant_id(customer), metric, period) for customer, metric in self.contracts}
        judged |= {
            (s.tenant_id, s.metric, s.period) for s in open_states if s.rule == UNDER_BILLED and s.period == period
        }
        skipped = {customer_tenant_id(c) for c in failed_owners | self.shared}
        return {key for key in judged if key[0] not in skipped}

    def with_customers(self, findings: Iterable[Finding]) -> list[Finding]:
        """Every finding on a mapped tenant names its customer (the `customer_id` of the event)."""
        return [
            replace(f, customer_id=self.owners[f.record.tenant_id])
            if f.customer_id is None and f.record.tenant_id in self.owners
            else f
            for f in findings
        ]


def _preferred(record: UsageRecord, held: UsageRecord) -> bool:
    """The record an unmapped tenant's alert hangs on: the vendor's billed metric, else the first by name."""
    billed = registry.vendor(record.vendor).billed_metrics

    def rank(r: UsageRecord) -> tuple[int, str]:
        return (billed.index(r.metric) if r.metric in billed else len(billed), r.metric)

    return rank(record) < rank(held)


def load_view(reader: BillingReader, vendor: str, account_id: str, period: Period) -> BillingView:
    """One paged Query for the accounts, one per account of this vendor for its mappings, one for contracts."""
    accounts = sorted(a for v, a in reader.accounts() if v == vendor)
    owners: dict[str, str] = {}
    elsewhere: set[str] = set()
    mapped_elsewhere: dict[str, str] = {}
    for other in accounts:
        for mapping in reader.account_mappings(vendor, other):
            if other == account_id:
                owners[mapping.tenant.tenant_id] = mapping.customer_id
            else:
                elsewhere.add(mapping.customer_id)
                mapped_elsewhere.setdefault(mapping.tenant.tenant_id, other)
    mine = set(owners.values())
    contracts = {
        (c.customer_id, c.metric): c
        for c in in_force(reader.contracts(vendor), period).values()
        if c.customer_id in mine
    }
    return BillingView(
        vendor=vendor,
        account_id=account_id,
        period=period,
        owners=owners,
        shared=frozenset(mine & elsewhere),
        contracts=contracts,
        active=bool(accounts),
        mapped_elsewhere=mapped_elsewhere,
        elsewhere=_stored_elsewhere(reader, vendor, [a for a in accounts if a != account_id], period),
        ignored=frozenset(
            canonical_tenant_id(vendor, t.tenant_id)
            for t in (reader.ignored() if accounts else ())
            if (t.vendor, t.account_id) == (vendor, account_id)
        ),
    )


def _stored_elsewhere(reader: BillingReader, vendor: str, others: list[str], period: Period) -> Elsewhere | None:
    """Keyed reads of the few unmapped tenants in the vendor's other accounts, when the reader sits on the table."""
    holding = getattr(getattr(reader, "store", None), "accounts_holding", None)
    if holding is None or not others:
        return None
    return lambda tenant_ids: holding(vendor, others, str(period), tenant_ids)
