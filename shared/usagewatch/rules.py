"""The rules document (docs/alerts.md section 10) and its evaluation: records + rules -> findings. Pure."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from fnmatch import fnmatchcase
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from usagewatch import registry
from usagewatch.errors import ConfigError
from usagewatch.model import MAX_PLAUSIBLE_VALUE, Number, UsageRecord
from usagewatch.stored import COLLECTION_RULE
from usagewatch.validation import describe

Severity = Literal["info", "warning", "critical"]
LADDER: Final = ("vendor_limit_exceeded", "over_quota", "projected_over_quota", "quota_utilization")
"""The precedence ladder, highest first: on one record only the highest rule that holds fires."""
# Judged by the pipeline from customers and contracts (billing_alerts.py), not per record by `evaluate`.
BILLING_RULE_NAMES: Final = ("under_billed", "unmapped_tenant", "tenant_overlap")
RULE_NAMES: Final = (*LADDER, "below_minimum_commitment", "unused_licences", "usage_jump", *BILLING_RULE_NAMES)
Share = Annotated[float, Field(ge=0.0, le=1.0)]
MAX_REPEAT_HOURS: Final = 24 * 366
"""A repeat interval longer than a year never repeats anything; a bound keeps `timedelta` from overflowing."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _known(vendors: tuple[str, ...]) -> tuple[str, ...]:
    if any(not registry.is_known(v) for v in vendors):
        raise ValueError(f"unknown vendor (one of {', '.join(registry.vendor_ids())})")
    return vendors


class RuleConfig(_Strict):
    enabled: bool = True
    severity: Severity = "warning"


class ProjectedRule(RuleConfig):
    min_period_elapsed: Share = 0.0


class VendorChoiceRule(RuleConfig):
    """A rule that judges some vendors only: those the document lists, or else those the registry says."""

    vendors: tuple[str, ...] | None = Field(default=None, strict=False)
    judges_unknown: ClassVar[bool] = False
    """Whether a vendor nobody registered (an old record) is judged when the document lists none."""

    @field_validator("vendors")
    @classmethod
    def _known_vendors(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return None if value is None else _known(value)

    def judges(self, vendor: str) -> bool:
        if self.vendors is not None:
            return vendor in self.vendors
        entry = registry.find(vendor)
        return self.judges_by_default(entry) if entry is not None else self.judges_unknown

    @staticmethod
    def judges_by_default(entry: registry.Vendor) -> bool:
        """What the vendor's registry entry says, for a document that lists no vendors."""
        raise NotImplementedError


class UtilizationRule(VendorChoiceRule):
    """`vendors` None: every vendor whose registry entry says `utilization_alerts` (all but Microsoft 365)."""

    threshold: Share = 0.9
    judges_unknown: ClassVar[bool] = True

    @staticmethod
    def judges_by_default(entry: registry.Vendor) -> bool:
        return entry.utilization_alerts


class MinimumRule(RuleConfig):
    days_before_period_end: Annotated[int, Field(ge=0, le=31)] = 3


Pattern = Annotated[str, Field(min_length=1, max_length=200)]


class UnusedOverride(_Strict):
    metric: Pattern
    vendor: Pattern = "*"
    threshold: Annotated[int, Field(ge=1, le=MAX_PLAUSIBLE_VALUE)]


class UnusedLicencesRule(VendorChoiceRule):
    """Seats paid for and not assigned: `quota - value >= threshold` (docs/alerts.md section 3). `vendors` None:
    every vendor whose registry entry says `unused_licence_alerts` (Microsoft 365)."""

    threshold: Annotated[int, Field(ge=1, le=MAX_PLAUSIBLE_VALUE)] = 1
    exclude: tuple[Pattern, ...] | None = Field(default=None, strict=False)
    """None: each vendor's `free_metrics` from its registry entry (Microsoft 365's free and trial SKUs)."""
    overrides: tuple[UnusedOverride, ...] = Field(default=(), strict=False)
    digest_fold_below: Annotated[int, Field(ge=0, le=MAX_PLAUSIBLE_VALUE)] = 5
    """Breaches with fewer unused seats than this are minor: a digest counts them in one line and leaves them out
    of its headline and severity (docs/alerts.md section 14). 0 or 1 folds none."""

    @staticmethod
    def judges_by_default(entry: registry.Vendor) -> bool:
        return entry.unused_licence_alerts

    def excludes(self, vendor: str, metric: str) -> bool:
        """Whether `metric` is never judged: free or trial, by the document's list or else the vendor's own."""
        if self.exclude is not None:
            patterns = self.exclude
        else:
            entry = registry.find(vendor)
            patterns = entry.free_metrics if entry is not None else ()
        return any(fnmatchcase(metric, pattern) for pattern in patterns)

    def threshold_for(self, record: UsageRecord) -> int | None:
        """The unused seats at which `record` alerts, or None when the rule does not apply to it."""
        if not self.judges(record.vendor) or self.excludes(record.vendor, record.metric):
            return None
        for override in self.overrides:
            if fnmatchcase(record.vendor, override.vendor) and fnmatchcase(record.metric, override.metric):
                return override.threshold
        return self.threshold


def is_free_metric(vendor: str, metric: str) -> bool:
    """A metric the vendor gives away (its registry `free_metrics`): stored and shown, never billed or judged."""
    entry = registry.find(vendor)
    return entry is not None and any(fnmatchcase(metric, pattern) for pattern in entry.free_metrics)


Amount = Annotated[float, Field(ge=0, le=MAX_PLAUSIBLE_VALUE)] | Annotated[int, Field(ge=0, le=MAX_PLAUSIBLE_VALUE)]


class JumpOverride(_Strict):
    """Other thresholds for one vendor's metric (the first entry that matches wins)."""

    vendor: str
    metric: str = Field(min_length=1)
    percent: Amount | None = None
    units: Amount | None = None

    @field_validator("vendor")
    @classmethod
    def _known_vendor(cls, value: str) -> str:
        return _known((value,))[0]


class JumpRule(RuleConfig):
    percent: Amount = 25
    units: Amount = 10
    overrides: tuple[JumpOverride, ...] = Field(default=(), strict=False)

    def thresholds(self, vendor: str, metric: str) -> tuple[Number, Number]:
        """(percent, units) for one vendor's metric."""
        for entry in self.overrides:
            if (entry.vendor, entry.metric) == (vendor, metric):
                return (
                    self.percent if entry.percent is None else entry.percent,
                    self.units if entry.units is None else entry.units,
                )
        return self.percent, self.units


class Rules(_Strict):
    vendor_limit_exceeded: RuleConfig = RuleConfig(severity="critical")
    over_quota: RuleConfig = RuleConfig(severity="critical")
    projected_over_quota: ProjectedRule = ProjectedRule()
    quota_utilization: UtilizationRule = UtilizationRule()
    below_minimum_commitment: MinimumRule = MinimumRule(severity="info")
    unused_licences: UnusedLicencesRule = UnusedLicencesRule(severity="info")
    usage_jump: JumpRule = JumpRule(severity="info")
    under_billed: RuleConfig = RuleConfig(severity="warning")
    unmapped_tenant: RuleConfig = RuleConfig(severity="warning")
    tenant_overlap: RuleConfig = RuleConfig(severity="warning")

    def config(self, rule: str) -> RuleConfig:
        value: RuleConfig = getattr(self, rule)
        return value


def _parse_until(value: object) -> datetime:
    """A date means the whole of that day (UTC); a time is taken as given."""
    if isinstance(value, str):
        try:
            if len(value) == 10:
                return datetime.combine(date.fromisoformat(value) + timedelta(days=1), time(), tzinfo=UTC)
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        except ValueError:
            pass
    raise ValueError("expected a date (YYYY-MM-DD) or an ISO 8601 time")


class OperatorQuota(_Strict):
    vendor: str
    tenant_id: str = Field(min_length=1)
    metric: str = Field(min_length=1)
    quota: Annotated[float, Field(ge=0, le=MAX_PLAUSIBLE_VALUE)] | Annotated[int, Field(ge=0, le=MAX_PLAUSIBLE_VALUE)]
    account_id: str = "*"

    @field_validator("vendor")
    @classmethod
    def _known_vendor(cls, value: str) -> str:
        return _known((value,))[0]


class Silence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    vendor: str = "*"
    account_id: str = "*"
    tenant_id: str = "*"
    metric: str = "*"
    rule: str = "*"
    until: datetime
    reason: str = Field(default="", max_length=500)

    @field_validator("until", mode="before")
    @classmethod
    def _until(cls, value: object) -> datetime:
        return _parse_until(value)

    @field_validator("vendor", "account_id", "tenant_id", "metric", "rule")
    @classmethod
    def _pattern(cls, value: str) -> str:
        if not isinstance(value, str) or not value:
            raise ValueError("expected a non-empty string or '*'")
        return value

    @field_validator("vendor")
    @classmethod
    def _known_vendor(cls, value: str) -> str:
        known = registry.vendor_ids()
        if not any(fnmatchcase(vendor, value) for vendor in known):
            raise ValueError(f"matches no vendor (one of {', '.join(known)}, or a pattern)")
        return value

    @field_validator("rule")
    @classmethod
    def _known_rule(cls, value: str) -> str:
        if not any(fnmatchcase(rule, value) for rule in (*RULE_NAMES, COLLECTION_RULE)):
            raise ValueError(f"matches no rule (one of {', '.join((*RULE_NAMES, COLLECTION_RULE))}, or a pattern)")
        return value

    def matches(self, *, vendor: str, account_id: str, tenant_id: str, metric: str, rule: str, now: datetime) -> bool:
        return now < self.until and all(
            fnmatchcase(actual, pattern)
            for actual, pattern in (
                (vendor, self.vendor),
                (account_id, self.account_id),
                (tenant_id, self.tenant_id),
                (metric, self.metric),
                (rule, self.rule),
            )
        )


class RulesDocument(_Strict):
    rules: Rules = Rules()
    # strict=False on the sequence only: a JSON array must be accepted as a tuple (items stay strict).
    quotas: tuple[OperatorQuota, ...] = Field(default=(), strict=False)
    silences: tuple[Silence, ...] = Field(default=(), strict=False)
    repeat_after_hours: (
        Annotated[float, Field(ge=0, le=MAX_REPEAT_HOURS)] | Annotated[int, Field(ge=0, le=MAX_REPEAT_HOURS)]
    ) = 0
    notify_resolved: bool = True

    def operator_quota(self, record: UsageRecord) -> Number | None:
        for entry in self.quotas:
            if (
                entry.vendor == record.vendor
                and entry.tenant_id == record.tenant_id
                and entry.metric == record.metric
                and entry.account_id in ("*", record.account_id)
            ):
                return entry.quota
        return None

    def silenced(self, *, vendor: str, account_id: str, tenant_id: str, metric: str, rule: str, now: datetime) -> bool:
        return any(
            s.matches(vendor=vendor, account_id=account_id, tenant_id=tenant_id, metric=metric, rule=rule, now=now)
            for s in self.silences
        )


DEFAULT_RULES: Final = RulesDocument()


def parse_rules_document(text: str | bytes | dict[str, Any], *, source: str = "rules document") -> RulesDocument:
    """Validate strictly; the ConfigError names every bad field (e.g. `rules.quota_utilization.threshold`)."""
    try:
        data = json.loads(text) if isinstance(text, str | bytes) else text
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except (ValueError, RecursionError) as exc:  # undecodable bytes, absurd nesting
        raise ConfigError(f"{source}: not valid JSON ({type(exc).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a JSON object")
    try:
        return RulesDocument.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {describe(exc)}") from None


@dataclass(frozen=True, slots=True)
class Finding:
    """A rule that holds for one record, with the numbers an event needs."""

    record: UsageRecord
    rule: str
    severity: str
    threshold: Number
    quota: Number | None
    customer_id: str | None = None
    """The customer owning the record's tenant (or the customer an under_billed finding sums)."""

    @property
    def rank(self) -> int:
        return LADDER.index(self.rule) if self.rule in LADDER else len(LADDER)


def evaluate(record: UsageRecord, document: RulesDocument, as_of: datetime) -> list[Finding]:
    """At most one ladder finding (the highest that holds), at most one minimum-commitment finding and at most one
    unused-licences finding."""
    rules = document.rules
    override = document.operator_quota(record)
    quota = override if override is not None else record.quota
    value = record.value
    findings: list[Finding] = []

    def found(rule: str, threshold: Number) -> Finding:
        return Finding(record, rule, rules.config(rule).severity, threshold, quota)

    ladder: Finding | None = None
    if rules.vendor_limit_exceeded.enabled and record.limit_exceeded and override is None:
        ladder = found("vendor_limit_exceeded", quota if quota is not None else value)
    elif rules.over_quota.enabled and quota is not None and value > quota:
        ladder = found("over_quota", quota)
    elif (
        rules.projected_over_quota.enabled
        and quota is not None
        and record.projected is not None
        and record.projected > quota
        and record.window.elapsed_share(as_of) >= rules.projected_over_quota.min_period_elapsed
    ):
        ladder = found("projected_over_quota", quota)
    elif (
        rules.quota_utilization.enabled
        and quota
        and value >= rules.quota_utilization.threshold * quota
        and rules.quota_utilization.judges(record.vendor)
    ):
        ladder = found("quota_utilization", rules.quota_utilization.threshold * quota)
    if ladder is not None:
        findings.append(ladder)

    minimum_rule = rules.below_minimum_commitment
    if (
        minimum_rule.enabled
        and record.minimum is not None
        and value < record.minimum
        and record.window.remaining(as_of) <= timedelta(days=minimum_rule.days_before_period_end)
    ):
        findings.append(found("below_minimum_commitment", record.minimum))

    unused_rule = rules.unused_licences
    unused = unused_rule.threshold_for(record) if unused_rule.enabled and quota is not None else None
    if unused is not None and quota is not None and quota - value >= unused:
        findings.append(found("unused_licences", unused))
    return findings


@dataclass(frozen=True, slots=True)
class Baselines:
    """What a reading is compared with for `usage_jump`: the metric's value at the end of the previous period and
    its value 7 days before the run (None where unknown)."""

    previous_period: Number | None = None
    week_ago: Number | None = None


def jumped(value: Number, base: Number, percent: Number, units: Number) -> bool:
    """A rise of at least `units` and at least `percent` % over `base` (any rise over 0 counts as a percent)."""
    rise = value - base
    return rise > 0 and rise >= units and rise * 100 >= percent * base


def evaluate_jump(record: UsageRecord, document: RulesDocument, baselines: Baselines) -> Finding | None:
    """`usage_jump` (off the ladder): the record rose against the previous period's end, or else 7 days ago;
    `threshold` is the value it rose from."""
    rule = document.rules.usage_jump
    if not rule.enabled:
        return None
    percent, units = rule.thresholds(record.vendor, record.metric)
    for base in (baselines.previous_period, baselines.week_ago):
        if base is not None and jumped(record.value, base, percent, units):
            override = document.operator_quota(record)
            quota = override if override is not None else record.quota
            return Finding(record, "usage_jump", rule.severity, base, quota)
    return None
