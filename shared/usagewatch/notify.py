"""Wording: what an alert says to a person (summaries, SNS subjects, the e-mail text). Pure; no state machine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from usagewatch import registry
from usagewatch.events import (
    BREACHED,
    DIGEST,
    FAILED,
    PSA_PLAN_FAILED,
    PSA_PLAN_READY,
    RECOVERED,
    REPORT_READY,
    RESOLVED,
    TENANT_REMOVED,
)
from usagewatch.model import Number
from usagewatch.stored import ACCOUNT_WIDE, AlertState
from usagewatch.text import chat_text, one_line

SUBJECT_LIMIT: Final = 100


def fmt(number: Number | None) -> str:
    if number is None:
        return "n/a"
    if isinstance(number, float) and not number.is_integer():
        return f"{number:,.2f}"
    return f"{int(number):,}"


def vendor_name(vendor: str) -> str:
    return registry.display_name(vendor)


def _metric_words(metric: str) -> str:
    """A metric as stored, as the CLI, the CSV and the rules document name it (`spe_e5`, `cloud_units`)."""
    return metric


def threshold_summary(event_type: str, state: AlertState) -> str:
    who = f"{vendor_name(state.vendor)} {state.tenant_name}"
    what = _metric_words(state.metric)
    if event_type == RESOLVED and state.reason == TENANT_REMOVED:
        return f"{who}: no longer listed by the vendor; {state.rule} on {what} for {state.period} closed"
    if event_type == RESOLVED and state.reason == "current" and state.rule == "unused_licences":
        used = f"{fmt(state.value)} of {fmt(state.quota)} assigned"
        fewer = f"fewer than {fmt(state.threshold)} unused"
        return f"{who}: {what} for {state.period}: {fewer} ({used}); {state.rule} cleared"
    if event_type == RESOLVED and state.reason == "current" and state.rule == "usage_jump":
        return f"{who}: {what} for {state.period}: {fmt(state.value)}, no longer a jump; usage_jump cleared"
    if event_type == RESOLVED and state.reason == "current":
        limit = f" (limit {fmt(state.quota)})" if state.quota is not None else ""
        return f"{who}: {what} back within limits for {state.period}: {fmt(state.value)}{limit}; {state.rule} cleared"
    if event_type == RESOLVED:
        # No reading this run (the metric was not reported): the numbers are the last ones seen while firing.
        bound = state.threshold if state.rule == "below_minimum_commitment" else state.quota
        limit = f" against {fmt(bound)}" if bound is not None else ""
        return f"{who}: {what} for {state.period}: {state.rule} cleared (was {fmt(state.value)}{limit})"
    if state.rule == "vendor_limit_exceeded":
        limit = fmt(state.quota)
        return f"{who}: {what} {fmt(state.value)} over the licence limit {limit} for {state.period} (vendor flag)"
    if state.rule == "over_quota":
        return f"{who}: {what} {fmt(state.value)} for {state.period}, over the {fmt(state.quota)} included"
    if state.rule == "projected_over_quota":
        return (
            f"{who}: {what} projected {fmt(state.projected)} for {state.period}, over the {fmt(state.quota)} included"
        )
    if state.rule == "quota_utilization":
        share = (state.value or 0) / state.quota * 100 if state.quota else 0.0
        return (
            f"{who}: {what} at {share:.0f}% of the {fmt(state.quota)} included for {state.period} ({fmt(state.value)})"
        )
    if state.rule == "below_minimum_commitment":
        return (
            f"{who}: {what} {fmt(state.value)} for {state.period}, below the committed minimum {fmt(state.threshold)}"
        )
    if state.rule == "unused_licences":
        unused = (state.quota or 0) - (state.value or 0)
        return (
            f"{who}: {what} {fmt(unused)} of {fmt(state.quota)} paid seats unused for {state.period}"
            f" ({fmt(state.value)} assigned)"
        )
    if state.rule == "usage_jump" and state.value is not None and state.threshold is not None:
        rise = state.value - state.threshold
        percent = f", +{rise / state.threshold * 100:.0f}%" if state.threshold else ""
        base = fmt(state.threshold)
        return f"{who}: {what} jumped to {fmt(state.value)} for {state.period}, from {base} (+{fmt(rise)}{percent})"
    return f"{who}: {what} {fmt(state.value)} ({state.rule}) for {state.period}"


def collection_summary(event_type: str, state: AlertState) -> str:
    vendor = vendor_name(state.vendor)
    scope = f"account {state.account_id}" if state.tenant_id == ACCOUNT_WIDE else f"{state.tenant_name}"
    if event_type == FAILED:
        return f"{vendor} {scope}: collection failed: {one_line(state.error or '')}"
    if state.reason == TENANT_REMOVED:
        return f"{vendor} {scope}: no longer listed by the vendor; its collection failure is closed"
    return f"{vendor} {scope}: collected again after failing since {state.since}"


def psa_plan_headline(event: Mapping[str, Any]) -> str:
    """What a finance reader acts on in a `psa.plan.ready`: how many changes wait for approval, the plan's worth."""
    waiting = int(event["proposals"].get("proposed", 0))
    if not waiting:
        return f"nothing waiting for approval in {event['period']}"
    return (
        f"{waiting} change(s) waiting for approval in {event['period']}, the plan worth {event['currency']} "
        f"{event['value']} a month"
    )


def subject_for(event: Mapping[str, Any]) -> str:
    """Short, human, ASCII: SNS subjects must be printable ASCII under 100 characters."""
    kind = {
        BREACHED: "REPEAT" if event.get("repeat") else "ALERT",
        RESOLVED: "RESOLVED",
        FAILED: "COLLECTION FAILED",
        RECOVERED: "RECOVERED",
        REPORT_READY: "BILLING REPORT",
        PSA_PLAN_READY: "PSA PLAN",
        PSA_PLAN_FAILED: "PSA PLAN NOT MADE",
        DIGEST: "DIGEST",
    }.get(event["event_type"], event["event_type"])
    about = psa_plan_headline(event) if event["event_type"] == PSA_PLAN_READY else event["summary"]
    text = one_line(f"[usagewatch] {kind}: {about}")
    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)
    if len(text) <= SUBJECT_LIMIT:
        return text
    cut = text[: SUBJECT_LIMIT - 3]
    return (cut.rsplit(" ", 1)[0] if " " in cut[40:] else cut).rstrip(",;: ") + "..."


_ADVICE: Final = {
    "vendor_limit_exceeded": "The vendor reports this customer over its licence limit: raise the licence or "
    "reduce usage, and bill the overage.",
    "over_quota": "The customer uses more than is licensed or contracted: bill the overage or raise the quota.",
    "projected_over_quota": "At the current rate the customer will end the period over quota: review before "
    "the period ends.",
    "quota_utilization": "The customer is close to its quota: plan an upgrade conversation.",
    "below_minimum_commitment": "Usage is under the committed minimum: the minimum will be invoiced.",
    "unused_licences": "Seats are paid for and assigned to nobody: assign them or reduce the subscription at its "
    "next renewal.",
    "usage_jump": "Usage rose sharply: check that it is expected and that it is billed.",
}


def _projected(event: Mapping[str, Any]) -> str:
    source = event.get("projection_source")
    by = " (projected by usagewatch from this period's readings)" if source == "usagewatch" else ""
    return fmt(event.get("projected")) + (by if event.get("projected") is not None else "")


def render_email(event: Mapping[str, Any]) -> str:
    """The text email subscribers read: what, who, how much, against which limit, the period, what to do."""
    if event["event_type"] == DIGEST:
        return render_digest_email(event)
    lines = [one_line(str(event["summary"])), ""]
    kind = event["event_type"]
    fields: list[tuple[str, Any]] = [
        ("Event", kind),
        ("Severity", event.get("severity")),
        ("Vendor", vendor_name(event["vendor"])),
        ("Account", event.get("account_id")),
        ("Customer", f"{event.get('tenant_name')} ({event.get('tenant_id', 'whole account')})"),
    ]
    if kind in (BREACHED, RESOLVED):
        fields += [
            ("Metric", _metric_words(event["metric"])),
            ("Period", event["period"]),
            (
                "Usage" if kind == BREACHED or event.get("values_from") == "this run" else "Usage while firing",
                fmt(event.get("value")),
            ),
            ("Quota", fmt(event.get("quota"))),
            ("Projected", _projected(event)),
            ("Threshold", fmt(event.get("threshold"))),
            ("Rule", event["rule"]),
        ]
    if kind == FAILED:
        fields.append(("Error", event.get("error")))
    fields += [("Observed at", event["observed_at"]), ("Alert id", event["alert_id"])]
    lines += [f"{name}: {one_line(str(value))}" for name, value in fields if value is not None]
    lines.append("")
    if kind == BREACHED:
        lines.append(_ADVICE.get(event["rule"], "Review this customer's usage."))
        if event.get("repeat"):
            lines.append(f"Reminder: still firing since {event.get('firing_since')}.")
    elif kind == RESOLVED:
        lines.append("No action needed: the condition no longer holds.")
    elif kind == FAILED:
        lines.append(
            "Usage for this scope was not updated: the numbers shown elsewhere are from the last successful "
            "collection. Check the credential and the vendor's status; you will be told when it recovers."
        )
    else:
        lines.append("Collection works again; usage is current.")
    return "\n".join(lines)


# --- the digest (one per run and account) and chat -------------------------------------------------------------

_SECTION_TITLES: Final = {
    BREACHED: "NEW ALERTS",
    RESOLVED: "RESOLVED",
    FAILED: "COLLECTION FAILURES",
    RECOVERED: "COLLECTION RECOVERED",
}
_COUNT_WORDS: Final = {
    BREACHED: ("new alert", "new alerts"),
    RESOLVED: ("resolved", "resolved"),
    FAILED: ("collection failure", "collection failures"),
    RECOVERED: ("recovered", "recovered"),
}


def digest_summary(vendor: str, account_id: str, counts: Mapping[str, int], *, minor: int = 0) -> str:
    """The headline: minor breaches (docs/alerts.md section 14) counted apart from the new alerts that matter."""
    parts: list[str] = []
    for kind, n in counts.items():
        if kind not in _COUNT_WORDS or not n:
            continue
        if kind == BREACHED and minor:
            if n > minor:
                parts.append(f"{n - minor} {_COUNT_WORDS[kind][n - minor != 1]}")
            parts.append(f"{minor} minor" if n > minor else f"{minor} minor {('alert', 'alerts')[minor != 1]}")
        else:
            parts.append(f"{n} {_COUNT_WORDS[kind][n != 1]}")
    return f"{vendor_name(vendor)} account {account_id}: {', '.join(parts)}"


def _section_count(digest: Mapping[str, Any], kind: str) -> str:
    total = digest["counts"][kind]
    minor = sum(g.get("minor", 0) for g in digest["groups"] if g["event_type"] == kind)
    if not minor:
        return str(total)
    return f"{total - minor} (and {minor} minor)" if total > minor else f"{minor} minor"


def _group_heading(group: Mapping[str, Any]) -> str:
    rule = group.get("rule")
    count = f"{group['count']}" + (f" ({group['minor']} minor)" if group.get("minor") else "")
    if group["event_type"] == BREACHED:
        return f"{group['severity']}, {rule}: {count}"
    return f"{rule}: {count}" if rule else f"{group['severity']}: {count}"


def _minor_line(group: Mapping[str, Any]) -> str:
    """The count line of a group's minor changes (only `unused_licences` has them today)."""
    n = group["minor"]
    what = ("change", "changes")[n != 1]
    if group.get("rule") == "unused_licences":
        what = ("customer/SKU", "customers/SKUs")[n != 1] + f" with fewer than {group['minor_below']} unused seats"
    return f"{n} minor: {what}; usagewatch alerts --rule {group.get('rule')} lists every one"


def _digest_sections(digest: Mapping[str, Any], bullet: str) -> list[str]:
    lines: list[str] = []
    for kind, title in _SECTION_TITLES.items():
        groups = [g for g in digest["groups"] if g["event_type"] == kind]
        if not groups:
            continue
        lines += [f"{title}: {_section_count(digest, kind)}"]
        for group in groups:
            lines.append(f"  {_group_heading(group)}")
            lines += [f"    {bullet} {one_line(entry['summary'])}" for entry in group["entries"]]
            rest = group["count"] - group.get("minor", 0) - len(group["entries"])
            if rest > 0:
                lines.append(f"    ... and {rest} more")
            if group.get("minor"):
                lines.append(f"    + {_minor_line(group)}")
        lines.append("")
    return lines


def render_digest_email(digest: Mapping[str, Any]) -> str:
    """One e-mail per run and account: every change this run published, grouped, the first few of each group."""
    lines = [one_line(str(digest["summary"])), ""]
    lines += [f"Run: {digest['run_id']}", f"Observed at: {digest['observed_at']}", ""]
    lines += _digest_sections(digest, "-")
    rules = sorted({g["rule"] for g in digest["groups"] if g["event_type"] == BREACHED and g.get("rule")})
    if rules:
        lines.append("What to do:")
        lines += [f"  {rule}: {_ADVICE.get(rule, 'Review these customers.')}" for rule in rules]
        lines.append("")
    lines.append(
        "Every change above was also published on its own, with its event and alert ids, to the topic's other "
        "subscribers; `usagewatch alerts` lists what is firing now."
    )
    lines.append(f"Digest id: {digest['event_id']}")
    return "\n".join(lines)


CHAT_TITLE_LIMIT: Final = 250
CHAT_DESCRIPTION_LIMIT: Final = 8000
_CHAT_ICONS: Final = {"critical": ":rotating_light:", "warning": ":warning:", "info": ":information_source:"}


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def chat_message(event: Mapping[str, Any]) -> dict[str, Any]:
    """The event as an AWS Chatbot custom notification (docs/deploying.md): a title, a description, keywords.

    Chatbot renders client-markdown as the chat platform's markdown, so the text (vendor names, metrics and
    error messages among it) goes through `chat_text`: it reads literally and mentions no one."""
    if event["event_type"] == DIGEST:
        description = "\n".join(_digest_sections(event, "•")).strip()
    else:
        body = render_email(event).split("\n")[2:]
        description = "\n".join(line for line in body if line)
    summary = chat_text(one_line(str(event["summary"])))
    return {
        "version": "1.0",
        "source": "custom",
        "id": str(event["event_id"]),
        "content": {
            "textType": "client-markdown",
            "title": _cut(f"{_CHAT_ICONS[event['severity']]} usagewatch: {summary}", CHAT_TITLE_LIMIT),
            "description": _cut(chat_text(description), CHAT_DESCRIPTION_LIMIT),
            "keywords": [
                chat_text(vendor_name(str(event["vendor"]))),
                chat_text(str(event["account_id"])),
                str(event["severity"]),
            ],
        },
        "metadata": {
            "threadId": f"usagewatch-{event['vendor']}-{event['account_id']}",
            "summary": _cut(summary, CHAT_TITLE_LIMIT),
            "eventType": str(event["event_type"]),
            "additionalContext": {"event_id": str(event["event_id"]), "account_id": str(event["account_id"])},
        },
    }
