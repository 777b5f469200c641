"""GravityZone's company tree: partner and customer companies under the root, walked over the Network API."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from usagewatch.errors import VendorApiError, VendorAuthError, VendorDataError
from usagewatch.model import (
    ListingGap,
    Tenant,
    TenantFailure,
)
from usagewatch.observability import logger
from usagewatch.sources.gravityzone.api import (
    FOLDERS_METHOD,
    INVENTORY_METHOD,
    INVENTORY_PAGE_SIZE,
    MAX_INVENTORY_PAGES,
    RPC_INVALID_PARAMS,
    RPC_METHOD_NOT_FOUND,
    GravityZoneRpcError,
    RpcClient,
)


@dataclass(slots=True)
class Company:
    """A company found in the tree; `parent_id` is the enclosing company (None: directly under the root)."""

    company_id: str
    name: str
    parent_id: str | None
    is_partner: bool = False
    failed: bool = False

    @property
    def tenant(self) -> Tenant:
        return Tenant(self.company_id, self.name, parent_tenant_id=self.parent_id, billed=not self.is_partner)


@dataclass(slots=True)
class _Container:
    """Something whose children are listed: the root, a partner company or a company folder."""

    node_id: str | None
    kind: Literal["root", "partner", "folder"]
    enclosing: str | None  # the company the children sit under (their parent_tenant_id)
    company: Company | None = None
    folder_name: str = ""


def _items(result: object, what: str) -> list[tuple[str, str]]:
    """`[{id, name}]` (or an `{items: [...]}` wrapper) as (id, name) pairs."""
    if isinstance(result, dict) and isinstance(result.get("items"), list):
        result = result["items"]
    if not isinstance(result, list):
        raise VendorDataError(f"{what}: expected a list, got {type(result).__name__}")
    pairs: list[tuple[str, str]] = []
    for index, item in enumerate(result):
        if not isinstance(item, dict):
            raise VendorDataError(f"{what}: item {index} is not an object")
        raw_id = item.get("id")
        if not isinstance(raw_id, str | int) or isinstance(raw_id, bool) or not str(raw_id).strip():
            raise VendorDataError(f"{what}: item {index} has no id")
        company_id = str(raw_id).strip()
        name = item.get("name")
        pairs.append((company_id, str(name).strip() if name is not None and str(name).strip() else company_id))
    return pairs


def list_companies(rpc: RpcClient, root_company_id: str | None) -> tuple[list[Company], list[TenantFailure]]:
    """Every company under the root, partners flagged; a `ListingGap` per failed sub-listing (a partner's
    or a folder's: the companies beneath it are unknown this run).

    Raises when the root itself cannot be listed: without it there is no complete picture.
    """
    companies: list[Company] = []
    failures: list[TenantFailure] = []
    seen: set[str] = set() if root_company_id is None else {root_company_id}
    queue: deque[_Container] = deque([_Container(root_company_id, "root", None)])
    while queue:
        container = queue.popleft()
        try:
            children = _list_children(rpc, container)
        except VendorAuthError:
            raise
        except (VendorApiError, VendorDataError) as exc:
            if container.kind == "root":
                raise
            failures.append(_listing_failure(container, exc))
            continue
        if children is None:  # a "partner" whose listing says it is a customer
            continue
        child_companies, partner_ids, folders = children
        for company_id, name in child_companies:
            if company_id in seen:
                logger.info("gravityzone company listed twice; kept once", extra={"company_id": company_id})
                continue
            seen.add(company_id)
            candidate = partner_ids is None or company_id in partner_ids
            company = Company(company_id, name, container.enclosing, is_partner=candidate)
            companies.append(company)
            if candidate:
                queue.append(_Container(company_id, "partner", company_id, company=company))
        for folder_id, folder_name in folders:
            if folder_id in seen:
                continue
            seen.add(folder_id)
            queue.append(_Container(folder_id, "folder", container.enclosing, folder_name=folder_name))
    return [c for c in companies if not c.failed], failures


def _list_children(
    rpc: RpcClient, container: _Container
) -> tuple[list[tuple[str, str]], set[str] | None, list[tuple[str, str]]] | None:
    """(children, partner ids or None when unknown, folders); None when a probed partner is a customer."""
    base: dict[str, Any] = {} if container.node_id is None else {"parentId": container.node_id}
    try:
        children = _items(rpc.call("network", "getCompaniesList", base), "getCompaniesList")
    except GravityZoneRpcError as exc:
        if exc.code == RPC_INVALID_PARAMS and container.kind == "partner" and container.company is not None:
            container.company.is_partner = False  # "Invalid value for 'parentId'": a customer company
            return None
        if exc.code == RPC_INVALID_PARAMS and container.kind == "root" and container.node_id is not None:
            raise VendorApiError(
                f"root_company_id {container.node_id} cannot be listed as a partner company: {exc}"
            ) from exc
        raise
    partner_ids: set[str] | None = set()
    if children:
        try:
            partners = rpc.call("network", "getCompaniesList", {**base, "filters": {"companyType": 0}})
            partner_ids = {company_id for company_id, _ in _items(partners, "getCompaniesList(partners)")}
        except GravityZoneRpcError as exc:
            if exc.code != RPC_INVALID_PARAMS:
                raise
            partner_ids = None  # filter not supported: probe every child
    return children, partner_ids, _list_folders(rpc, base)


def _list_folders(rpc: RpcClient, base: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The company folders directly under a container (the root, a partner company, a folder).

    `network.getCompanyFoldersList` first; on a server that answers -32601 (method not found) for it,
    `network.getNetworkInventoryItems` (v1.1) filtered to company folders. Any other error, or both
    methods missing, raises: a container whose folders are unknown is a failed listing, never "no folders".
    """
    if FOLDERS_METHOD not in rpc.missing_methods:
        try:
            return _items(rpc.call("network", FOLDERS_METHOD, base), FOLDERS_METHOD)
        except GravityZoneRpcError as exc:
            if exc.code != RPC_METHOD_NOT_FOUND:
                raise
            rpc.missing_methods.add(FOLDERS_METHOD)
            logger.warning(
                "gravityzone getCompanyFoldersList not found; listing folders with getNetworkInventoryItems (v1.1)"
            )
    try:
        return _inventory_folders(rpc, base)
    except GravityZoneRpcError as exc:
        if exc.code != RPC_METHOD_NOT_FOUND:
            raise
        raise VendorApiError(
            f"company folders cannot be listed: this server answers 'method not found' for both "
            f"network.{FOLDERS_METHOD} and network.{INVENTORY_METHOD} (v1.1): {exc}"
        ) from exc


def _inventory_folders(rpc: RpcClient, base: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Company folders from `getNetworkInventoryItems` (v1.1, `filters.type.companyFolders`), page by page.

    The walk stops on `hasMoreRecords: false`, else at `pagesCount` (which may come on page 1 only),
    else on a short page; `MAX_INVENTORY_PAGES` bounds a server that never says stop.
    """
    folders: list[tuple[str, str]] = []
    pages_count: int | None = None
    for page in range(1, MAX_INVENTORY_PAGES + 1):
        params = {**base, "filters": {"type": {"companyFolders": True}}, "page": page, "perPage": INVENTORY_PAGE_SIZE}
        result = rpc.call("network", INVENTORY_METHOD, params, version="1.1")
        if not isinstance(result, Mapping) or not isinstance(result.get("items"), list):
            raise VendorDataError(f"{INVENTORY_METHOD}: expected an object with a list of items")
        items = result["items"]
        folders.extend(_items(items, f"{INVENTORY_METHOD} page {page}"))
        more = result.get("hasMoreRecords")
        count = result.get("pagesCount")
        if pages_count is None and isinstance(count, int) and not isinstance(count, bool):
            pages_count = count
        if isinstance(more, bool):
            if not more:
                return folders
        elif pages_count is not None:
            if page >= pages_count:
                return folders
        elif len(items) < INVENTORY_PAGE_SIZE:
            return folders
    raise VendorDataError(f"{INVENTORY_METHOD}: still more pages after {MAX_INVENTORY_PAGES}")


def _listing_failure(container: _Container, exc: Exception) -> ListingGap:
    """The partner or folder whose listing failed: the companies beneath it are unknown this run."""
    if container.company is not None:
        container.company.failed = True
        return ListingGap(
            container.company.tenant,
            f"listing the companies of partner {container.company.name} failed; its companies were not "
            f"collected: {exc}",
        )
    folder_id = container.node_id or "?"
    tenant = Tenant(folder_id, f"folder {container.folder_name}", parent_tenant_id=container.enclosing, billed=False)
    return ListingGap(
        tenant, f"listing company folder {container.folder_name} failed; its companies were not collected: {exc}"
    )
