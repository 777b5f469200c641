"""The end of one account's run: totals, alert transitions (published, then stored), the run record."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Final

from usagewatch import registry
from usagewatch.alerts import Observed, Reading, Transition, advance, alert_id
from usagewatch.billing_alerts import BILLING_RULES
from usagewatch.digest import build_digest
from usagewatch.dispatch import Dispatcher
from usagewatch.errors import StoreError
from usagewatch.model import CollectionRequest, utc_iso
from usagewatch.observability import logger
from usagewatch.pipeline.account import AccountRun
from usagewatch.pipeline.base import PipelineBase
from usagewatch.pipeline.listing import carry_failed_tenants, reconcile_listing
from usagewatch.pipeline.outcome import LEASE_LOST, PERIOD_ENDED, SUCCEEDED, AccountOutcome
from usagewatch.stored import ACCOUNT_WIDE, COLLECTION_RULE, AlertState, RunRecord
from usagewatch.text import clip_error

MAX_ERRORS_KEPT: Final = 25
PUBLISHERS: Final = 8
# Runs read back to find the last successful one of a failing account (the dashboard's age of the last success).
LAST_RUNS_READ: Final = 50


@dataclass
class AlertInputs:
    """What the lifecycle step needs besides the run: the open alerts and what the table says of others."""

    open_states: dict[str, AlertState]
    judged: set[Reading] = field(default_factory=set)
    previous: dict[str, AlertState] = field(default_factory=dict)
    revived: set[str] = field(default_factory=set)
    removed: dict[str, str] = field(default_factory=dict)


class AccountFinisher(PipelineBase):
    """The end of one account's run, in steps: counts, totals, alert inputs, transitions, publishing, record."""

    def _finish(
        self,
        run: AccountRun,
        request: CollectionRequest,
        run_id: str,
        *,
        carry_failed: bool = True,
        status: str | None = None,
    ) -> AccountOutcome:
        """Totals, alert transitions (published, then stored) and the run record of one account."""
        self._settle_counts(run, request)
        account_error = run.error
        inputs: AlertInputs | None
        try:
            removed = self._store_totals(run, request, carry_failed=carry_failed) if account_error is None else {}
            inputs = self._alert_inputs(run, account_error, removed)
        except StoreError as exc:
            account_error = account_error or clip_error(str(exc))
            inputs = None
        transitions = [] if inputs is None else self._transitions(run, request, inputs, account_error)
        if run.leased and transitions and not self._still_leased(run):
            # Another run took the account over (this one outlived its lease): it publishes, this one must not.
            transitions, account_error, status = [], LEASE_LOST, "skipped"
        account_error = self._publish(run, request, run_id, transitions, account_error)
        return self._record_finish(run, request, run_id, account_error, status)

    @staticmethod
    def _settle_counts(run: AccountRun, request: CollectionRequest) -> None:
        outcome = run.outcome
        if not run.periods:
            run.periods.add(str(request.period))
        outcome.periods = sorted(run.periods)
        outcome.tenants_collected = len(run.ok_tenants.keys() & run.billed_tenants)
        outcome.tenants_failed = len(run.failures)

    def _store_totals(self, run: AccountRun, request: CollectionRequest, *, carry_failed: bool) -> dict[str, str]:
        """Carry the failed tenants and reconcile the listing (the customers gone are returned); write the totals."""
        removed: dict[str, str] = {}
        if carry_failed:
            carry_failed_tenants(self.store, run)
            removed = reconcile_listing(self.store, run, request)
        totals = run.totals.totals(run.vendor, run.account_id, utc_iso(self.clock()), run.incomplete)
        self.store.write_totals(totals)
        run.outcome.totals = {t.metric: t.value for t in totals if t.period == str(request.period)}
        return removed

    def _alert_inputs(self, run: AccountRun, account_error: str | None, removed: dict[str, str]) -> AlertInputs:
        """The open alerts (billing ones only when customers were read), the billing readings judged, the
        stored states of alerts found again and those reopened for an ended period."""
        open_states = (
            run.open_states if run.open_states is not None else self.store.open_alerts(run.vendor, run.account_id)
        )
        inputs = AlertInputs(open_states, removed=removed)
        if account_error is None:
            inputs.judged = self._billing_findings(run, open_states)
        if run.billing is None:
            # Nothing known of customers this run: their alerts are neither resolved nor refreshed.
            inputs.open_states = {k: s for k, s in open_states.items() if s.rule not in BILLING_RULES}
        if account_error is None:
            inputs.previous = self._previous_states(run, inputs.open_states)
        inputs.revived = self._revive_reopened(inputs.open_states, inputs.previous)
        return inputs

    def _transitions(
        self, run: AccountRun, request: CollectionRequest, inputs: AlertInputs, account_error: str | None
    ) -> list[Transition]:
        judged = inputs.judged
        # A tenant that answered with no records at all (no licence) was read for every period.
        read = run.read | {(t, p) for t in run.silent_tenants for p in run.periods} | {(t, p) for t, _, p in judged}
        whole = (entry := registry.find(run.vendor)) is not None and entry.whole_readings
        return advance(
            inputs.open_states,
            vendor=run.vendor,
            account_id=run.account_id,
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
            previous=inputs.previous,
            failing_previous=self._previous_failures(run, account_error, inputs.open_states),
            removed=inputs.removed,
            ended=inputs.revived,
        )

    def _publish(
        self,
        run: AccountRun,
        request: CollectionRequest,
        run_id: str,
        transitions: list[Transition],
        account_error: str | None,
    ) -> str | None:
        """Publish the transitions (and the digest), then store their states; the account's error after it."""
        outcome = run.outcome
        digest = partial(
            build_digest,
            vendor=run.vendor,
            account_id=run.account_id,
            run_id=run_id,
            observed_at=utc_iso(request.as_of),
            document=self.rules,
        )
        dispatched = Dispatcher(self.publisher, self.store, workers=PUBLISHERS).apply(transitions, digest)
        outcome.alerts_published += dispatched.published
        outcome.digest_sent = outcome.digest_sent or dispatched.digest is not None
        outcome.publish_failures += dispatched.publish_failures
        if dispatched.store_error is not None and account_error is None:
            # Published but not stored: failing the invocation makes Lambda's retry redo it with the same
            # as_of, and the same transitions carry the same event ids.
            return f"alert states not stored after publishing: {clip_error(str(dispatched.store_error))}"
        return account_error

    def _record_finish(
        self,
        run: AccountRun,
        request: CollectionRequest,
        run_id: str,
        account_error: str | None,
        status: str | None,
    ) -> AccountOutcome:
        """The account's status and its run record (written; a failure to write it is logged)."""
        outcome = run.outcome
        outcome.status = status or (
            "failed" if account_error else ("partial" if run.failures or outcome.publish_failures else "ok")
        )
        outcome.error = account_error
        errors = ([account_error] if account_error else []) + [
            f"tenant {tid} ({info.tenant_name}): {info.error}" for tid, info in run.failures.items()
        ]
        record = RunRecord(
            vendor=run.vendor,
            account_id=run.account_id,
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
            logger.error("run record not written", extra={"account_id": run.account_id, "error": clip_error(str(exc))})
        return outcome

    def _still_leased(self, run: AccountRun) -> bool:
        try:
            return self.store.holds_lease(run.vendor, run.account_id, owner=self.lease_owner, now=self.clock())
        except StoreError as exc:
            logger.error("lease not checked", extra={"account_id": run.account_id, "error": clip_error(str(exc))})
            return False

    def _billing_findings(self, run: AccountRun, open_states: Mapping[str, AlertState]) -> set[Reading]:
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
                logger.warning("customer names not read", extra={"error": clip_error(str(exc))})
                return {}

        findings, failed_owners = view.findings(self.rules, run.failures, names)
        run.findings = view.with_customers([*run.findings, *findings])
        return view.judged(failed_owners, open_states.values())

    def _previous_states(self, run: AccountRun, open_states: dict[str, AlertState]) -> dict[str, AlertState]:
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
        self, run: AccountRun, account_error: str | None, open_states: Mapping[str, AlertState]
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
            logger.warning("earlier collection states not read", extra={"error": clip_error(str(exc))})
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

    def _last_success(self, run: AccountRun) -> str | None:
        """When the account's latest successful run among its last LAST_RUNS_READ finished (None if none)."""
        try:
            runs = self.store.runs(run.vendor, run.account_id, limit=LAST_RUNS_READ)
        except StoreError as exc:
            logger.warning("earlier runs not read", extra={"account_id": run.account_id, "error": clip_error(str(exc))})
            return None
        return next((r.finished_at for r in runs if r.status in SUCCEEDED and r.finished_at), None)
