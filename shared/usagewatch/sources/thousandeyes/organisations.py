"""Pure ThousandEyes planning: account groups -> organisations to call, and the MSP quotas of each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from usagewatch.errors import VendorDataError
from usagewatch.model import Tenant
from usagewatch.observability import logger
from usagewatch.sources.thousandeyes.mapping import (
    ORG_PREFIX,
    OrganisationQuotas,
    aid_order,
    read_aid,
    read_name,
    read_number,
)


@dataclass(frozen=True, slots=True)
class AccountGroup:
    aid: str
    name: str | None
    organisation_key: str | None
    organisation_name: str | None
    current: bool
    org_id: str | None = None


@dataclass(frozen=True, slots=True)
class Organisation:
    """One usage call: the aid it is made with (None: the token's current context), the tenant, and the
    organisation's account groups as far as they are known (`group_names`, `aids`) and its `orgId`."""

    tenant: Tenant
    call_aid: str | None
    group_names: Mapping[str, str]
    org_id: str | None = None
    aids: frozenset[str] = frozenset()


def organisation_tenant_id(org_id: str) -> str:
    """An organisation's tenant id from its `orgId`: `org-<orgId>`, never equal to an aid-based id."""
    return f"{ORG_PREFIX}{org_id}"


def _org_id(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).strip():
        return None
    return str(value).strip()


def parse_account_groups(payload: object) -> list[AccountGroup]:
    """`{"accountGroups": [...]}` of v7 (string aids, `isCurrentAccountGroup`, optional `orgId`) or v6
    (int aids, `current`).

    Account groups are grouped into organisations by `orgId` when sent, else by `organizationName`; a
    group without `orgId` whose organisation name is that of a group with one joins that organisation.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("accountGroups"), list):
        raise VendorDataError("account-groups answer: expected an object with an accountGroups list")
    rows: list[tuple[str, str | None, str | None, str | None, bool]] = []
    for index, row in enumerate(payload["accountGroups"]):
        path = f"accountGroups[{index}]"
        if not isinstance(row, dict):
            raise VendorDataError(f"{path}: expected an object, got {type(row).__name__}")
        current = row.get("isCurrentAccountGroup", row.get("current"))
        rows.append(
            (
                read_aid(row.get("aid"), path),
                read_name(row.get("accountGroupName")),
                _org_id(row.get("orgId", row.get("organizationId"))),
                read_name(row.get("organizationName")),
                current is True or current == 1,
            )
        )
    id_of_name = {org_name: org_id for _a, _n, org_id, org_name, _c in rows if org_id and org_name}
    groups: list[AccountGroup] = []
    for aid, name, sent_id, org_name, current in rows:
        org_id = sent_id or (id_of_name.get(org_name) if org_name else None)
        key = f"id:{org_id}" if org_id else (f"name:{org_name}" if org_name else None)
        groups.append(AccountGroup(aid, name, key, org_name, current, org_id))
    return groups


def _group_names(groups: list[AccountGroup]) -> dict[str, str]:
    return {g.aid: g.name for g in groups if g.name}


def _organisation(members: list[AccountGroup], call_aid: str, name: str, remembered: Mapping[str, str]) -> Organisation:
    """The organisation of `members`: tenant id `org-<orgId>` when the API sent one, else the identity
    remembered for any of its aids, else the aid its usage call is made with."""
    org_id = next((g.org_id for g in members if g.org_id), None)
    aids = frozenset({call_aid, *(g.aid for g in members)})
    if org_id is not None:
        tenant_id = organisation_tenant_id(org_id)
    else:
        tenant_id = next((remembered[a] for a in sorted(aids, key=aid_order) if a in remembered), call_aid)
    return Organisation(Tenant(tenant_id, name), call_aid, _group_names(members), org_id, aids)


def plan_organisations(
    groups: list[AccountGroup] | None, aids: list[str] | None, remembered: Mapping[str, str] | None = None
) -> list[Organisation]:
    """The usage calls to make: one per organisation.

    With `aids`: one call per configured aid, skipping an aid whose organisation (known from the
    account-groups list) is already covered. Without: account groups grouped by organisation, each called
    with its lowest aid. Tenant id: `org-<orgId>` when the list gives the organisation's `orgId`; else the
    id `remembered` (aid -> organisation tenant id, from earlier runs) for one of its aids; else the aid
    of the call. Groups without an organisation name (older v6 answers) cannot be grouped: then one call
    with the current account group's aid.
    """
    listed = groups or []
    memory = remembered or {}
    by_aid = {g.aid: g for g in listed}
    plan: list[Organisation] = []
    if aids:
        covered: set[str] = set()
        for aid in aids:
            group = by_aid.get(aid)
            key = group.organisation_key if group else None
            if key is not None:
                if key in covered:
                    logger.info("thousandeyes aid skipped: its organisation is already collected", extra={"aid": aid})
                    continue
                covered.add(key)
            members = [g for g in listed if key is not None and g.organisation_key == key] or ([group] if group else [])
            name = (group.organisation_name if group else None) or f"organisation of aid {aid}"
            plan.append(_organisation(members, aid, name, memory))
        return plan
    if not listed:
        raise VendorDataError("account-groups answer lists no account group: the token sees no organisation")
    organisations: dict[str, list[AccountGroup]] = {}
    for group in listed:
        if group.organisation_key is not None:
            organisations.setdefault(group.organisation_key, []).append(group)
    for members in organisations.values():
        members.sort(key=lambda g: aid_order(g.aid))
        lowest = members[0]
        name = lowest.organisation_name or f"organisation of aid {lowest.aid}"
        plan.append(_organisation(members, lowest.aid, name, memory))
    unnamed = [g for g in listed if g.organisation_key is None]
    if unnamed and not plan:
        current = next((g for g in unnamed if g.current), None) or min(unnamed, key=lambda g: aid_order(g.aid))
        label = f"organisation of account group {current.name or current.aid}"
        logger.warning(
            "thousandeyes account groups carry no organisation; collecting the current organisation only",
            extra={"aid": current.aid},
        )
        plan.append(_organisation(unnamed, current.aid, label, memory))
    elif unnamed:
        logger.warning(
            "thousandeyes account groups without an organisation name were skipped; list aids to include them",
            extra={"aids": [g.aid for g in unnamed]},
        )
    plan.sort(key=lambda org: aid_order(org.call_aid or ""))
    return plan


@dataclass(frozen=True, slots=True)
class QuotaEntry:
    """One organisation's entry of `/v7/quotas`: its `organizationQuota` and its `accountGroupQuotas`."""

    org_id: str | None
    value: int | None
    groups: Mapping[str, int]


def _quota_value(row: Mapping[str, Any], path: str) -> int | None:
    value = read_number(row, "value", path)
    if value is not None and not float(value).is_integer():
        raise VendorDataError(f"{path}.value: expected a whole number of cloud units, got {value!r}")
    return None if value is None else int(value)


def parse_quotas(payload: object) -> list[QuotaEntry]:
    """`{"quotas": [{"organizationQuota": {value, orgId}, "accountGroupQuotas": [{value, aid}]}]}`; every
    field is optional in the spec but `organizationQuota.value`. A wrong type raises VendorDataError naming it."""
    if not isinstance(payload, dict):
        raise VendorDataError(f"quotas answer: expected a JSON object, got {type(payload).__name__}")
    entries = payload.get("quotas") or []
    if not isinstance(entries, list):
        raise VendorDataError(f"quotas: expected a list, got {type(entries).__name__}")
    parsed: list[QuotaEntry] = []
    for index, entry in enumerate(entries):
        path = f"quotas[{index}]"
        if not isinstance(entry, dict):
            raise VendorDataError(f"{path}: expected an object, got {type(entry).__name__}")
        organisation = entry.get("organizationQuota")
        if organisation is not None and not isinstance(organisation, dict):
            raise VendorDataError(f"{path}.organizationQuota: expected an object, got {type(organisation).__name__}")
        org = organisation or {}
        value = _quota_value(org, f"{path}.organizationQuota") if organisation is not None else None
        if organisation is not None and value is None:
            raise VendorDataError(f"{path}.organizationQuota.value: required by the spec, got nothing")
        groups: dict[str, int] = {}
        rows = entry.get("accountGroupQuotas") or []
        if not isinstance(rows, list):
            raise VendorDataError(f"{path}.accountGroupQuotas: expected a list, got {type(rows).__name__}")
        for row_index, row in enumerate(rows):
            row_path = f"{path}.accountGroupQuotas[{row_index}]"
            if not isinstance(row, dict):
                raise VendorDataError(f"{row_path}: expected an object, got {type(row).__name__}")
            group_value = _quota_value(row, row_path)
            if group_value is not None:  # no value: no quota assigned to that account group
                groups[read_aid(row.get("aid"), row_path)] = group_value
        parsed.append(QuotaEntry(_org_id(org.get("orgId")), value, groups))
    return parsed


def quotas_for(entries: list[QuotaEntry], organisation: Organisation) -> OrganisationQuotas:
    """The entry of `organisation`: the one with its orgId, else the one naming one of its account groups."""
    entry = next((e for e in entries if organisation.org_id and e.org_id == organisation.org_id), None)
    entry = entry or next((e for e in entries if organisation.aids & e.groups.keys()), None)
    if entry is None:
        return OrganisationQuotas()
    return OrganisationQuotas(entry.value, dict(entry.groups))
