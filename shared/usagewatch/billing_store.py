"""Customers, tenant mappings and contracts in the usage table (docs/data-model.md, "Billing items").

customer  pk CUSTOMERS                    sk C#{customer_id}
account   pk CUSTOMERS                    sk A#{vendor}#{account}   (an account some tenant of it is mapped in)
mapping   pk BILLING#{vendor}#{account}   sk MAP#{tenant}           -> customer_id
contract  pk BILLING#{vendor}             sk CONTRACT#{customer}#{metric}#{effective_from}

A collector reads its account's mappings with one paged Query and its vendor's contracts with another, never
one read per tenant. Imports write only what differs from what is stored, so a file imported twice writes
nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from usagewatch.contracts import Contract
from usagewatch.customers import Customer, TenantMapping, TenantRef
from usagewatch.model import Period
from usagewatch.store import DynamoStore, key_part

CUSTOMERS_PK = "CUSTOMERS"


@dataclass(frozen=True, slots=True)
class ImportResult:
    written: int
    unchanged: int


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
    }


def _same(stored: dict[str, Any] | None, wanted: dict[str, object]) -> bool:
    if stored is None:
        return False
    return all(stored.get(k) == v for k, v in wanted.items() if v is not None) and not any(
        stored.get(k) is not None for k, v in wanted.items() if v is None
    )


class BillingStore:
    def __init__(self, store: DynamoStore) -> None:
        self.store = store

    # --- reads --------------------------------------------------------------------------------

    def _items(self, pk: str, prefix: str = "") -> list[dict[str, Any]]:
        if not prefix:
            return list(
                self.store._query(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": pk}})
            )
        return list(
            self.store._query(
                KeyConditionExpression="pk = :pk AND begins_with(sk, :p)",
                ExpressionAttributeValues={":pk": {"S": pk}, ":p": {"S": prefix}},
            )
        )

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
        return [
            Contract(
                customer_id=str(i["customer_id"]),
                vendor=vendor,
                metric=str(i["metric"]),
                quantity=i["quantity"],
                effective_from=Period.parse(str(i["effective_from"])),
                effective_to=Period.parse(str(i["effective_to"])) if i.get("effective_to") else None,
                agreement=i.get("agreement"),
                unit_price=float(i["unit_price"]) if i.get("unit_price") is not None else None,
            )
            for i in self._items(f"BILLING#{vendor}", "CONTRACT#")
        ]

    # --- imports ------------------------------------------------------------------------------

    def _write_changed(self, wanted: Iterable[dict[str, object]], stored: Iterable[dict[str, Any]]) -> ImportResult:
        held = {(str(i["pk"]), str(i["sk"])): i for i in stored}
        written = unchanged = 0
        for item in wanted:
            if _same(held.get((str(item["pk"]), str(item["sk"]))), item):
                unchanged += 1
                continue
            self.store.queue_raw({k: v for k, v in item.items() if v is not None})
            written += 1
        self.store.flush()
        return ImportResult(written, unchanged)

    def import_mappings(self, customers: Iterable[Customer], mappings: Iterable[TenantMapping]) -> ImportResult:
        """Customers and mappings, added or changed; nothing stored is deleted."""
        mappings = list(mappings)
        accounts = sorted({(m.tenant.vendor, m.tenant.account_id) for m in mappings})
        stored = self._items(CUSTOMERS_PK)
        for vendor, account in accounts:
            stored += self._items(_mapping_pk(vendor, account), "MAP#")
        wanted = [_customer_item(c) for c in customers]
        wanted += [_account_item(v, a) for v, a in accounts]
        wanted += [_mapping_item(m) for m in mappings]
        return self._write_changed(wanted, stored)

    def import_contracts(self, contracts: Iterable[Contract]) -> ImportResult:
        contracts = list(contracts)
        stored: list[dict[str, Any]] = []
        for vendor in sorted({c.vendor for c in contracts}):
            stored += self._items(f"BILLING#{vendor}", "CONTRACT#")
        return self._write_changed([_contract_item(c) for c in contracts], stored)
