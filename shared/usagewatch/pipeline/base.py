"""What every part of the pipeline shares: its collaborators and the per-tenant stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from usagewatch.alerts import TenantFailureInfo
from usagewatch.billing_alerts import load_view
from usagewatch.dispatch import Publisher
from usagewatch.errors import StoreError, UsagewatchError
from usagewatch.model import (
    CollectionRequest,
    ListingGap,
    NotingSource,
    Source,
    TenantFailure,
    TenantResult,
)
from usagewatch.observability import logger
from usagewatch.pacing import Deadline
from usagewatch.pipeline.account import AccountRun
from usagewatch.pipeline.outcome import DEADLINE_REACHED
from usagewatch.pipeline.ports import UsageStore, WorkQueue
from usagewatch.rules import RulesDocument
from usagewatch.store.interface import BillingReader
from usagewatch.text import clip_error
from usagewatch.trends import Trends


class PipelineBase:
    """The collaborators `Pipeline` holds (its dataclass fields), declared for the parts that use them."""

    source: Source[Any]
    store: UsageStore
    publisher: Publisher
    rules: RulesDocument
    clock: Callable[[], datetime]
    work_queue: WorkQueue | None
    budget_seconds: float
    remaining: Callable[[], float] | None
    deadline_reserve: float
    billing: BillingReader | None
    lease_owner: str

    def _deadline(self) -> Deadline | None:
        """When vendor requests must end: the invocation's time left less the reserve (None: no deadline)."""
        remaining = self.remaining
        if remaining is None:
            return None
        return Deadline(lambda: remaining() - self.deadline_reserve)

    def _stream(self, run: AccountRun, results: Iterable[TenantResult], request: CollectionRequest) -> None:
        """Store every tenant's records as they arrive; keep what the finish needs (sums, findings)."""
        trends = Trends(self.store, self.rules)
        try:
            for result in results:
                tenant = result.tenant
                if isinstance(result, ListingGap):
                    run.gaps[tenant.tenant_id] = tenant
                if isinstance(result, TenantFailure):
                    run.failures[tenant.tenant_id] = TenantFailureInfo(tenant.tenant_name, clip_error(result.error))
                    continue
                judged = trends.judge(result.records, request.as_of)
                # Stored to the second: a whole second's tenants then share one formatted time (utc_iso's cache).
                collected_at = self.clock().replace(microsecond=0)
                self.store.add_tenant([r for r, _ in judged], as_of=request.as_of, collected_at=collected_at)
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
            run.fail(clip_error(f"{DEADLINE_REACHED}: {exc}" if reached else str(exc)))
        finally:
            if isinstance(self.source, NotingSource):
                run.outcome.notes += [clip_error(n) for n in self.source.drain_notes(run.account_id)]

    def _load_billing(self, run: AccountRun, request: CollectionRequest) -> None:
        if self.billing is None:
            return
        try:
            run.billing = load_view(self.billing, run.vendor, run.account_id, request.period)
        except StoreError as exc:
            logger.warning(
                "customers and contracts not read: billing alerts left as they are this run",
                extra={"account_id": run.account_id, "error": clip_error(str(exc))},
            )
