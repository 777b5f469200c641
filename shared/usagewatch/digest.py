"""One digest per run and account: the events this run published, grouped for people. Pure.

The digest is built from the events SNS accepted in this run and nothing else, so it never announces a change that
was not published, and a retried run lists what the retry (re)published (docs/alerts.md section 14).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

from usagewatch.events import BREACHED, DIGEST, FAILED, RECOVERED, RESOLVED, SCHEMA_VERSION, Digest
from usagewatch.notify import digest_summary, vendor_name

Event = dict[str, Any]
SHOWN_PER_GROUP: Final = 5
SECTIONS: Final = (BREACHED, RESOLVED, FAILED, RECOVERED)
_SEVERITY_RANK: Final = {"critical": 0, "warning": 1, "info": 2}


def _excess(event: Mapping[str, Any]) -> float:
    """How far over its quota a breach is (the largest first); 0 when there is nothing to compare."""
    quota = event.get("quota")
    number = event.get("projected") if event.get("rule") == "projected_over_quota" else event.get("value")
    if not isinstance(quota, int | float) or not isinstance(number, int | float) or quota <= 0:
        return 0.0
    return float(number) / float(quota)


def _entry_text(event: Mapping[str, Any]) -> str:
    """The event's summary without the vendor's name, which the digest's heading already gives."""
    summary = str(event["summary"])
    prefix = f"{vendor_name(str(event['vendor']))} "
    return summary[len(prefix) :] if summary.startswith(prefix) else summary


def _group_key(event: Mapping[str, Any]) -> tuple[int, int, str]:
    return (SECTIONS.index(event["event_type"]), _SEVERITY_RANK[event["severity"]], str(event.get("rule", "")))


def _entry_order(event: Mapping[str, Any]) -> tuple[float, str, str]:
    return (-_excess(event), str(event.get("tenant_name", "")), str(event["event_id"]))


def digest_id(vendor: str, account_id: str, observed_at: str, event_ids: Sequence[str]) -> str:
    text = "\x1f".join((DIGEST, vendor, account_id, observed_at, *sorted(event_ids)))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def build_digest(
    published: Sequence[Mapping[str, Any]], *, vendor: str, account_id: str, run_id: str, observed_at: str
) -> Event | None:
    """The digest of the alert events one run published for one account; None when it published none."""
    events = [e for e in published if e.get("event_type") in SECTIONS]
    if not events:
        return None
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
        group["entries"] = [
            {
                "event_id": e["event_id"],
                "alert_id": e["alert_id"],
                "tenant_name": e["tenant_name"],
                "summary": _entry_text(e),
            }
            for e in members[:SHOWN_PER_GROUP]
        ]
        groups.append(group)
    counts = {kind: n for kind in SECTIONS if (n := sum(1 for e in events if e["event_type"] == kind))}
    severity = min((e["severity"] for e in events), key=_SEVERITY_RANK.__getitem__)
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
        "summary": digest_summary(vendor, account_id, counts),
    }
    return Digest.model_validate(body).body()
