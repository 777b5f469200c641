"""ThousandEyesSource: plan the organisations, read each one's usage concurrently, report failures."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Final, Protocol, Unpack

from usagewatch.errors import ConfigError, UsagewatchError, VendorApiError, VendorAuthError, VendorDataError
from usagewatch.model import (
    CollectionRequest,
    ListingGap,
    Tenant,
    TenantFailure,
    TenantResult,
    TenantUsage,
    Window,
)
from usagewatch.observability import logger
from usagewatch.redaction import redactor
from usagewatch.sources.base import CarriedError, SourceClocks, VendorSource
from usagewatch.sources.thousandeyes.api import (
    CURRENT,
    NO_QUOTA_PERMISSION,
    ThousandEyesAccount,
    ThousandEyesApi,
    vendor_message,
)
from usagewatch.sources.thousandeyes.mapping import VENDOR, OrganisationQuotas, map_usage
from usagewatch.sources.thousandeyes.organisations import (
    AccountGroup,
    Organisation,
    QuotaEntry,
    parse_quotas,
    plan_organisations,
    quotas_for,
)
from usagewatch.text import clip

# The tenant a ListingGap names when the account-group list itself failed.
GROUPS_GAP_ID: Final = "account-groups"


class _GroupsUnreadableError(CarriedError):
    """The account-group list failed and the configured aids cannot be identified without it."""


class _OrganisationError(CarriedError):
    """One organisation failed; `cause` says how (the collector decides whether the account fails)."""

    def __init__(self, organisation: Organisation, cause: UsagewatchError) -> None:
        super().__init__(cause)
        self.organisation = organisation

    @property
    def tenant_specific(self) -> bool:
        """A failure that only this organisation can have (bad aid, bad payload), not the account's."""
        cause = self.cause
        return isinstance(cause, VendorDataError) or (isinstance(cause, VendorApiError) and cause.status == 400)


class OrganisationIdentities(Protocol):
    """Where the source remembers, per account, the tenant id each aid's organisation was first given
    (only needed when the API sends no `orgId`). The source itself never touches AWS: the handler hands
    in one backed by the table (`use_identities`). Without one, such an organisation is identified by its lowest aid."""

    def recall(self, account_id: str) -> Mapping[str, str]: ...

    def remember(self, account_id: str, identities: Mapping[str, str]) -> None: ...


class InProcessIdentities:
    """Identities kept in memory, the reference behaviour of a store-backed memory: the first identity
    given to an aid wins. Not the collector's default: kept only by a warm container, it would let a cold
    one give an organisation another id."""

    def __init__(self) -> None:
        self._known: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()

    def recall(self, account_id: str) -> Mapping[str, str]:
        with self._lock:
            return dict(self._known.get(account_id, {}))

    def remember(self, account_id: str, identities: Mapping[str, str]) -> None:
        with self._lock:
            known = self._known.setdefault(account_id, {})
            for aid, tenant_id in identities.items():
                known.setdefault(aid, tenant_id)


class ThousandEyesSource(VendorSource[ThousandEyesAccount]):
    """ThousandEyes organisation usage (every billed quantity of `UsageDetails`, see ORG_METRICS) per
    organisation, plus per-account-group breakdown rows (not billed), with the MSP's quotas when readable."""

    vendor = VENDOR
    account_model = ThousandEyesAccount

    def __init__(
        self,
        *,
        wall_clock: Callable[[], float] = time.time,
        low_remaining: int = 2,
        identities: OrganisationIdentities | None = None,
        **clocks: Unpack[SourceClocks],
    ) -> None:
        """`clock` paces requests; `wall_clock` (epoch seconds) reads `X-Organization-Rate-Limit-Reset`;
        when a response says `low_remaining` or fewer requests are left, the next call of that
        organisation waits for the reset. `identities` keeps organisations without `orgId` under the
        tenant id they were first given."""
        super().__init__(**clocks)
        self._identities = identities
        self._api = ThousandEyesApi(
            sleep=self._sleep,
            clock=self._clock,
            wall_clock=wall_clock,
            retry=self._retry,
            low_remaining=low_remaining,
        )
        self._notes: dict[str, list[str]] = {}
        self._notes_lock = threading.Lock()

    def use_identities(self, identities: OrganisationIdentities) -> None:
        """The identity memory to keep from now on (the handler hands in the one kept in the usage table)."""
        self._identities = identities

    def parse_account(self, raw: dict[str, object], *, index: int = 0) -> ThousandEyesAccount:
        account = super().parse_account(raw, index=index)
        if account.email and account.basic_auth_token is not None:
            pair = f"{account.email}:{account.basic_auth_token.get_secret_value()}"
            redactor.register(base64.b64encode(pair.encode()).decode())
        return account

    def _msp_quotas(self, account: ThousandEyesAccount) -> list[QuotaEntry] | None:
        """`GET /v7/quotas` (v7 only): the MSP-assigned quotas, or None (said once in the log) when they
        cannot be read. A refused token (401) fails the account; anything else lets collection go on."""
        if account.api_version != "v7":
            return None
        try:
            response = self._api.get(account, CURRENT, "/v7/quotas", {})
            if response.status == 200:
                return parse_quotas(response.json())
        except VendorAuthError:
            raise
        except UsagewatchError as exc:
            logger.warning(
                "thousandeyes MSP quotas not read this run; the contract quotas of /v7/usage apply",
                extra={"account_id": account.account_id, "error": clip(str(exc))},
            )
            note = f"MSP quotas (/v7/quotas) not read: {clip(str(exc))}; contract quotas apply"
            self._note(account.account_id, note)
            return None
        said = vendor_message(response)
        reason = NO_QUOTA_PERMISSION if response.status == 403 else f"HTTP {response.status}"
        logger.warning(
            "thousandeyes MSP quotas not read this run; the contract quotas of /v7/usage apply",
            extra={"account_id": account.account_id, "error": f"{reason}{': ' + said if said else ''}"},
        )
        self._note(
            account.account_id,
            f"MSP quotas (/v7/quotas) not read: {reason}{': ' + said if said else ''}; contract quotas apply",
        )
        return None

    def _note(self, account_id: str, text: str) -> None:
        with self._notes_lock:
            notes = self._notes.setdefault(account_id, [])
            if text not in notes:
                notes.append(text)

    def drain_notes(self, account_id: str) -> list[str]:
        """What the last collection of this account wants its run record to say (not errors)."""
        with self._notes_lock:
            return self._notes.pop(account_id, [])

    def _collect_organisation(
        self,
        account: ThousandEyesAccount,
        organisation: Organisation,
        request: CollectionRequest,
        quotas: OrganisationQuotas,
    ) -> list[TenantUsage]:
        try:
            response = self._api.usage(account, organisation)
            mapped = map_usage(
                response.json(),
                account_id=account.account_id,
                organisation=organisation.tenant,
                group_names=organisation.group_names,
                fallback=Window.month(request.period),
                quotas=quotas,
            )
        except VendorAuthError as exc:
            if exc.status == 401:
                raise
            raise _OrganisationError(organisation, exc) from exc
        except UsagewatchError as exc:
            raise _OrganisationError(organisation, exc) from exc
        window = mapped.window
        if mapped.window_from_request:
            logger.warning(
                "thousandeyes usage answer has no billing dates (usage.quota.monthStart/monthEnd);"
                " its numbers are stored under the requested period",
                extra={"organisation": organisation.tenant.tenant_id, "period": str(request.period)},
            )
            self._note(
                account.account_id,
                f"organisation {organisation.tenant.tenant_name} ({organisation.tenant.tenant_id}): no billing dates "
                f"in the answer; stored under the requested period {request.period}",
            )
        if request.period_explicit and window.period != request.period:
            raise _OrganisationError(
                organisation,
                ConfigError(
                    f"ThousandEyes reports only the current billing period ({window.period}: "
                    f"{window.start:%Y-%m-%d %H:%M} to {window.end:%Y-%m-%d %H:%M} UTC); asked for {request.period}"
                ),
            )
        return mapped.tenants

    # --- the run ----------------------------------------------------------------------------------
    def plan(self, account: ThousandEyesAccount) -> list[Organisation]:
        """The organisations to call: from `aids` (named through the account-groups list when it can
        be read), or discovered from that list."""
        groups: list[AccountGroup] | None
        remembered = self._identities.recall(account.account_id) if self._identities else {}
        if account.aids:
            try:
                groups = self._api.account_groups(account)
            except UsagewatchError as exc:
                if isinstance(exc, VendorAuthError) and exc.status == 401:
                    raise
                if not self._aids_identifiable(account, exc, remembered):
                    raise _GroupsUnreadableError(exc) from exc
                logger.warning(
                    "thousandeyes account groups unreadable; using the configured aids", extra={"error": str(exc)}
                )
                groups = None
            plan = plan_organisations(groups, account.aids, remembered)
        else:
            groups = self._api.account_groups(account)
            plan = plan_organisations(groups, None, remembered)
        if self._identities is not None:
            self._identities.remember(
                account.account_id,
                {aid: org.tenant.tenant_id for org in plan for aid in org.aids},
            )
        current = next((g.aid for g in groups or [] if g.current), None)
        home = next(
            (o for o in plan if current is not None and (o.call_aid == current or current in o.group_names)), None
        )
        if home is not None and home.call_aid is not None:
            self._api.share_current(account, home.call_aid)
        return plan

    @staticmethod
    def _aids_identifiable(account: ThousandEyesAccount, error: UsagewatchError, remembered: Mapping[str, str]) -> bool:
        """Whether the configured aids may be collected without the account-group list: under v6 (no orgId
        there), when the list is refused for good (403: this token may never read it, so the aids are
        always the ids), or when every aid's identity is remembered. Otherwise (v7, a transient failure)
        they would be stored under aid ids this run and `org-<orgId>` the next."""
        refused = isinstance(error, VendorAuthError) and error.status == 403
        known = all(aid in remembered for aid in account.aids or [])
        return account.api_version == "v6" or refused or known

    def collect(self, account: ThousandEyesAccount, request: CollectionRequest) -> Iterator[TenantResult]:
        """Organisations concurrently (`concurrency`), results in plan order.

        One organisation failing yields a TenantFailure. When no organisation succeeds, a failure that
        is not specific to one organisation (403 permission, 5xx, rate limit exhausted, another period
        asked for) is raised for the whole account instead; a 401 is always raised at once.
        """
        self._api.open(account, request.deadline)
        try:
            yield from self._collect(account, request)
        finally:
            self._api.close(account)

    def _collect(self, account: ThousandEyesAccount, request: CollectionRequest) -> Iterator[TenantResult]:
        try:
            plan = self.plan(account)
        except _GroupsUnreadableError as unreadable:
            yield ListingGap(
                Tenant(GROUPS_GAP_ID, "ThousandEyes account-group list"),
                clip(
                    "the account-group list could not be read, so the configured aids' organisations cannot be"
                    f" identified this run (their stored numbers are carried): {unreadable.cause}"
                ),
            )
            return
        logger.info(
            "thousandeyes organisations planned",
            extra={"account_id": account.account_id, "organisations": [o.tenant.tenant_id for o in plan]},
        )
        entries = self._msp_quotas(account) or []
        pool = ThreadPoolExecutor(max_workers=min(account.concurrency, max(1, len(plan))), thread_name_prefix="te-org")
        succeeded = 0
        held: list[_OrganisationError] = []
        try:
            futures: list[Future[list[TenantUsage]]] = [
                pool.submit(
                    self._collect_organisation, account, organisation, request, quotas_for(entries, organisation)
                )
                for organisation in plan
            ]
            for future in futures:
                try:
                    results = future.result()
                except _OrganisationError as failed:
                    if succeeded:
                        yield _failure(failed)
                    else:
                        held.append(failed)
                    continue
                succeeded += 1
                yield from results
                for held_failure in held:
                    yield _failure(held_failure)
                held.clear()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if held:
            systemic = next((f for f in held if not f.tenant_specific), None)
            if systemic is not None:
                raise systemic.cause
            for held_failure in held:
                yield _failure(held_failure)
        logger.info(
            "thousandeyes account collected",
            extra={"account_id": account.account_id, "organisations": len(plan), "succeeded": succeeded},
        )


def _failure(failed: _OrganisationError) -> TenantFailure:
    organisation = failed.organisation
    tenant = organisation.tenant
    aid = organisation.call_aid or "current"
    label = f"aid {aid}" if tenant.tenant_id == aid else f"{tenant.tenant_id}, aid {aid}"
    return TenantFailure(tenant, clip(f"organisation {tenant.tenant_name} ({label}): {failed.cause}"))


def make_source() -> ThousandEyesSource:
    """The collector's source; the handler hands it the identity memory kept in the usage table
    (`use_identities`), so the source itself never touches AWS."""
    return ThousandEyesSource()
