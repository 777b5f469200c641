"""One collection run: for each account, read -> store -> evaluate -> reconcile alerts -> publish.

A tenant that fails is recorded and the others go on. An account that fails writes no totals and
resolves nothing (missing data is not good news); the run goes on with the other accounts and the
caller fails the invocation at the end, so Lambda's retry and on-failure destination see it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Generic, Protocol, TypeVar

from usagewatch.alerts import Event, Observed, TenantFailureInfo, Transition, reconcile_failures, reconcile_thresholds
from usagewatch.errors import PublishError, StoreError, UsagewatchError
from usagewatch.model import (
    AlertState,
    CollectionRequest,
    Number,
    RunRecord,
    Source,
    TenantFailure,
    Total,
    UsageRecord,
    utc_iso,
)
from usagewatch.observability import logger
from usagewatch.redaction import redactor
from usagewatch.rules import Finding, RulesDocument, evaluate

MAX_ERRORS_KEPT: Final = 25
MAX_ERROR_LENGTH: Final = 500
AccountT = TypeVar("AccountT")


class UsageStore(Protocol):
    def add_usage(self, record: UsageRecord, *, as_of: datetime, collected_at: datetime) -> None: ...
    def flush(self) -> None: ...
    def write_totals(self, totals: Iterable[Total]) -> None: ...
    def write_run(self, run: RunRecord) -> None: ...
    def open_alerts(self, vendor: str, account_id: str) -> dict[str, AlertState]: ...
    def put_alert(self, state: AlertState) -> None: ...
    def tenant_usage(self, vendor: str, account_id: str, tenant_id: str, period: str) -> list[dict[str, Any]]: ...


class Publisher(Protocol):
    def publish(self, event: Event) -> str: ...


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
    error: str | None = None


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
            "tenants_collected": sum(a.tenants_collected for a in self.accounts),
            "tenants_failed": sum(a.tenants_failed for a in self.accounts),
            "records_written": sum(a.records_written for a in self.accounts),
            "alerts_published": sum(a.alerts_published for a in self.accounts),
            "publish_failures": sum(a.publish_failures for a in self.accounts),
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

    def totals(self, vendor: str, account_id: str, computed_at: str) -> list[Total]:
        return [
            Total(vendor, account_id, period, metric, unit, value, len(tenants), carried, computed_at)
            for (period, metric), (unit, value, tenants, carried) in sorted(self.sums.items())
        ]


def _clean(message: str) -> str:
    text = redactor.scrub(message)
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 3] + "..."


def run_id_for(vendor: str, request: CollectionRequest) -> str:
    return f"{vendor}:{utc_iso(request.as_of)}"


@dataclass
class Pipeline(Generic[AccountT]):
    source: Source[AccountT]
    store: UsageStore
    publisher: Publisher
    rules: RulesDocument
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def run(self, accounts: Sequence[AccountT], request: CollectionRequest) -> RunSummary:
        summary = RunSummary(
            vendor=self.source.vendor,
            period=str(request.period),
            as_of=utc_iso(request.as_of),
            run_id=run_id_for(self.source.vendor, request),
        )
        for account in accounts:
            summary.accounts.append(self._collect_account(account, request, summary.run_id))
        return summary

    def _collect_account(self, account: AccountT, request: CollectionRequest, run_id: str) -> AccountOutcome:
        vendor = self.source.vendor
        account_id = self.source.account_id(account)
        outcome = AccountOutcome(account_id)
        started = self.clock()
        totals = _Totals()
        findings: list[Finding] = []
        ok_tenants: dict[str, str] = {}
        billed_tenants: set[str] = set()
        failures: dict[str, TenantFailureInfo] = {}
        periods: set[str] = set()
        account_error: str | None = None
        try:
            for result in self.source.collect(account, request):
                tenant = result.tenant
                if isinstance(result, TenantFailure):
                    failures[tenant.tenant_id] = TenantFailureInfo(tenant.tenant_name, _clean(result.error))
                    continue
                collected_at = self.clock()
                for record in result.records:
                    self.store.add_usage(record, as_of=request.as_of, collected_at=collected_at)
                    period = str(record.period)
                    periods.add(period)
                    if tenant.billed:
                        totals.add(period, record.metric, record.unit, record.value, tenant.tenant_id, carried=False)
                    findings.extend(evaluate(record, self.rules, request.as_of))
                    outcome.records_written += 1
                ok_tenants[tenant.tenant_id] = tenant.tenant_name
                if tenant.billed:
                    billed_tenants.add(tenant.tenant_id)
            self.store.flush()
        except UsagewatchError as exc:
            account_error = _clean(str(exc))
            logger.error("account collection failed", extra={"account_id": account_id, "error": account_error})
        if not periods:
            periods.add(str(request.period))
        outcome.periods = sorted(periods)
        outcome.tenants_collected = len(ok_tenants.keys() & billed_tenants)
        outcome.tenants_failed = len(failures)

        try:
            if account_error is None:
                self._carry_failed_tenants(totals, vendor, account_id, failures, periods)
                self.store.write_totals(totals.totals(vendor, account_id, utc_iso(self.clock())))
            open_states = self.store.open_alerts(vendor, account_id)
        except StoreError as exc:
            account_error = account_error or _clean(str(exc))
            open_states = None

        transitions: list[Transition] = []
        if open_states is not None:
            if account_error is None:
                observed = Observed(frozenset(ok_tenants), frozenset(periods))
                transitions += reconcile_thresholds(open_states, findings, observed, self.rules, request.as_of)
            transitions += reconcile_failures(
                open_states,
                vendor=vendor,
                account_id=account_id,
                account_error=account_error,
                tenant_failures=failures if account_error is None else {},
                ok_tenants=ok_tenants,
                document=self.rules,
                now=request.as_of,
            )
        self._apply(transitions, outcome)

        outcome.status = "failed" if account_error else ("partial" if failures or outcome.publish_failures else "ok")
        outcome.error = account_error
        errors = ([account_error] if account_error else []) + [
            f"tenant {tid} ({info.tenant_name}): {info.error}" for tid, info in failures.items()
        ]
        run = RunRecord(
            vendor=vendor,
            account_id=account_id,
            run_id=run_id,
            as_of=utc_iso(request.as_of),
            started_at=utc_iso(started),
            finished_at=utc_iso(self.clock()),
            status=outcome.status,  # type: ignore[arg-type]
            periods=tuple(outcome.periods),
            tenants_ok=outcome.tenants_collected,
            tenants_failed=outcome.tenants_failed,
            records_written=outcome.records_written,
            alerts_published=outcome.alerts_published,
            errors=tuple(errors[:MAX_ERRORS_KEPT]),
        )
        try:
            self.store.write_run(run)
        except StoreError as exc:
            logger.error("run record not written", extra={"account_id": account_id, "error": _clean(str(exc))})
        return outcome

    def _carry_failed_tenants(
        self, totals: _Totals, vendor: str, account_id: str, failures: dict[str, TenantFailureInfo], periods: set[str]
    ) -> None:
        """A tenant that failed this run keeps its last stored numbers in the total, so totals match the items."""
        for tenant_id in failures:
            for period in periods:
                for item in self.store.tenant_usage(vendor, account_id, tenant_id, period):
                    if item.get("billed", True):
                        totals.add(period, item["metric"], item["unit"], item["value"], tenant_id, carried=True)

    def _apply(self, transitions: list[Transition], outcome: AccountOutcome) -> None:
        """Publish first, store after: a state advances only once SNS accepted its event."""
        for transition in transitions:
            if transition.event is not None:
                try:
                    self.publisher.publish(transition.event)
                except PublishError as exc:
                    outcome.publish_failures += 1
                    logger.error(
                        "alert not published; it will be retried next run",
                        extra={"alert_id": transition.state.alert_id, "error": _clean(str(exc))},
                    )
                    continue
                outcome.alerts_published += 1
            try:
                self.store.put_alert(transition.state)
            except StoreError as exc:
                logger.error(
                    "alert state not stored",
                    extra={"alert_id": transition.state.alert_id, "error": _clean(str(exc))},
                )
