"""One collection run: each account leased, read, streamed to the store and finished; the deadline kept."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Final, TypeVar
from uuid import uuid4

from usagewatch.dispatch import Publisher
from usagewatch.errors import StoreError, UsagewatchError
from usagewatch.model import ChunkedSource, CollectionRequest, Source, utc_iso
from usagewatch.observability import logger
from usagewatch.pacing import Deadline
from usagewatch.pipeline.account import AccountRun
from usagewatch.pipeline.chunks import ChunkRunner
from usagewatch.pipeline.collector_pace import fewer_young_collections
from usagewatch.pipeline.outcome import LEASE_TAKEN, AccountOutcome, RunSummary, run_id_for
from usagewatch.pipeline.ports import UsageStore, WorkQueue
from usagewatch.rules import RulesDocument
from usagewatch.store.interface import BillingReader
from usagewatch.stored import RunRecord
from usagewatch.text import clip_error

AccountT = TypeVar("AccountT")
# Vendor calls one invocation may plan for: the template's 600 s timeout less room to store and publish.
DEFAULT_BUDGET_SECONDS: Final = 420.0
# An account is started only while this much of the invocation is left (at most a tenth of it): room to
# store, publish and record the accounts already collected. Vendor requests end this long before the
# invocation does (the run's Deadline).
DEADLINE_RESERVE_SECONDS: Final = 60.0
# A run's lease on its account outlives the longest Lambda invocation (900 s) when the remaining time is unknown.
LEASE_SECONDS: Final = 960.0
LEASE_MARGIN_SECONDS: Final = 10.0


@dataclass
class Pipeline(ChunkRunner[AccountT]):
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
        with fewer_young_collections():
            for account in accounts:
                if self._out_of_time(request.deadline):
                    summary.accounts.append(self._skip_account(account, request, summary.run_id))
                    continue
                summary.accounts.append(self._collect_account(account, request, summary.run_id))
        return summary

    def _out_of_time(self, deadline: Deadline | None) -> bool:
        """An account is not started once the deadline stopped another one or less than the reserve is left."""
        if deadline is None or self.remaining is None:
            return False
        return deadline.reached or self.remaining() < self.deadline_reserve

    def _skip_account(self, account: AccountT, request: CollectionRequest, run_id: str) -> AccountOutcome:
        """Not started before the run's deadline: reported as a failed collection, its numbers left as stored."""
        run = AccountRun(self.source.vendor, self.source.account_id(account), self.clock())
        run.fail("skipped: the run's deadline came before this account was started")
        try:
            run.watch(self.store.open_alerts(run.vendor, run.account_id))
        except StoreError as exc:
            logger.error("open alerts not read", extra={"account_id": run.account_id, "error": clip_error(str(exc))})
        outcome = self._finish(run, request, run_id, status="skipped")
        return outcome

    def _collect_account(self, account: AccountT, request: CollectionRequest, run_id: str) -> AccountOutcome:
        run = AccountRun(self.source.vendor, self.source.account_id(account), self.clock())
        try:
            leased = self.store.acquire_lease(
                run.vendor, run.account_id, owner=self.lease_owner, now=run.started, seconds=self._lease_seconds()
            )
        except StoreError as exc:
            run.fail(clip_error(str(exc)))
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

    def _release(self, run: AccountRun) -> None:
        try:
            self.store.release_lease(run.vendor, run.account_id, owner=self.lease_owner)
        except StoreError as exc:
            logger.warning("lease not released; it expires", extra={"account_id": run.account_id, "error": str(exc)})

    def _collect_leased(
        self, account: AccountT, run: AccountRun, request: CollectionRequest, run_id: str
    ) -> AccountOutcome:
        self._record_start(run, request, run_id)
        try:
            run.watch(self.store.open_alerts(run.vendor, run.account_id))
        except StoreError as exc:
            run.fail(clip_error(str(exc)))
            return self._finish(run, request, run_id)
        self._load_billing(run, request)
        queue = self.work_queue
        if queue is not None and isinstance(self.source, ChunkedSource):
            try:
                chunks = self.source.plan_chunks(account, request, self.budget_seconds)
            except UsagewatchError as exc:
                run.fail(clip_error(str(exc)))
                return self._finish(run, request, run_id)
            if chunks:
                return self._dispatch(queue, run, request, chunks)
        self._stream(run, self.source.collect(account, request), request)
        return self._finish(run, request, run_id)

    def _record_start(self, run: AccountRun, request: CollectionRequest, run_id: str) -> None:
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
            logger.error("run start not recorded", extra={"account_id": run.account_id, "error": clip_error(str(exc))})
