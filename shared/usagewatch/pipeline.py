"""One collection run: for each account, read -> store -> evaluate -> advance alerts -> publish.

A tenant that fails is recorded and the others go on. An account that fails writes no totals and
resolves nothing (missing data is not good news); the run goes on with the other accounts and the
caller fails the invocation at the end, so Lambda's retry and on-failure destination see it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, Generic, Protocol, TypeVar
from uuid import uuid4

from usagewatch import registry
from usagewatch.alerts import Observed, Reading, TenantFailureInfo, Transition, advance, alert_id
from usagewatch.billing_alerts import BILLING_RULES, BillingReader, BillingView, load_view
from usagewatch.continuation import ChunkedRunState, ChunkKey, WorkItem
from usagewatch.digest import build_digest
from usagewatch.dispatch import Dispatcher, Publisher
from usagewatch.errors import ConfigError, StoreError, UsagewatchError
from usagewatch.model import (
    ACCOUNT_WIDE,
    COLLECTION_RULE,
    AlertState,
    ChunkedSource,
    CollectionRequest,
    ListingGap,
    MetricSeries,
    NotingSource,
    Number,
    RunRecord,
    Source,
    StoredUsage,
    Tenant,
    TenantFailure,
    TenantResult,
    Total,
    UsageRecord,
    parse_utc,
    utc_iso,
)
from usagewatch.observability import logger
from usagewatch.pacing import Deadline
from usagewatch.redaction import redactor
from usagewatch.rules import Finding, RulesDocument, evaluate
from usagewatch.trends import Trends

MAX_ERRORS_KEPT: Final = 25
# Vendor calls one invocation may plan for: the template's 600 s timeout less room to store and publish.
DEFAULT_BUDGET_SECONDS: Final = 420.0
PUBLISHERS: Final = 8
MAX_ERROR_LENGTH: Final = 500
# An account is started only while this much of the invocation is left (at most a tenth of it): room to
# store, publish and record the accounts already collected.
DEADLINE_RESERVE_SECONDS: Final = 60.0
PERIOD_ENDED: Final = "period ended"
DEADLINE_REACHED: Final = "deadline reached while this account was collected"
# A run's lease on its account outlives the longest Lambda invocation (900 s) when the remaining time is unknown.
LEASE_SECONDS: Final = 960.0
LEASE_MARGIN_SECONDS: Final = 10.0
LEASE_TAKEN: Final = "skipped: another run of this account holds its lease (it is collecting now)"
LEASE_LOST: Final = "skipped: this run's lease on the account was taken over before it published; nothing published"
# An account's run that refreshed its numbers (partial: some tenants failed, the others were read).
SUCCEEDED: Final = frozenset({"ok", "partial"})
# Runs read back to find the last successful one of a failing account (the dashboard's age of the last success).
LAST_RUNS_READ: Final = 50
AccountT = TypeVar("AccountT")


class UsageStore(Protocol):
    def add_tenant(self, records: Sequence[UsageRecord], *, as_of: datetime, collected_at: datetime) -> None: ...
    def flush(self) -> None: ...
    def write_totals(self, totals: Iterable[Total]) -> None: ...
    def write_run(self, run: RunRecord) -> None: ...
    def open_alerts(self, vendor: str, account_id: str) -> dict[str, AlertState]: ...
    def alert_states(
        self, vendor: str, account_id: str, keys: Iterable[tuple[str, str, str, str]]
    ) -> dict[str, AlertState]: ...
    def put_alert(self, state: AlertState) -> bool: ...
    def mark_removed(self, usages: Iterable[StoredUsage], *, removed_at: str) -> None: ...
    def acquire_lease(self, vendor: str, account_id: str, *, owner: str, now: datetime, seconds: float) -> bool: ...
    def holds_lease(self, vendor: str, account_id: str, *, owner: str, now: datetime) -> bool: ...
    def release_lease(self, vendor: str, account_id: str, *, owner: str) -> None: ...
    def tenant_usage(self, vendor: str, account_id: str, tenant_id: str, period: str) -> list[StoredUsage]: ...

    def period_usage(
        self, period: str, *, vendor: str | None = None, account_id: str | None = None
    ) -> list[StoredUsage]: ...
    def start_chunked_run(self, key: ChunkKey, *, started_at: str, chunk_count: int) -> None: ...
    def complete_chunk(
        self,
        key: ChunkKey,
        index: int,
        *,
        failures: dict[str, tuple[str, str]],
        error: str | None,
        read: Iterable[str] = (),
    ) -> ChunkedRunState: ...
    def claim_finish(self, key: ChunkKey) -> bool: ...
    def runs(self, vendor: str, account_id: str, *, limit: int = 10) -> list[RunRecord]: ...
    def tenant_series(self, vendor: str, account_id: str, tenant_id: str, period: str) -> dict[str, MetricSeries]: ...
    def closing_values(self, vendor: str, account_id: str, period: str) -> dict[tuple[str, str], Number]: ...


class WorkQueue(Protocol):
    def send(self, item: WorkItem) -> None: ...


@dataclass
class AccountOutcome:
    account_id: str
    status: str = "ok"
    periods: list[str] = field(default_factory=list)
    tenants_collected: int = 0
    tenants_failed: int = 0
    records_written: int = 0
    alerts_published: int = 0
    publish_failures: int = 0
    digest_sent: bool = False
    chunks: int = 0
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    totals: dict[str, Number] = field(default_factory=dict)
    """The run's period totals by metric (none when the account failed)."""
    last_success_at: str | None = None
    """When the account's latest ok or partial run finished: this one, or an earlier one found among its last
    runs while it fails (None when none is found or the account was not finished by this run)."""


@dataclass
class RunSummary:
    vendor: str
    period: str
    as_of: str
    run_id: str
    accounts: list[AccountOutcome] = field(default_factory=list)

    @property
    def failed_accounts(self) -> list[AccountOutcome]:
        return [a for a in self.accounts if a.status == "failed"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "period": self.period,
            "periods": sorted({p for a in self.accounts for p in a.periods}),
            "as_of": self.as_of,
            "run_id": self.run_id,
            "accounts": len(self.accounts),
            "accounts_failed": len(self.failed_accounts),
            "accounts_skipped": [a.account_id for a in self.accounts if a.status == "skipped"],
            "tenants_collected": sum(a.tenants_collected for a in self.accounts),
            "tenants_failed": sum(a.tenants_failed for a in self.accounts),
            "records_written": sum(a.records_written for a in self.accounts),
            "alerts_published": sum(a.alerts_published for a in self.accounts),
            "publish_failures": sum(a.publish_failures for a in self.accounts),
            "digests_sent": sum(a.digest_sent for a in self.accounts),
            "account_results": [asdict(a) for a in self.accounts],
        }


class _Totals:
    """Running sums per (period, metric) over billed tenants."""

    def __init__(self) -> None:
        self.sums: dict[tuple[str, str], list[Any]] = {}

    def add(self, period: str, metric: str, unit: str, value: Number, tenant_id: str, *, carried: bool) -> None:
        entry = self.sums.setdefault((period, metric), [unit, 0, set(), 0])
        entry[1] += value
        entry[2].add(tenant_id)
        entry[3] += carried

    def carry(self, record: UsageRecord) -> None:
        """A stored number not read this run, kept in its total (billed tenants only)."""
        if record.tenant.billed:
            self.add(str(record.period), record.metric, record.unit, record.value, record.tenant_id, carried=True)

    def totals(self, vendor: str, account_id: str, computed_at: str, missing: Sequence[str] = ()) -> list[Total]:
        return [
            Total(
                vendor,
                account_id,
                period,
                metric,
                unit,
                value,
                len(tenants),
                carried,
                computed_at,
                complete=not missing,
                missing=tuple(missing),
            )
            for (period, metric), (unit, value, tenants, carried) in sorted(self.sums.items())
        ]


@dataclass
class _AccountRun:
    """What one account's run has seen so far."""

    vendor: str
    account_id: str
    started: datetime
    outcome: AccountOutcome = field(init=False)
    totals: _Totals = field(default_factory=_Totals)
    findings: list[Finding] = field(default_factory=list)
    ok_tenants: dict[str, str] = field(default_factory=dict)
    billed_tenants: set[str] = field(default_factory=set)
    failures: dict[str, TenantFailureInfo] = field(default_factory=dict)
    periods: set[str] = field(default_factory=set)
    read: set[tuple[str, str]] = field(default_factory=set)
    metrics_read: set[tuple[str, str, str]] = field(default_factory=set)
    silent_tenants: set[str] = field(default_factory=set)
    open_states: dict[str, AlertState] | None = None
    readings: dict[Reading, UsageRecord] = field(default_factory=dict)
    watched: set[Reading] = field(default_factory=set)
    error: str | None = None
    leased: bool = False
    gaps: dict[str, Tenant] = field(default_factory=dict)
    """Parts of the listing that failed (ListingGap), by tenant id: the customers beneath are unknown."""
    incomplete: list[str] = field(default_factory=list)
    billing: BillingView | None = None
    """Customers and contracts of this account (None: not configured or not readable: billing alerts kept)."""

    def __post_init__(self) -> None:
        self.outcome = AccountOutcome(self.account_id)

    def watch(self, open_states: dict[str, AlertState]) -> None:
        """Remember the firing alerts, so this run keeps the records that may resolve them."""
        self.open_states = open_states
        self.watched = {(s.tenant_id, s.metric, s.period) for s in open_states.values() if not s.is_collection}

    def observe(self, record: UsageRecord, findings: list[Finding]) -> None:
        period = str(record.period)
        self.periods.add(period)
        self.read.add((record.tenant_id, period))
        self.metrics_read.add((record.tenant_id, record.metric, period))
        key = (record.tenant_id, record.metric, period)
        if key in self.watched:
            self.readings[key] = record
        if record.tenant.billed:
            self.totals.add(period, record.metric, record.unit, record.value, record.tenant_id, carried=False)
        self.findings.extend(findings)
        if self.billing is not None:
            self.billing.observe(record)
        self.outcome.records_written += 1

    def fail(self, error: str) -> None:
        self.error = error
        logger.error("account collection failed", extra={"account_id": self.account_id, "error": error})


def _clean(message: str) -> str:
    text = redactor.scrub(message)
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 3] + "..."


def _beneath(tenant_id: str, ancestor: str, parents: Mapping[str, str | None]) -> bool:
    """Whether `ancestor` is on the tenant's chain of parents (as stored)."""
    seen: set[str] = set()
    current = parents.get(tenant_id)
    while current is not None and current not in seen:
        if current == ancestor:
            return True
        seen.add(current)
        current = parents.get(current)
    return False


def _hidden(gap: Tenant, unseen: set[str], parents: Mapping[str, str | None], *, alone: bool) -> int:
    """How many stored customers not seen this run a failed part of the listing may hide.

    Those beneath it (by their stored parents); else, for the run's only gap, every unseen customer; else those
    beneath the gap's own parent (a folder's customers are stored under the company that holds the folder).
    """
    beneath = sum(1 for tenant_id in unseen if _beneath(tenant_id, gap.tenant_id, parents))
    if beneath or not unseen:
        return beneath
    if alone:
        return len(unseen)
    if gap.parent_tenant_id is not None:
        return sum(1 for tenant_id in unseen if _beneath(tenant_id, gap.parent_tenant_id, parents))
    return sum(1 for tenant_id in unseen if parents.get(tenant_id) is None)


def run_id_for(vendor: str, request: CollectionRequest) -> str:
    return f"{vendor}:{utc_iso(request.as_of)}"


@dataclass
class Pipeline(Generic[AccountT]):
    source: Source[AccountT]
    store: UsageStore
    publisher: Publisher
    rules: RulesDocument
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    work_queue: WorkQueue | None = None
    budget_seconds: float = DEFAULT_BUDGET_SECONDS
    remaining: Callable[[], float] | None = None
    """Seconds left in the invocation; accounts are not started once less than the reserve is left."""
    deadline_reserve: float = DEADLINE_RESERVE_SECONDS
    billing: BillingReader | None = None
    """Customers and contracts (docs/billing.md), for the under_billed and unmapped_tenant rules."""
    lease_owner: str = field(default_factory=lambda: uuid4().hex)
    """This invocation's name on the account leases it takes (unique, so a duplicate delivery is not us)."""

    def run(self, accounts: Sequence[AccountT], request: CollectionRequest) -> RunSummary:
        summary = RunSummary(
            vendor=self.source.vendor,
            period=str(request.period),
            as_of=utc_iso(request.as_of),
            run_id=run_id_for(self.source.vendor, request),
        )
        request = replace(request, deadline=self._deadline())
        for account in accounts:
            if self._out_of_time(request.deadline):
                summary.accounts.append(self._skip_account(account, request, summary.run_id))
                continue
            summary.accounts.append(self._collect_account(account, request, summary.run_id))
        return summary

    def _deadline(self) -> Deadline | None:
        """When vendor requests must end: the invocation's time left less the reserve (None: no deadline)."""
        remaining = self.remaining
        if remaining is None:
            return None
        return Deadline(lambda: remaining() - self.deadline_reserve)

    def _out_of_time(self, deadline: Deadline | None) -> bool:
        """An account is not started once the deadline stopped another one or less than the reserve is left."""
        if deadline is None or self.remaining is None:
            return False
        return deadline.reached or self.remaining() < self.deadline_reserve

    def _skip_account(self, account: AccountT, request: CollectionRequest, run_id: str) -> AccountOutcome:
        """Not started before the run's deadline: reported as a failed collection, its numbers left as stored."""
        run = _AccountRun(self.source.vendor, self.source.account_id(account), self.clock())
        run.fail("skipped: the run's deadline came before this account was started")
        try:
            run.watch(self.store.open_alerts(run.vendor, run.account_id))
        except StoreError as exc:
            logger.error("open alerts not read", extra={"account_id": run.account_id, "error": _clean(str(exc))})
        outcome = self._finish(run, request, run_id, status="skipped")
        return outcome

    def _collect_account(self, account: AccountT, request: CollectionRequest, run_id: str) -> AccountOutcome:
        run = _AccountRun(self.source.vendor, self.source.account_id(account), self.clock())
        try:
            leased = self.store.acquire_lease(
                run.vendor, run.account_id, owner=self.lease_owner, now=run.started, seconds=self._lease_seconds()
            )
        except StoreError as exc:
            run.fail(_clean(str(exc)))
            return self._finish(run, request, run_id)
        if not leased:
            # Another invocation (a duplicate delivery, a retry, a manual run) is collecting this account: it
            # owns the run record and the alerts, so this one touches neither.
            logger.info("account skipped: another run holds its lease", extra={"account_id": run.account_id})
            run.outcome.status, run.outcome.error = "skipped", LEASE_TAKEN
            run.outcome.periods = [str(request.period)]
            return run.outcome
        run.leased = True
        try:
            outcome = self._collect_leased(account, run, request, run_id)
        finally:
            if run.outcome.status != "continued":
                self._release(run)
        return outcome

    def _lease_seconds(self) -> float:
        if self.remaining is None:
            return LEASE_SECONDS
        return max(0.0, self.remaining()) + LEASE_MARGIN_SECONDS

    def _release(self, run: _AccountRun) -> None:
        try:
            self.store.release_lease(run.vendor, run.account_id, owner=self.lease_owner)
        except StoreError as exc:
            logger.warning("lease not released; it expires", extra={"account_id": run.account_id, "error": str(exc)})

    def _still_leased(self, run: _AccountRun) -> bool:
        try:
            return self.store.holds_lease(run.vendor, run.account_id, owner=self.lease_owner, now=self.clock())
        except StoreError as exc:
            logger.error("lease not checked", extra={"account_id": run.account_id, "error": _clean(str(exc))})
            return False

    def _collect_leased(
        self, account: AccountT, run: _AccountRun, request: CollectionRequest, run_id: str
    ) -> AccountOutcome:
        self._record_start(run, request, run_id)
        try:
            run.watch(self.store.open_alerts(run.vendor, run.account_id))
        except StoreError as exc:
            run.fail(_clean(str(exc)))
            return self._finish(run, request, run_id)
        self._load_billing(run, request)
        queue = self.work_queue
        if queue is not None and isinstance(self.source, ChunkedSource):
            try:
                chunks = self.source.plan_chunks(account, request, self.budget_seconds)
            except UsagewatchError as exc:
                run.fail(_clean(str(exc)))
                return self._finish(run, request, run_id)
            if chunks:
                return self._dispatch(queue, run, request, chunks)
        self._stream(run, self.source.collect(account, request), request)
        return self._finish(run, request, run_id)

    def _stream(self, run: _AccountRun, results: Iterable[TenantResult], request: CollectionRequest) -> None:
        """Store every tenant's records as they arrive; keep what the finish needs (sums, findings)."""
        trends = Trends(self.store, self.rules)
        try:
            for result in results:
                tenant = result.tenant
                if isinstance(result, ListingGap):
                    run.gaps[tenant.tenant_id] = tenant
                if isinstance(result, TenantFailure):
                    run.failures[tenant.tenant_id] = TenantFailureInfo(tenant.tenant_name, _clean(result.error))
                    continue
                judged = trends.judge(result.records, request.as_of)
                self.store.add_tenant([r for r, _ in judged], as_of=request.as_of, collected_at=self.clock())
                for record, findings in judged:
                    run.observe(record, findings)
                run.ok_tenants[tenant.tenant_id] = tenant.tenant_name
                if tenant.billed:
                    run.billed_tenants.add(tenant.tenant_id)
                if not result.records:
                    run.silent_tenants.add(tenant.tenant_id)
            self.store.flush()
        except UsagewatchError as exc:
            deadline = request.deadline
            reached = deadline is not None and deadline.reached
            run.fail(_clean(f"{DEADLINE_REACHED}: {exc}" if reached else str(exc)))
        finally:
            if isinstance(self.source, NotingSource):
                run.outcome.notes += [_clean(n) for n in self.source.drain_notes(run.account_id)]

    def _load_billing(self, run: _AccountRun, request: CollectionRequest) -> None:
        if self.billing is None:
            return
        try:
            run.billing = load_view(self.billing, run.vendor, run.account_id, request.period)
        except StoreError as exc:
            logger.warning(
                "customers and contracts not read: billing alerts left as they are this run",
                extra={"account_id": run.account_id, "error": _clean(str(exc))},
            )

    def _billing_findings(self, run: _AccountRun, open_states: Mapping[str, AlertState]) -> set[Reading]:
        """Add this run's billing findings (and customers to findings on their tenants); the customer
        readings judged, so an under_billed alert whose contract or mapping is gone resolves."""
        view = run.billing
        if view is None:
            return set()
        reader = self.billing

        def names() -> dict[str, str]:
            try:
                return {c.customer_id: c.name for c in reader.customers()} if reader else {}
            except StoreError as exc:
                logger.warning("customer names not read", extra={"error": _clean(str(exc))})
                return {}

        findings, failed_owners = view.findings(self.rules, run.failures, names)
        run.findings = view.with_customers([*run.findings, *findings])
        return view.judged(failed_owners, open_states.values())

    def _record_start(self, run: _AccountRun, request: CollectionRequest, run_id: str) -> None:
        """A `running` run record, overwritten by the finish: a run killed midway stays visibly unfinished."""
        started = utc_iso(run.started)
        record = RunRecord(
            vendor=run.vendor,
            account_id=run.account_id,
            run_id=run_id,
            as_of=utc_iso(request.as_of),
            started_at=started,
            finished_at="",
            status="running",
            periods=(str(request.period),),
            tenants_ok=0,
            tenants_failed=0,
            records_written=0,
            alerts_published=0,
            errors=(),
        )
        try:
            self.store.write_run(record)
        except StoreError as exc:
            logger.error("run start not recorded", extra={"account_id": run.account_id, "error": _clean(str(exc))})

    def _previous_states(self, run: _AccountRun, open_states: dict[str, AlertState]) -> dict[str, AlertState]:
        """The stored states (resolved or closed) of alerts this run found that are not firing."""
        wanted = {
            (f.record.tenant_id, str(f.record.period), f.record.metric, f.rule)
            for f in run.findings
            if alert_id(
                f.record.vendor, f.record.account_id, f.record.tenant_id, f.record.metric, f.rule, str(f.record.period)
            )
            not in open_states
        }
        if not wanted:
            return {}
        return self.store.alert_states(run.vendor, run.account_id, wanted)

    def _previous_failures(
        self, run: _AccountRun, account_error: str | None, open_states: Mapping[str, AlertState]
    ) -> dict[str, AlertState]:
        """The stored, no longer firing collection states of the tenants (or the account) failing now."""
        failing = [ACCOUNT_WIDE] if account_error is not None else list(run.failures)
        wanted = {
            (tenant_id, "", "", COLLECTION_RULE)
            for tenant_id in failing
            if alert_id(run.vendor, run.account_id, tenant_id, "", COLLECTION_RULE, "") not in open_states
        }
        if not wanted:
            return {}
        try:
            return self.store.alert_states(run.vendor, run.account_id, wanted)
        except StoreError as exc:
            logger.warning("earlier collection states not read", extra={"error": _clean(str(exc))})
            return {}

    @staticmethod
    def _revive_reopened(open_states: dict[str, AlertState], previous: dict[str, AlertState]) -> set[str]:
        """Alerts closed because their period ended, found again by a re-collection of that period.

        They come back as open (same episode, already published) so the breach is not announced twice.
        """
        revived: set[str] = set()
        for identifier, state in previous.items():
            if state.status == "closed" and state.reason == PERIOD_ENDED:
                open_states[identifier] = replace(state, status="firing", reason=None)
                revived.add(identifier)
        return revived

    def _finish(
        self,
        run: _AccountRun,
        request: CollectionRequest,
        run_id: str,
        *,
        carry_failed: bool = True,
        status: str | None = None,
    ) -> AccountOutcome:
        """Totals, alert transitions (published, then stored) and the run record of one account."""
        vendor, account_id, outcome = run.vendor, run.account_id, run.outcome
        if not run.periods:
            run.periods.add(str(request.period))
        outcome.periods = sorted(run.periods)
        outcome.tenants_collected = len(run.ok_tenants.keys() & run.billed_tenants)
        outcome.tenants_failed = len(run.failures)
        account_error = run.error
        previous: dict[str, AlertState] = {}
        revived: set[str] = set()
        removed: dict[str, str] = {}
        judged: set[Reading] = set()

        try:
            if account_error is None:
                if carry_failed:
                    self._carry_failed_tenants(
                        run.totals, vendor, account_id, run.failures, run.periods, run.ok_tenants
                    )
                    removed = self._reconcile_listing(run, request)
                computed_at = utc_iso(self.clock())
                totals = run.totals.totals(vendor, account_id, computed_at, run.incomplete)
                self.store.write_totals(totals)
                outcome.totals = {t.metric: t.value for t in totals if t.period == str(request.period)}
            open_states = run.open_states if run.open_states is not None else self.store.open_alerts(vendor, account_id)
            judged = self._billing_findings(run, open_states) if account_error is None else set()
            if run.billing is None:
                # Nothing known of customers this run: their alerts are neither resolved nor refreshed.
                open_states = {k: s for k, s in open_states.items() if s.rule not in BILLING_RULES}
            previous = self._previous_states(run, open_states) if account_error is None else {}
            revived = self._revive_reopened(open_states, previous)
        except StoreError as exc:
            account_error = account_error or _clean(str(exc))
            open_states = None

        transitions: list[Transition] = []
        if open_states is not None:
            # A tenant that answered with no records at all (no licence) was read for every period.
            read = run.read | {(t, p) for t in run.silent_tenants for p in run.periods} | {(t, p) for t, _, p in judged}
            whole = (entry := registry.find(vendor)) is not None and entry.whole_readings
            transitions = advance(
                open_states,
                vendor=vendor,
                account_id=account_id,
                document=self.rules,
                now=request.as_of,
                observed=Observed(
                    frozenset(run.ok_tenants.keys() | {t for t, _, _ in judged}),
                    frozenset(run.periods),
                    frozenset(read),
                    metrics=frozenset(run.metrics_read | judged),
                    silent=frozenset(run.silent_tenants | (run.ok_tenants.keys() if whole else set())),
                ),
                findings=run.findings,
                account_error=account_error,
                tenant_failures=run.failures,
                ok_tenants=run.ok_tenants,
                readings=run.readings,
                previous=previous,
                failing_previous=self._previous_failures(run, account_error, open_states),
                removed=removed,
                ended=revived,
            )
        if run.leased and transitions and not self._still_leased(run):
            # Another run took the account over (this one outlived its lease): it publishes, this one must not.
            transitions, account_error, status = [], LEASE_LOST, "skipped"
        digest = partial(
            build_digest, vendor=vendor, account_id=account_id, run_id=run_id, observed_at=utc_iso(request.as_of)
        )
        dispatched = Dispatcher(self.publisher, self.store, workers=PUBLISHERS).apply(transitions, digest)
        outcome.alerts_published += dispatched.published
        outcome.digest_sent = outcome.digest_sent or dispatched.digest is not None
        outcome.publish_failures += dispatched.publish_failures
        if dispatched.store_error is not None and account_error is None:
            # Published but not stored: failing the invocation makes Lambda's retry redo it with the same
            # as_of, and the same transitions carry the same event ids.
            account_error = f"alert states not stored after publishing: {_clean(str(dispatched.store_error))}"

        outcome.status = status or (
            "failed" if account_error else ("partial" if run.failures or outcome.publish_failures else "ok")
        )
        outcome.error = account_error
        errors = ([account_error] if account_error else []) + [
            f"tenant {tid} ({info.tenant_name}): {info.error}" for tid, info in run.failures.items()
        ]
        record = RunRecord(
            vendor=vendor,
            account_id=account_id,
            run_id=run_id,
            as_of=utc_iso(request.as_of),
            started_at=utc_iso(run.started),
            finished_at=utc_iso(self.clock()),
            status=outcome.status,  # type: ignore[arg-type]
            periods=tuple(outcome.periods),
            tenants_ok=outcome.tenants_collected,
            tenants_failed=outcome.tenants_failed,
            records_written=outcome.records_written,
            alerts_published=outcome.alerts_published,
            errors=tuple(errors[:MAX_ERRORS_KEPT]),
            notes=tuple(outcome.notes[:MAX_ERRORS_KEPT]),
        )
        outcome.last_success_at = record.finished_at if outcome.status in SUCCEEDED else self._last_success(run)
        try:
            self.store.write_run(record)
        except StoreError as exc:
            logger.error("run record not written", extra={"account_id": account_id, "error": _clean(str(exc))})
        return outcome

    def _last_success(self, run: _AccountRun) -> str | None:
        """When the account's latest successful run among its last LAST_RUNS_READ finished (None if none)."""
        try:
            runs = self.store.runs(run.vendor, run.account_id, limit=LAST_RUNS_READ)
        except StoreError as exc:
            logger.warning("earlier runs not read", extra={"account_id": run.account_id, "error": _clean(str(exc))})
            return None
        return next((r.finished_at for r in runs if r.status in SUCCEEDED and r.finished_at), None)

    # --- beyond one invocation ----------------------------------------------------------------

    def _dispatch(
        self, queue: WorkQueue, run: _AccountRun, request: CollectionRequest, chunks: list[list[dict[str, Any]]]
    ) -> AccountOutcome:
        """Hand an account too large for one invocation to the work queue, one message per chunk."""
        outcome = run.outcome
        key = ChunkKey(run.vendor, run.account_id, utc_iso(request.as_of))
        try:
            self.store.start_chunked_run(key, started_at=utc_iso(run.started), chunk_count=len(chunks))
            for index, tenants in enumerate(chunks):
                queue.send(WorkItem(key, str(request.period), request.period_explicit, index, len(chunks), tenants))
        except UsagewatchError as exc:
            run.fail(_clean(str(exc)))
            return self._finish(run, request, run_id_for(run.vendor, request))
        outcome.status = "continued"
        outcome.chunks = len(chunks)
        logger.info("account continued on the work queue", extra={"account_id": run.account_id, "chunks": len(chunks)})
        return outcome

    def run_chunk(self, account: AccountT, work: WorkItem) -> AccountOutcome | None:
        """Collect one chunk; the worker completing the last one finishes the account from the stored items.

        Returns the account's outcome when this call finished it, else None.
        """
        if not isinstance(self.source, ChunkedSource):
            raise ConfigError(f"{self.source.vendor} does not split its work into chunks")
        request = replace(work.request(), deadline=self._deadline())
        run = _AccountRun(self.source.vendor, self.source.account_id(account), self.clock())
        self._stream(run, self.source.collect_chunk(account, request, work.tenants), request)
        failures = {tid: (info.tenant_name, info.error) for tid, info in run.failures.items()}
        read = run.ok_tenants.keys() - run.silent_tenants
        state = self.store.complete_chunk(work.key, work.index, failures=failures, error=run.error, read=read)
        if state.done < state.count or not self.store.claim_finish(work.key):
            return None
        return self._finish_from_store(run.account_id, request, state)

    def _finish_from_store(self, account_id: str, request: CollectionRequest, state: ChunkedRunState) -> AccountOutcome:
        """Rebuild sums and findings from what the chunks stored; numbers older than the run are carried."""
        run = _AccountRun(self.source.vendor, account_id, parse_utc(state.started_at))
        run.watch(self.store.open_alerts(run.vendor, account_id))
        self._load_billing(run, request)
        run.failures = {tid: TenantFailureInfo(name, error) for tid, (name, error) in state.failures.items()}
        if state.errors:
            run.fail("; ".join(state.errors))
        candidates = [str(request.period)] + ([] if request.period_explicit else [str(request.period.previous())])
        trends = Trends(self.store, self.rules)
        for period in candidates:
            stored = self.store.period_usage(period, vendor=run.vendor, account_id=account_id)
            fresh = [
                u.record for u in stored if u.record.tenant_id in state.read and u.record.tenant_id not in run.failures
            ]
            if not fresh:
                continue
            for record in fresh:
                findings = evaluate(record, self.rules, request.as_of) + trends.jump_findings(record, request.as_of)
                run.observe(record, findings)
                run.ok_tenants[record.tenant_id] = record.tenant.tenant_name
                if record.tenant.billed:
                    run.billed_tenants.add(record.tenant_id)
            seen = {r.tenant_id for r in fresh}
            for usage in stored:
                if usage.record.tenant_id not in seen:
                    run.totals.carry(usage.record)
        return self._finish(run, request, run_id_for(run.vendor, request), carry_failed=False)

    def _reconcile_listing(self, run: _AccountRun, request: CollectionRequest) -> dict[str, str]:
        """Customers stored for this run's periods that the run did not see at all.

        After a listing with gaps they may be hidden beneath a failed part: their last numbers are carried (and
        a gap hiding no stored customer makes the totals incomplete). After a complete listing they are gone:
        their items are marked removed (out of the totals) and their ids returned, to close their alerts.
        """
        seen = run.ok_tenants.keys() | run.failures.keys()
        unseen: dict[str, list[StoredUsage]] = {}
        parents: dict[str, str | None] = {}
        for period in sorted(run.periods):
            for usage in self.store.period_usage(period, vendor=run.vendor, account_id=run.account_id):
                tenant = usage.record.tenant
                parents[tenant.tenant_id] = tenant.parent_tenant_id
                if tenant.tenant_id not in seen and not usage.removed_at:
                    unseen.setdefault(tenant.tenant_id, []).append(usage)
        if run.gaps:
            for usages in unseen.values():
                for usage in usages:
                    run.totals.carry(usage.record)
            for gap_id, gap in run.gaps.items():
                hidden = _hidden(gap, set(unseen), parents, alone=len(run.gaps) == 1)
                info = run.failures[gap_id]
                if hidden:
                    note = f"; {hidden} customer(s) beneath it, known from earlier runs, keep their last numbers"
                else:
                    note = "; no customer beneath it was stored before, so the totals are incomplete"
                    run.incomplete.append(gap.tenant_name)
                run.failures[gap_id] = TenantFailureInfo(info.tenant_name, _clean(info.error + note))
            return {}
        if not unseen:
            return {}
        self.store.mark_removed([u for usages in unseen.values() for u in usages], removed_at=utc_iso(request.as_of))
        logger.info("customers no longer listed", extra={"account_id": run.account_id, "tenants": sorted(unseen)})
        return {tenant_id: usages[0].record.tenant.tenant_name or tenant_id for tenant_id, usages in unseen.items()}

    def _carry_failed_tenants(
        self,
        totals: _Totals,
        vendor: str,
        account_id: str,
        failures: dict[str, TenantFailureInfo],
        periods: set[str],
        collected: Mapping[str, str] | None = None,
    ) -> None:
        """A tenant that failed this run keeps its last stored numbers in the total, so totals match the items.

        A listing gap whose own tenant was read this run (a company whose children could not be read) is not
        carried: its fresh numbers are in the total already.
        """
        for tenant_id in failures:
            if collected is not None and tenant_id in collected:
                continue
            for period in periods:
                for usage in self.store.tenant_usage(vendor, account_id, tenant_id, period):
                    totals.carry(usage.record)
