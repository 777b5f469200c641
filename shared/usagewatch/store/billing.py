"""Customers, tenant mappings, contracts and ignored tenants in the usage table (docs/data-model.md, "Billing items").

customer  pk CUSTOMERS                    sk C#{customer_id}
account   pk CUSTOMERS                    sk A#{vendor}#{account}   (an account some tenant of it is mapped in)
mapping   pk BILLING#{vendor}#{account}   sk MAP#{tenant}           -> customer_id
contract  pk BILLING#{vendor}             sk CONTRACT#{customer}#{metric}#{effective_from}
ignored   pk BILLING#IGNORED              sk {vendor}#{account}#{tenant}

A collector reads its account's mappings with one paged Query and its vendor's contracts with another, never
one read per tenant. Every change goes through billing_commit (all or nothing, one at a time) and writes only
the items that differ from what is in force, so a file imported twice writes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from usagewatch.contracts import Contract
from usagewatch.customers import Customer, TenantMapping, TenantRef, canonical_tenant_id
from usagewatch.imports import ImportRejectedError
from usagewatch.model import Period
from usagewatch.store.billing_commit import BillingCommits, Change, Head, content
from usagewatch.store.dynamo import DynamoStore
from usagewatch.store.table import key_part

CUSTOMERS_PK = "CUSTOMERS"
IGNORED_PK = "BILLING#IGNORED"


@dataclass(frozen=True, slots=True)
class ImportResult:
    written: int
    unchanged: int
    moved: list[tuple[TenantRef, str, str]] = field(default_factory=list)
    """(tenant, customer before, customer now) for every tenant the change moved between customers."""


def _mapping_pk(vendor: str, account_id: str) -> str:
    return f"BILLING#{vendor}#{key_part(account_id)}"


def _contract_sk(c: Contract) -> str:
    return f"CONTRACT#{c.customer_id}#{c.metric}#{c.effective_from}"


def _customer_item(c: Customer) -> dict[str, object]:
    return {
        "pk": CUSTOMERS_PK,
        "sk": f"C#{c.customer_id}",
        "record_type": "customer",
        "customer_id": c.customer_id,
        "name": c.name,
        "external_ref": c.external_ref,
    }


def _mapping_item(m: TenantMapping) -> dict[str, object]:
    t = m.tenant
    return {
        "pk": _mapping_pk(t.vendor, t.account_id),
        "sk": f"MAP#{key_part(t.tenant_id)}",
        "record_type": "mapping",
        "vendor": t.vendor,
        "account_id": t.account_id,
        "tenant_id": t.tenant_id,
        "customer_id": m.customer_id,
    }


def _account_item(vendor: str, account_id: str) -> dict[str, object]:
    return {
        "pk": CUSTOMERS_PK,
        "sk": f"A#{vendor}#{key_part(account_id)}",
        "record_type": "billing_account",
        "vendor": vendor,
        "account_id": account_id,
    }


def _ignored_item(t: TenantRef) -> dict[str, object]:
    return {
        "pk": IGNORED_PK,
        "sk": f"{t.vendor}#{key_part(t.account_id)}#{key_part(t.tenant_id)}",
        "record_type": "ignored_tenant",
        "vendor": t.vendor,
        "account_id": t.account_id,
        "tenant_id": t.tenant_id,
    }


def _contract_item(c: Contract) -> dict[str, object]:
    return {
        "pk": f"BILLING#{c.vendor}",
        "sk": _contract_sk(c),
        "record_type": "contract",
        "customer_id": c.customer_id,
        "vendor": c.vendor,
        "metric": c.metric,
        "quantity": c.quantity,
        "effective_from": str(c.effective_from),
        "effective_to": str(c.effective_to) if c.effective_to else None,
        "agreement": c.agreement,
        "unit_price": c.unit_price,
        "amended_at": c.amended_at,
        "psa_line": c.psa_line,
    }


def _contract(vendor: str, i: dict[str, Any]) -> Contract:
    price = i.get("unit_price")
    return Contract(
        customer_id=str(i["customer_id"]),
        vendor=vendor,
        metric=str(i["metric"]),
        quantity=Decimal(i["quantity"]),
        effective_from=Period.parse(str(i["effective_from"])),
        effective_to=Period.parse(str(i["effective_to"])) if i.get("effective_to") else None,
        agreement=i.get("agreement"),
        unit_price=Decimal(price) if price is not None else None,
        amended_at=i.get("amended_at"),
        psa_line=i.get("psa_line"),
    )


def _same(stored: dict[str, Any] | None, wanted: dict[str, object]) -> bool:
    if stored is None:
        return False
    return all(stored.get(k) == v for k, v in wanted.items() if v is not None) and not any(
        stored.get(k) is not None for k, v in wanted.items() if v is None
    )


def _clean(item: dict[str, object]) -> dict[str, object]:
    return {k: v for k, v in item.items() if v is not None}


def _not_owned(
    stored: Sequence[Contract], incoming: list[Contract], what: str, lines: Mapping[tuple[str, str, str, Period], int]
) -> list[Contract]:
    """`incoming` less the versions that repeat a synced one unchanged; refused if any changes a key from the
    first month the sync bills it on (earlier months stay the file's to change)."""
    at = {(c.key, c.effective_from): c for c in stored}
    owned: dict[tuple[str, str, str], Period] = {}
    for c in stored:
        if c.psa_line and (c.key not in owned or c.effective_from < owned[c.key]):
            owned[c.key] = c.effective_from  # the first month the sync bills it: earlier months stay the file's
    kept, problems = [], []
    for c in incoming:
        same = at.get((c.key, c.effective_from))
        if same is not None and replace(same, psa_line=None, amended_at=None) == replace(c, amended_at=None):
            if not same.psa_line:
                kept.append(c)  # unchanged: written as nothing
            continue
        if c.key in owned and not c.psa_line and c.effective_from >= owned[c.key]:
            line = lines.get((*c.key, c.effective_from), 0)
            problems.append((line, f"{' '.join(c.key)} is read from the PSA (psa sync): change it there"))
        else:
            kept.append(c)
    if problems:
        raise ImportRejectedError(what, problems)
    return kept


class BillingStore:
    def __init__(self, store: DynamoStore) -> None:
        self.store = store
        self.commits = BillingCommits(store)

    # --- reads --------------------------------------------------------------------------------

    def _items(self, pk: str, prefix: str = "") -> list[dict[str, Any]]:
        """The items of one partition as readers see them (committed changes only): one paged Query."""
        return self.commits.resolve(self.commits.raw_query(pk, prefix))

    def customers(self) -> list[Customer]:
        return [
            Customer(str(i["customer_id"]), str(i["name"]), i.get("external_ref"))
            for i in self._items(CUSTOMERS_PK, "C#")
        ]

    def accounts(self) -> list[tuple[str, str]]:
        return [(str(i["vendor"]), str(i["account_id"])) for i in self._items(CUSTOMERS_PK, "A#")]

    def account_mappings(self, vendor: str, account_id: str) -> list[TenantMapping]:
        """The tenants of one vendor account that a customer owns: one paged Query."""
        return [
            TenantMapping(str(i["customer_id"]), TenantRef(vendor, account_id, str(i["tenant_id"])))
            for i in self._items(_mapping_pk(vendor, account_id), "MAP#")
        ]

    def mappings(self) -> list[TenantMapping]:
        return [m for vendor, account in self.accounts() for m in self.account_mappings(vendor, account)]

    def contracts(self, vendor: str) -> list[Contract]:
        """Every contract version of one vendor: one paged Query."""
        return [_contract(vendor, i) for i in self._items(f"BILLING#{vendor}", "CONTRACT#")]

    def ignored(self) -> set[TenantRef]:
        """Tenants nobody bills on purpose (`usagewatch customers ignore`): one paged Query."""
        return {TenantRef(str(i["vendor"]), str(i["account_id"]), str(i["tenant_id"])) for i in self._items(IGNORED_PK)}

    def interrupted(self) -> str | None:
        """A sentence when the last change of billing items never committed, else None."""
        return self.commits.head().interrupted()

    # --- changes ------------------------------------------------------------------------------

    def _raw(self, pk: str, prefix: str = "") -> dict[tuple[str, str], dict[str, Any]]:
        return {(str(i["pk"]), str(i["sk"])): i for i in self.commits.raw_query(pk, prefix)}

    def _seen(self, head: Head, raw: dict[tuple[str, str], dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
        """What readers see of `raw` under `head` (already settled: no committed marks are left)."""
        return {k: c for k, i in raw.items() if (c := content(i)) is not None}

    def _commit(
        self,
        head: Head,
        raw: dict[tuple[str, str], dict[str, Any]],
        wanted: Iterable[dict[str, object]],
        removed: Iterable[tuple[str, str]],
        what: str,
    ) -> tuple[int, int]:
        seen = self._seen(head, raw)
        changes: list[Change] = []
        unchanged = 0
        for item in wanted:
            key = (str(item["pk"]), str(item["sk"]))
            if _same(seen.get(key), item):
                unchanged += 1
                continue
            changes.append(Change(key, _clean(item), raw.get(key)))
        changes += [Change(key, None, raw.get(key)) for key in removed if key in seen]
        self.commits.apply(changes, what=what, base=head)
        return len(changes), unchanged

    def import_mappings(
        self,
        customers: Iterable[Customer],
        mappings: Iterable[TenantMapping],
        *,
        what: str = "a mapping import",
        new_customers: bool = False,
    ) -> ImportResult:
        """Customers and mappings, added or changed, all or nothing; nothing stored is deleted. With
        `new_customers`, refused (ImportRejectedError) if one of `customers` exists in the state it commits on."""
        customers = list(customers)
        mappings = self._as_stored(list(mappings))
        head = self.commits.settled_head()
        accounts = sorted({(m.tenant.vendor, m.tenant.account_id) for m in mappings})
        raw = self._raw(CUSTOMERS_PK)
        for vendor, account in accounts:
            raw.update(self._raw(_mapping_pk(vendor, account), "MAP#"))
        seen = self._seen(head, raw)
        if new_customers and (
            taken := [c.customer_id for c in customers if (CUSTOMERS_PK, f"C#{c.customer_id}") in seen]
        ):
            raise ImportRejectedError(what, [(0, f"customer_id: {cid!r} already exists") for cid in taken])
        moved = []
        for m in mappings:
            before = seen.get(
                (_mapping_pk(m.tenant.vendor, m.tenant.account_id), f"MAP#{key_part(m.tenant.tenant_id)}")
            )
            if before is not None and before.get("customer_id") != m.customer_id:
                moved.append((m.tenant, str(before["customer_id"]), m.customer_id))
        wanted = [_customer_item(c) for c in customers]
        wanted += [_account_item(v, a) for v, a in accounts]
        wanted += [_mapping_item(m) for m in mappings]
        written, unchanged = self._commit(head, raw, wanted, (), what)
        return ImportResult(written, unchanged, sorted(moved))

    def _as_stored(self, mappings: list[TenantMapping]) -> list[TenantMapping]:
        """Mappings whose tenant id names a mapped tenant in another spelling its vendor treats as the same
        (a Microsoft 365 GUID in upper case) take the stored spelling."""
        out = []
        known: dict[tuple[str, str], dict[str, str]] = {}
        for m in mappings:
            t = m.tenant
            if (t.vendor, t.account_id) not in known:
                known[(t.vendor, t.account_id)] = {
                    canonical_tenant_id(t.vendor, x.tenant.tenant_id): x.tenant.tenant_id
                    for x in self.account_mappings(t.vendor, t.account_id)
                }
            spelled = known[(t.vendor, t.account_id)].get(canonical_tenant_id(t.vendor, t.tenant_id), t.tenant_id)
            out.append(TenantMapping(m.customer_id, TenantRef(t.vendor, t.account_id, spelled)))
        return out

    def unmap(self, tenants: Sequence[TenantRef], *, what: str = "an unmap") -> tuple[ImportResult, list[TenantRef]]:
        """Remove the mappings of `tenants`, all or nothing; also returns the tenants that were not mapped."""
        head = self.commits.settled_head()
        raw: dict[tuple[str, str], dict[str, Any]] = {}
        for vendor, account in sorted({(t.vendor, t.account_id) for t in tenants}):
            raw.update(self._raw(_mapping_pk(vendor, account), "MAP#"))
        seen = self._seen(head, raw)
        by_id = {
            (str(i["vendor"]), str(i["account_id"]), canonical_tenant_id(str(i["vendor"]), str(i["tenant_id"]))): k
            for k, i in seen.items()
        }
        keys, missing = [], []
        for t in tenants:
            key = by_id.get((t.vendor, t.account_id, canonical_tenant_id(t.vendor, t.tenant_id)))
            if key is None:
                missing.append(t)
            else:
                keys.append(key)
        if missing:
            return ImportResult(0, 0), missing
        written, _ = self._commit(head, raw, (), keys, what)
        return ImportResult(written, 0), []

    def set_ignored(self, tenants: Sequence[TenantRef], *, ignore: bool, what: str) -> ImportResult:
        head = self.commits.settled_head()
        raw = self._raw(IGNORED_PK)
        items = [_ignored_item(t) for t in tenants]
        if ignore:
            written, unchanged = self._commit(head, raw, items, (), what)
        else:
            keys = [(str(i["pk"]), str(i["sk"])) for i in items]
            written, unchanged = self._commit(head, raw, (), keys, what)
            unchanged = len(tenants) - written
        return ImportResult(written, unchanged)

    def stored_contracts(self, vendors: Iterable[str]) -> tuple[Head, dict[tuple[str, str], dict[str, Any]]]:
        """The head and the raw contract items of `vendors`, for a change computed from them."""
        head = self.commits.settled_head()
        raw: dict[tuple[str, str], dict[str, Any]] = {}
        for vendor in sorted(set(vendors)):
            raw.update(self._raw(f"BILLING#{vendor}", "CONTRACT#"))
        return head, raw

    def contracts_in(self, head: Head, raw: dict[tuple[str, str], dict[str, Any]]) -> list[Contract]:
        return [_contract(str(i["vendor"]), i) for i in self._seen(head, raw).values()]

    def import_contracts(
        self,
        contracts: Iterable[Contract],
        *,
        what: str = "a contracts import",
        stored: tuple[Head, dict[tuple[str, str], dict[str, Any]]] | None = None,
        lines: Mapping[tuple[str, str, str, Period], int] | None = None,
        sync: bool = False,
        removed: Iterable[Contract] = (),
    ) -> ImportResult:
        """Contract versions, added or changed, all or nothing. The history checks (contracts.check_history)
        are the caller's, on `stored` (read with `stored_contracts`) so they judge what this change replaces.
        Versions read from a PSA line (`psa_line`) belong to `psa sync`: unless `sync`, a change of one is refused
        (ImportRejectedError with the file's `lines`) and a line repeating one unchanged is left as stored."""
        contracts = list(contracts)
        head, raw = stored if stored is not None else self.stored_contracts(c.vendor for c in contracts)
        if not sync:
            contracts = _not_owned(self.contracts_in(head, raw), contracts, what, lines or {})
        gone = [(f"BILLING#{c.vendor}", _contract_sk(c)) for c in removed] if sync else []
        written, unchanged = self._commit(head, raw, [_contract_item(c) for c in contracts], gone, what)
        return ImportResult(written, unchanged)
