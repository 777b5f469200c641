"""Pure Microsoft 365 mapping: Graph collection pages, delegatedAdminCustomer rows, subscribedSku -> records."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from usagewatch.errors import VendorDataError
from usagewatch.model import MAX_PLAUSIBLE_VALUE, Tenant, TenantUsage, UsageRecord, Window

GUID_RE: Final = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

VENDOR: Final = "microsoft365"
UNIT: Final = "seats"
MAX_METRIC_LENGTH: Final = 64
# The prepaid states besides `enabled` (the quota), kept as attributes under these names.
OTHER_PREPAID: Final = (("suspended", "suspended"), ("warning", "warning"), ("lockedOut", "locked_out"))
_NOT_ALNUM: Final = re.compile(r"[^a-z0-9]+")
_PLAIN_PART: Final = re.compile(r"^[A-Za-z0-9_]+$")


@dataclass(frozen=True, slots=True)
class GraphPage:
    """One page of a Graph collection: its `value` rows and the `@odata.nextLink` to the next one, if any."""

    rows: list[Any]
    next_link: str | None


def parse_page(payload: object, *, what: str) -> GraphPage:
    """A Graph collection response (`{"value": [...], "@odata.nextLink": "..."}`); VendorDataError names the field."""
    if not isinstance(payload, dict):
        raise VendorDataError(f"{what}: expected a JSON object, got {type(payload).__name__}")
    rows = payload.get("value")
    if not isinstance(rows, list):
        got = "nothing" if rows is None else type(rows).__name__
        raise VendorDataError(f"{what}: `value` must be a list, got {got}")
    link = payload.get("@odata.nextLink")
    if link is not None and (not isinstance(link, str) or not link.strip()):
        raise VendorDataError(f"{what}: `@odata.nextLink` must be a URL, got {type(link).__name__}")
    return GraphPage(rows, link.strip() if isinstance(link, str) else None)


def customer_tenant(row: object) -> Tenant | None:
    """A delegatedAdminCustomer row as a tenant (id: `tenantId` lower-cased; name: `displayName`), or None
    when the row has no usable `tenantId` (a GUID: it goes into the token URL's path)."""
    if not isinstance(row, dict):
        return None
    tenant_id = row.get("tenantId")
    if not isinstance(tenant_id, str) or not GUID_RE.fullmatch(tenant_id.strip()):
        return None
    name = row.get("displayName")
    tid = tenant_id.strip().lower()
    return Tenant(tid, name.strip() if isinstance(name, str) and name.strip() else tid)


def base_metric(sku_part_number: str) -> str:
    """`skuPartNumber` lower-cased, each run of other characters than a-z and 0-9 made one `_`, trimmed of `_`,
    cut to MAX_METRIC_LENGTH: `O365_BUSINESS_PREMIUM` -> `o365_business_premium`, `Microsoft 365 E5 (no Teams)`
    -> `microsoft_365_e5_no_teams`. Empty after that: `sku`."""
    name = _NOT_ALNUM.sub("_", sku_part_number.lower()).strip("_")[:MAX_METRIC_LENGTH].rstrip("_")
    return name or "sku"


def _sku_suffix(sku_id: str) -> str:
    return _NOT_ALNUM.sub("", sku_id.lower())[:8] or "0"


def metric_names(skus: list[tuple[str, str]]) -> dict[str, str]:
    """The metric of each SKU of one tenant, by skuId, from `(skuId, skuPartNumber)` pairs.

    Names collide when two part numbers normalise alike. The one SKU whose part number is already the name
    but for its case (letters, digits and `_` only) keeps it; every other SKU of that name gets `_` and the
    first 8 characters of its skuId (`power_bi_standard_a403ebcc`). The plain name thus stays with the same
    SKU when a look-alike appears; only when two such part numbers differ in case alone are both suffixed.
    """
    by_name: dict[str, list[tuple[str, str]]] = {}
    for sku_id, part in skus:
        by_name.setdefault(base_metric(part), []).append((sku_id, part))
    names: dict[str, str] = {}
    for name, members in by_name.items():
        if len(members) == 1:
            names[members[0][0]] = name
            continue
        plain = [sku_id for sku_id, part in members if _PLAIN_PART.fullmatch(part)]
        keeper = plain[0] if len(plain) == 1 else None
        for sku_id, _part in members:
            if sku_id == keeper:
                names[sku_id] = name
            else:
                names[sku_id] = f"{name[: MAX_METRIC_LENGTH - 9].rstrip('_')}_{_sku_suffix(sku_id)}"
    return names


def _count(value: object, field: str, where: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        got = "nothing" if value is None else type(value).__name__
        raise VendorDataError(f"{where}: {field} must be an integer, got {got}")
    if value < 0 or value > MAX_PLAUSIBLE_VALUE:
        raise VendorDataError(f"{where}: {field} out of range: {value!r}")
    return value


def _text(row: dict[str, Any], field: str, where: str) -> str:
    value = row.get(field)
    if not isinstance(value, str) or not value.strip():
        got = "nothing" if value is None else type(value).__name__
        raise VendorDataError(f"{where}: {field} must be a non-empty string, got {got}")
    return value.strip()


@dataclass(frozen=True, slots=True)
class Sku:
    """What is read of one subscribedSku."""

    sku_id: str
    part_number: str
    consumed: int
    enabled: int
    others: dict[str, int]
    capability_status: str | None
    applies_to: str | None


def parse_sku(row: object, position: int) -> Sku:
    where = f"subscribedSkus value[{position}]"
    if not isinstance(row, dict):
        raise VendorDataError(f"{where}: expected an object, got {type(row).__name__}")
    sku_id = _text(row, "skuId", where)
    where = f"SKU {sku_id}"
    part = _text(row, "skuPartNumber", where)
    consumed = _count(row.get("consumedUnits"), "consumedUnits", where)
    prepaid = row.get("prepaidUnits")
    if not isinstance(prepaid, dict):
        got = "nothing" if prepaid is None else type(prepaid).__name__
        raise VendorDataError(f"{where}: prepaidUnits must be an object, got {got}")
    enabled = _count(prepaid.get("enabled"), "prepaidUnits.enabled", where)
    others = {
        name: _count(prepaid[field], f"prepaidUnits.{field}", where)
        for field, name in OTHER_PREPAID
        if prepaid.get(field) is not None
    }
    status, applies = row.get("capabilityStatus"), row.get("appliesTo")
    return Sku(
        sku_id=sku_id,
        part_number=part,
        consumed=consumed,
        enabled=enabled,
        others=others,
        capability_status=status.strip() if isinstance(status, str) and status.strip() else None,
        applies_to=applies.strip() if isinstance(applies, str) and applies.strip() else None,
    )


def tenant_records(tenant: Tenant, rows: list[Any], *, account_id: str, window: Window) -> TenantUsage:
    """Every SKU of one tenant as a record: value `consumedUnits`, quota `prepaidUnits.enabled`, the other
    prepaid states, the skuId, the part number, `capabilityStatus` and `appliesTo` as attributes. A SKU listed
    twice (same skuId) counts once. VendorDataError names the SKU and field that is wrong."""
    skus: dict[str, Sku] = {}
    for position, row in enumerate(rows):
        sku = parse_sku(row, position)
        skus.setdefault(sku.sku_id.lower(), sku)
    names = metric_names([(key, sku.part_number) for key, sku in skus.items()])
    records = []
    for key, sku in sorted(skus.items(), key=lambda item: names[item[0]]):
        attributes: dict[str, int | str] = {"sku_id": sku.sku_id, "sku_part_number": sku.part_number, **sku.others}
        if sku.capability_status is not None:
            attributes["capability_status"] = sku.capability_status
        if sku.applies_to is not None:
            attributes["applies_to"] = sku.applies_to
        records.append(
            UsageRecord(
                vendor=VENDOR,
                account_id=account_id,
                tenant=tenant,
                metric=names[key],
                value=sku.consumed,
                unit=UNIT,
                window=window,
                quota=sku.enabled,
                attributes=attributes,
            )
        )
    return TenantUsage(tenant, tuple(records))
