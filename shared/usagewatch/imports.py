"""The operator's CSV files, read all or nothing: every bad line is reported by its number and nothing is
taken from a file that has one.

    mappings:  customer_id,customer_name,vendor,account_id,tenant_id[,external_ref]
    contracts: customer_id,vendor,metric,quantity,effective_from[,effective_to,agreement,unit_price]
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import re
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from usagewatch.contracts import Contract
from usagewatch.customers import Customer, TenantMapping, TenantRef, canonical_tenant_id, check_customer_id
from usagewatch.errors import ConfigError
from usagewatch.model import Period
from usagewatch.text import clean_name

MAPPING_COLUMNS: Final = ("customer_id", "customer_name", "vendor", "account_id", "tenant_id")
# The columns `customers suggest --csv` adds are accepted and ignored, so its file imports as it is.
MAPPING_OPTIONAL: Final = ("external_ref", "tenant_name", "score", "method", "new_customer")
CONTRACT_COLUMNS: Final = ("customer_id", "vendor", "metric", "quantity", "effective_from")
CONTRACT_OPTIONAL: Final = ("effective_to", "agreement", "unit_price")
MAX_LINES: Final = 200_000
_METRIC: Final = re.compile(r"^[a-z0-9_]+$")
MAX_NUMBER: Final = Decimal(10) ** 12
"""The largest quantity or unit price a file may give."""
MAX_PLACES: Final = 6
"""The most digits after the decimal point a quantity or unit price may have."""
_DECIMAL: Final = re.compile(r"[0-9]+(?:\.[0-9]+)?")


class ImportRejectedError(ConfigError):
    """A file with at least one bad line: `problems` lists each as (line number, message)."""

    def __init__(self, source: str, problems: Sequence[tuple[int, str]]) -> None:
        self.problems = list(problems)
        shown = "\n".join(f"  line {n}: {msg}" for n, msg in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(f"{source}: {len(self.problems)} bad line(s), nothing imported\n{shown}{more}")


@dataclass(frozen=True, slots=True)
class MappingFile:
    customers: list[Customer]
    mappings: list[TenantMapping]
    lines: dict[TenantRef, int] = dataclasses.field(default_factory=dict)
    """The line each mapping was read from."""


def _rows(
    text: str, required: Sequence[str], optional: Sequence[str], source: str
) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), skipinitialspace=True, strict=True)
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    missing = [c for c in required if c not in header]
    unknown = [h for h in header if h not in (*required, *optional)]
    if missing or unknown:
        says = [f"missing column(s) {', '.join(missing)}"] if missing else []
        says += [f"unknown column(s) {', '.join(unknown)}"] if unknown else []
        raise ImportRejectedError(source, [(1, "; ".join(says) + f" (expected {','.join(required)}[,...])")])
    reader.fieldnames = header
    try:
        for row in reader:
            if reader.line_num > MAX_LINES:
                raise ImportRejectedError(source, [(reader.line_num, f"more than {MAX_LINES} lines: split the file")])
            extra = row.pop(None, None)
            cells = {k: (v or "").strip() for k, v in row.items() if k is not None}
            if extra:
                cells["__extra__"] = ",".join(extra)
            if any(cells.values()):
                yield reader.line_num, cells
    except csv.Error as exc:
        raise ImportRejectedError(source, [(reader.line_num, f"not valid CSV: {exc}")]) from exc


def parse_mappings(text: str, *, vendors: Collection[str], source: str = "mapping file") -> MappingFile:
    """Customers and the tenants they own. A tenant may belong to one customer only; a customer's name and
    external reference must agree on every line that names it."""
    problems: list[tuple[int, str]] = []
    customers: dict[str, tuple[int, Customer]] = {}
    owners: dict[TenantRef, tuple[int, str]] = {}
    spelled: dict[TenantRef, TenantRef] = {}
    mappings: list[TenantMapping] = []
    for line, cells in _rows(text, MAPPING_COLUMNS, MAPPING_OPTIONAL, source):
        says: list[str] = []
        if "__extra__" in cells:
            says.append("more cells than columns")
        cid, name = cells["customer_id"], clean_name(cells["customer_name"])
        if bad := check_customer_id(cid):
            says.append(bad)
        if not name:
            says.append("customer_name: empty")
        if cells["vendor"] not in vendors:
            says.append(f"vendor: unknown {cells['vendor']!r} (one of {', '.join(sorted(vendors))})")
        for field in ("account_id", "tenant_id"):
            if not cells[field]:
                says.append(f"{field}: empty")
        if says:
            problems.append((line, "; ".join(says)))
            continue
        customer = Customer(cid, name, cells.get("external_ref") or None)
        if cid in customers and customers[cid][1] != customer:
            first = customers[cid][0]
            problems.append((line, f"customer {cid}: name or external_ref differs from line {first}"))
            continue
        customers.setdefault(cid, (line, customer))
        ref = TenantRef(cells["vendor"], cells["account_id"], cells["tenant_id"])
        same = TenantRef(ref.vendor, ref.account_id, canonical_tenant_id(ref.vendor, ref.tenant_id))
        if same in spelled:
            ref = spelled[same]
        spelled.setdefault(same, ref)
        if ref in owners:
            first, owner = owners[ref]
            problems.append((line, f"tenant {ref}: already mapped on line {first} (to {owner})"))
            continue
        owners[ref] = (line, cid)
        mappings.append(TenantMapping(cid, ref))
    if problems:
        raise ImportRejectedError(source, problems)
    lines = {ref: line for ref, (line, _) in owners.items()}
    return MappingFile([c for _, c in customers.values()], mappings, lines)


def _period(value: str, field: str) -> tuple[Period | None, str | None]:
    try:
        return Period.parse(value, field=field), None
    except ConfigError as exc:
        return None, str(exc)


def parse_number(value: str, field: str) -> tuple[Decimal | None, str | None]:
    """An ASCII decimal number from 0 to MAX_NUMBER with at most MAX_PLACES decimals, read exactly; anything
    else (an exponent, `_`, a sign, a comma, digits of other scripts) is refused with what is wrong."""
    if not _DECIMAL.fullmatch(value) or not value.isascii():
        return None, (
            f"{field}: not a plain decimal number (digits 0-9 and at most one '.', no exponent, sign or"
            f" separators): {value!r}"
        )
    number = Decimal(value)
    places = len(value.partition(".")[2])
    if places > MAX_PLACES:
        return None, f"{field}: at most {MAX_PLACES} decimal places, got {places}: {value!r}"
    if number > MAX_NUMBER:
        return None, f"{field}: at most {MAX_NUMBER:,} (10^12), got {value!r}"
    return number, None


def parse_contracts(
    text: str,
    *,
    customers: Collection[str],
    vendors: Collection[str],
    metric_known: Callable[[str, str], bool],
    source: str = "contracts file",
) -> list[Contract]:
    """Contract versions (see parse_contract_lines)."""
    lines = parse_contract_lines(text, customers=customers, vendors=vendors, metric_known=metric_known, source=source)
    return [c for _, c in lines]


def parse_contract_lines(
    text: str,
    *,
    customers: Collection[str],
    vendors: Collection[str],
    metric_known: Callable[[str, str], bool],
    source: str = "contracts file",
) -> list[tuple[int, Contract]]:
    """Contract versions with the line each was read from. The key is (customer, vendor, metric,
    effective_from); two versions of one (customer, vendor, metric) may not overlap."""
    problems: list[tuple[int, str]] = []
    seen: dict[tuple[str, str, str, Period], int] = {}
    contracts: list[tuple[int, Contract]] = []
    for line, cells in _rows(text, CONTRACT_COLUMNS, CONTRACT_OPTIONAL, source):
        says: list[str] = ["more cells than columns"] if "__extra__" in cells else []
        cid, vendor, metric = cells["customer_id"], cells["vendor"], cells["metric"]
        if cid not in customers:
            says.append(f"customer_id: unknown customer {cid!r} (import the mapping file first)")
        if vendor not in vendors:
            says.append(f"vendor: unknown {vendor!r} (one of {', '.join(sorted(vendors))})")
        elif not _METRIC.match(metric) or not metric_known(vendor, metric):
            says.append(f"metric: {vendor} has no metric {metric!r}")
        quantity, bad = parse_number(cells["quantity"], "quantity")
        says += [bad] if bad else []
        start, bad = _period(cells["effective_from"], "effective_from")
        says += [bad] if bad else []
        end: Period | None = None
        if cells.get("effective_to"):
            end, bad = _period(cells["effective_to"], "effective_to")
            says += [bad] if bad else []
            if start and end and end < start:
                says.append(f"effective_to {end} is before effective_from {start}")
        price: Decimal | None = None
        if cells.get("unit_price"):
            price, bad = parse_number(cells["unit_price"], "unit_price")
            says += [bad] if bad else []
        if says or quantity is None or start is None:
            problems.append((line, "; ".join(says)))
            continue
        key = (cid, vendor, metric, start)
        if key in seen:
            problems.append((line, f"duplicate of line {seen[key]} ({cid} {vendor} {metric} from {start})"))
            continue
        seen[key] = line
        contract = Contract(cid, vendor, metric, quantity, start, end, cells.get("agreement") or None, price)
        contracts.append((line, contract))
    problems += _overlaps(contracts)
    if problems:
        raise ImportRejectedError(source, sorted(problems))
    return contracts


def _overlaps(contracts: Sequence[tuple[int, Contract]]) -> list[tuple[int, str]]:
    """A version that runs into the next one's start (an explicit `effective_to` at or after it)."""
    by_key: dict[tuple[str, str, str], list[tuple[int, Contract]]] = {}
    for line, contract in contracts:
        by_key.setdefault(contract.key, []).append((line, contract))
    problems = []
    for versions in by_key.values():
        versions.sort(key=lambda lc: lc[1].effective_from)
        for (line, current), (next_line, following) in itertools.pairwise(versions):
            if current.effective_to is not None and current.effective_to >= following.effective_from:
                problems.append((next_line, f"overlaps line {line}: it runs to {current.effective_to}"))
    return problems
