"""One digest per run and account: the events this run published, grouped for people. Pure.

The digest is built from the events SNS accepted in this run and nothing else, so it never announces a change that
was not published, and a retried run lists what the retry (re)published (docs/alerts.md section 14).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

from usagewatch.events import BREACHED, DIGEST, FAILED, RECOVERED, RESOLVED, SCHEMA_VERSION, Digest
from usagewatch.notify import digest_summary, vendor_name
from usagewatch.rules import DEFAULT_RULES, RulesDocument

Event = dict[str, Any]
SHOWN_PER_GROUP: Final = 5
SECTIONS: Final = (BREACHED, RESOLVED, FAILED, RECOVERED)
_SEVERITY_RANK: Final = {"critical": 0, "warning": 1, "info": 2}


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    return Decimal(str(value))


def loss(event: Mapping[str, Any]) -> Decimal:
    """What a breach costs or risks the operator, in the metric's units (a share of the quota for
    `quota_utilization`): the digest lists the largest first. 0 for other changes, or without the numbers."""
    if event.get("event_type") != BREACHED:
        return Decimal(0)
    rule = event.get("rule")
    value, quota = _number(event.get("value")), _number(event.get("quota"))
    threshold, projected = _number(event.get("threshold")), _number(event.get("projected"))
    pairs: dict[str, tuple[Decimal | None, Decimal | None]] = {
        "unused_licences": (quota, value),
        "vendor_limit_exceeded": (value, quota),
        "over_quota": (value, quota),
        "under_billed": (value, quota),
        "projected_over_quota": (projected, quota),
        "below_minimum_commitment": (threshold, value),
        "usage_jump": (value, threshold),
        "unmapped_tenant": (value, Decimal(0)),
        "tenant_overlap": (value, Decimal(0)),
    }
    if rule == "quota_utilization":
        return value / quota if value is not None and quota else Decimal(0)
    high, low = pairs.get(str(rule), (None, None))
    return max(high - low, Decimal(0)) if high is not None and low is not None else Decimal(0)


def is_minor(event: Mapping[str, Any], document: RulesDocument) -> bool:
    """A low-value breach (today: fewer unused seats than `unused_licences.digest_fold_below`), counted, not listed."""
    return (
        event.get("event_type") == BREACHED
        and event.get("rule") == "unused_licences"
        and loss(event) < document.rules.unused_licences.digest_fold_below
    )


def _entry_text(event: Mapping[str, Any]) -> str:
    """The event's summary without the vendor's name, which the digest's heading already gives."""
    summary = str(event["summary"])
    prefix = f"{vendor_name(str(event['vendor']))} "
    return summary[len(prefix) :] if summary.startswith(prefix) else summary


def _group_key(event: Mapping[str, Any]) -> tuple[int, int, str]:
    return (SECTIONS.index(event["event_type"]), _SEVERITY_RANK[event["severity"]], str(event.get("rule", "")))


def _entry_order(event: Mapping[str, Any]) -> tuple[Decimal, str, str]:
    return (-loss(event), str(event.get("tenant_name", "")), str(event["event_id"]))


def digest_id(vendor: str, account_id: str, observed_at: str, event_ids: Sequence[str]) -> str:
    text = "\x1f".join((DIGEST, vendor, account_id, observed_at, *sorted(event_ids)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def build_digest(
    published: Sequence[Mapping[str, Any]],
    *,
    vendor: str,
    account_id: str,
    run_id: str,
    observed_at: str,
    document: RulesDocument = DEFAULT_RULES,
) -> Event | None:
    """The digest of the alert events one run published for one account; None when it published none.

    Minor breaches (`is_minor`) are counted in their group, never listed, and make neither the severity nor the
    headline unless the run published nothing else."""
    events = [e for e in published if e.get("event_type") in SECTIONS]
    if not events:
        return None
    minor = {str(e["event_id"]) for e in events if is_minor(e, document)}
    grouped: dict[tuple[int, int, str], list[Mapping[str, Any]]] = {}
    for event in events:
        grouped.setdefault(_group_key(event), []).append(event)
    groups: list[dict[str, Any]] = []
    for key in sorted(grouped):
        members = sorted(grouped[key], key=_entry_order)
        first = members[0]
        group: dict[str, Any] = {"event_type": first["event_type"], "severity": first["severity"]}
        if first.get("rule"):
            group["rule"] = first["rule"]
        group["count"] = len(members)
        shown = [e for e in members if str(e["event_id"]) not in minor]
        group["entries"] = [
            {
                "event_id": e["event_id"],
                "alert_id": e["alert_id"],
                "tenant_name": e["tenant_name"],
                "summary": _entry_text(e),
            }
            for e in shown[:SHOWN_PER_GROUP]
        ]
        if folded := len(members) - len(shown):
            group["minor"] = folded
            group["minor_below"] = document.rules.unused_licences.digest_fold_below
        groups.append(group)
    counts = {kind: n for kind in SECTIONS if (n := sum(1 for e in events if e["event_type"] == kind))}
    major = [e for e in events if str(e["event_id"]) not in minor] or events
    severity = min((e["severity"] for e in major), key=_SEVERITY_RANK.__getitem__)
    body: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "event_type": DIGEST,
        "event_id": digest_id(vendor, account_id, observed_at, [str(e["event_id"]) for e in events]),
        "severity": severity,
        "vendor": vendor,
        "account_id": account_id,
        "run_id": run_id,
        "observed_at": observed_at,
        "counts": counts,
        "groups": groups,
        "summary": digest_summary(vendor, account_id, counts, minor=len(minor)),
    }
    return Digest.model_validate(body).body()
