"""Assigning an unmapped tenant to a customer the operator picks, and creating a customer by hand: both
written as `customers import` writes a mapping file (views.store_mappings) and recorded in the change trail."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from rapidfuzz import fuzz, process

from usagewatch.console import views
from usagewatch.console.access import Caller
from usagewatch.customers import Customer, NamedTenant, TenantRef, check_customer_id, normalise_name
from usagewatch.imports import ImportRejectedError
from usagewatch.model import Period
from usagewatch.store import DynamoStore, audit
from usagewatch.store.billing import BillingStore, ImportResult
from usagewatch.text import clean_name

SHOWN: Final = 10
"""The most customers a search answers."""
MIN_SCORE: Final = 60.0
"""rapidfuzz's token_sort_ratio a name needs to be found fuzzily (a search is looser than a suggestion's 85)."""
MAX_QUERY: Final = 100


def search(customers: Sequence[Customer], query: str, limit: int = SHOWN) -> list[Customer]:
    """Customers by name as `customers suggest` compares names (normalised: no accents, case, punctuation or
    legal form): an exact name first, then names or ids starting with or containing what was typed, then fuzzy
    matches (rapidfuzz token_sort_ratio at least MIN_SCORE), best first; at most `limit`."""
    wanted = normalise_name(query[:MAX_QUERY])
    if not wanted:
        return []
    keys = [normalise_name(c.name) for c in customers]
    ranked: list[tuple[int, float, str, int]] = []
    for i, (c, key) in enumerate(zip(customers, keys, strict=True)):
        ident = c.customer_id.casefold()
        if key == wanted:
            ranked.append((0, 0.0, key, i))
        elif key.startswith(wanted) or ident.startswith(wanted):
            ranked.append((1, 0.0, key, i))
        elif wanted in key or wanted in ident:
            ranked.append((2, 0.0, key, i))
    found = {i for *_, i in ranked}
    if len(ranked) < limit:
        close = process.extract(wanted, keys, scorer=fuzz.token_sort_ratio, score_cutoff=MIN_SCORE, limit=limit * 2)
        ranked += [(3, -score, keys[i], i) for _, score, i in close if i not in found]
    return [customers[i] for *_, i in sorted(ranked)[:limit]]


@dataclass(frozen=True, slots=True)
class CustomerForm:
    """What the new-customer form sent; kept as typed so a refused form comes back as it was."""

    customer_id: str = ""
    name: str = ""
    external_ref: str = ""
    tenant: TenantRef | None = None
    tenant_name: str = ""
    map_tenant: bool = True
    """Map `tenant` to the new customer (the form's box); unticked, the customer is created alone."""
    problems: list[str] = field(default_factory=list)


class FormRefusedError(Exception):
    """The form had bad fields: shown on the form, nothing written."""

    def __init__(self, form: CustomerForm) -> None:
        super().__init__("; ".join(form.problems))
        self.form = form


def _unmapped(store: DynamoStore, period: Period, tenant: TenantRef) -> NamedTenant | None:
    tenants, _ = views.unmapped_tenants_of(store, period)
    return next((t for t in tenants if views.same_tenant(t.tenant, tenant)), None)


def tenant_form(store: DynamoStore, period: Period, tenant: TenantRef | None) -> CustomerForm:
    """The new-customer form, prefilled from an unmapped tenant's name (and the id `customers suggest` would
    propose for it)."""
    from usagewatch.customers import customer_id_for

    named = _unmapped(store, period, tenant) if tenant else None
    if named is None:
        return CustomerForm()
    name = clean_name(named.name)
    taken = {c.customer_id for c in BillingStore(store).customers()}
    wanted = proposed = customer_id_for(name)
    n = 1
    while proposed in taken:  # as `customers suggest` numbers a new customer whose id is taken
        n += 1
        proposed = f"{wanted}-{n}"
    return CustomerForm(proposed, name, "", named.tenant, name)


def _moved(result: ImportResult) -> str:
    return "".join(f" Moved {t}: {before} -> {after}." for t, before, after in result.moved)


def assign(store: DynamoStore, who: Caller, period: Period, tenant: TenantRef, customer_id: str) -> str:
    """Map one unmapped tenant to an existing customer (the operator's pick, not the suggestion)."""
    who.require_operator()
    customer = next((c for c in BillingStore(store).customers() if c.customer_id == customer_id), None)
    if customer is None:
        raise ValueError(f"no customer {customer_id!r}: create it first")
    named = _unmapped(store, period, tenant)
    if named is None:
        return f"Nothing assigned: {tenant} is no longer unmapped."
    result = views.store_mappings(
        store, [(customer, named.tenant)], what=f"console assign ({who.username})", source="assigned tenant"
    )
    after = f"{customer.customer_id} ({customer.name})"
    audit.record(store, [audit.entry(who.username, "assign tenant", str(named.tenant), "unmapped", after)])
    shown = clean_name(named.name) or str(named.tenant)
    return f"Assigned {shown} to {customer.name}: {result.written} item(s) written.{_moved(result)}"


def _problems(form: CustomerForm, store: DynamoStore, period: Period) -> tuple[list[str], NamedTenant | None]:
    """What is wrong with the form, in the words an import line gets."""
    says = [bad] if (bad := check_customer_id(form.customer_id)) else []
    if not clean_name(form.name):
        says.append("customer_name: empty")
    if any(c.customer_id == form.customer_id for c in BillingStore(store).customers()):
        says.append(f"customer_id: {form.customer_id!r} already exists")
    named = _unmapped(store, period, form.tenant) if form.tenant and form.map_tenant else None
    if form.tenant and form.map_tenant and named is None:
        says.append(f"tenant {form.tenant}: no longer unmapped in {period}")
    return says, named


def create(store: DynamoStore, who: Caller, period: Period, form: CustomerForm) -> str:
    """A new customer, and the tenant of the form mapped to it when one is given, in one all-or-nothing change;
    refused (FormRefusedError) with the import's own words for a bad field, an id that exists or a tenant that
    is no longer unmapped."""
    who.require_operator()
    says, named = _problems(form, store, period)
    if says:
        raise FormRefusedError(replace(form, problems=says))
    customer = Customer(form.customer_id, clean_name(form.name), form.external_ref.strip() or None)
    rows = [(customer, named.tenant)] if named else []
    what = f"console create customer ({who.username})"
    try:
        if rows:
            views.store_mappings(store, rows, what=what, source="new customer", new=True)
        else:
            BillingStore(store).import_mappings([customer], [], what=what, new_customers=True)
    except ImportRejectedError as exc:  # the line's own words, or an id created meanwhile
        raise FormRefusedError(replace(form, problems=[m for _, m in exc.problems])) from exc
    after = customer.name + (f" (external_ref {customer.external_ref})" if customer.external_ref else "")
    entries = [audit.entry(who.username, "create customer", customer.customer_id, "", after)]
    if named:
        owner = f"{customer.customer_id} ({customer.name})"
        entries.append(audit.entry(who.username, "map tenant", str(named.tenant), "unmapped", owner))
    audit.record(store, entries)
    mapped = f" and mapped {clean_name(named.name) or named.tenant} to it" if named else ""
    return f"Created customer {customer.name} ({customer.customer_id}){mapped}."
