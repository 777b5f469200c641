"""Beyond one invocation: an account handed to the work queue in chunks, finished by the last chunk."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Generic, TypeVar

from usagewatch.alerts import TenantFailureInfo
from usagewatch.continuation import ChunkedRunState, ChunkKey, WorkItem
from usagewatch.errors import ConfigError, UsagewatchError
from usagewatch.model import (
    ChunkedSource,
    CollectionRequest,
    parse_utc,
    utc_iso,
)
from usagewatch.observability import logger
from usagewatch.pipeline.account import AccountRun
from usagewatch.pipeline.collector_pace import fewer_young_collections
from usagewatch.pipeline.finish import AccountFinisher
from usagewatch.pipeline.outcome import AccountOutcome, run_id_for
from usagewatch.pipeline.ports import WorkQueue
from usagewatch.rules import evaluate
from usagewatch.text import clip_error
from usagewatch.trends import Trends

AccountT = TypeVar("AccountT")


class ChunkRunner(AccountFinisher, Generic[AccountT]):
    """An account too large for one invocation: its chunks on the work queue, the last one finishing it."""

    def _dispatch(
        self, queue: WorkQueue, run: AccountRun, request: CollectionRequest, chunks: list[list[dict[str, Any]]]
    ) -> AccountOutcome:
        """Hand an account too large for one invocation to the work queue, one message per chunk."""
        outcome = run.outcome
        key = ChunkKey(run.vendor, run.account_id, utc_iso(request.as_of))
        try:
            self.store.start_chunked_run(key, started_at=utc_iso(run.started), chunk_count=len(chunks))
            for index, tenants in enumerate(chunks):
                queue.send(WorkItem(key, str(request.period), request.period_explicit, index, len(chunks), tenants))
        except UsagewatchError as exc:
            run.fail(clip_error(str(exc)))
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
        run = AccountRun(self.source.vendor, self.source.account_id(account), self.clock())
        with fewer_young_collections():
            self._stream(run, self.source.collect_chunk(account, request, work.tenants), request)
        failures = {tid: (info.tenant_name, info.error) for tid, info in run.failures.items()}
        read = run.ok_tenants.keys() - run.silent_tenants
        state = self.store.complete_chunk(work.key, work.index, failures=failures, error=run.error, read=read)
        if state.done < state.count or not self.store.claim_finish(work.key):
            return None
        return self._finish_from_store(run.account_id, request, state)

    def _finish_from_store(self, account_id: str, request: CollectionRequest, state: ChunkedRunState) -> AccountOutcome:
        """Rebuild sums and findings from what the chunks stored; numbers older than the run are carried."""
        run = AccountRun(self.source.vendor, account_id, parse_utc(state.started_at))
        run.watch(self.store.open_alerts(run.vendor, account_id))
        self._load_billing(run, request)
        run.failures = {tid: TenantFailureInfo(name, error) for tid, (name, error) in state.failures.items()}
        if state.errors:
            run.fail("; ".join(state.errors))
        candidates = [str(request.period)] + ([] if request.period_explicit else [str(request.period.previous())])
        trends = Trends(self.store, self.rules)
        for period in candidates:
            self._rebuild_period(run, request, state, period, trends)
        return self._finish(run, request, run_id_for(run.vendor, request), carry_failed=False)

    def _rebuild_period(
        self, run: AccountRun, request: CollectionRequest, state: ChunkedRunState, period: str, trends: Trends
    ) -> None:
        """One period's stored items: those the chunks read are judged again, the others carried."""
        stored = self.store.period_usage(period, vendor=run.vendor, account_id=run.account_id)
        fresh = [
            u.record for u in stored if u.record.tenant_id in state.read and u.record.tenant_id not in run.failures
        ]
        if not fresh:
            return
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
