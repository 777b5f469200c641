"""The stack's dashboard and no-successful-run alarms plot only what the code emits, for every collector.

Every metric the dashboard body (read from template.yaml) plots, as a metric array or a SEARCH expression, is
checked against the catalogue the handler emits through (usagewatch.observability.CATALOGUE; that the handler
emits exactly it is tests/integration/test_metrics.py): namespace, name, dimension names, and the vendor and
service values of the collector the widget belongs to. AWS metrics must name this stack's functions and queues.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import template_loader
from usagewatch.observability import CATALOGUE, RUN_SUCCEEDED, MetricSpec

SPECS: dict[str, MetricSpec] = {spec.name: spec for spec in CATALOGUE}
AWS_METRICS = {
    "AWS/Lambda": ({"Errors", "Invocations", "Duration"}, {"FunctionName"}),
    "AWS/SQS": ({"ApproximateNumberOfMessagesVisible"}, {"QueueName"}),
}
SEARCH = re.compile(r"^SEARCH\('\{(?P<schema>[^}]*)\}(?P<terms>[^']*)',\s*'(?P<stat>\w+)',\s*(?P<period>\d+)\)$")
TERM = re.compile(r'(\w+)="([^"]*)"')
RATE = re.compile(r"^rate\((\d+) (minute|hour|day)s?\)$")


@dataclass(frozen=True)
class Plotted:
    """One metric a widget plots: namespace, name, the dimensions named (with the values given, if any)."""

    widget: str
    namespace: str
    name: str
    dimensions: dict[str, str | None]


@dataclass(frozen=True)
class Collector:
    function_id: str
    vendor: str
    service: str
    timeout_seconds: int
    schedule_parameter: str


def collectors() -> list[Collector]:
    """The template's collector functions (those reading a vendor secret): vendor from functions/<vendor>/."""
    template = template_loader.load_template()
    found = []
    for function_id in template_loader.function_ids():
        resource = template["Resources"][function_id]
        variables = resource["Properties"].get("Environment", {}).get("Variables", {})
        if "VENDOR_SECRET_ID" not in variables:
            continue
        events = resource["Properties"]["Events"]
        (schedule,) = [e["Properties"]["ScheduleExpression"]["Ref"] for e in events.values()]
        timeout = resource["Properties"].get("Timeout", template["Globals"]["Function"]["Timeout"])
        vendor = Path(template_loader.function_code_dir(function_id)).name
        found.append(Collector(function_id, vendor, variables["POWERTOOLS_SERVICE_NAME"], int(timeout), schedule))
    return found


COLLECTORS = collectors()


def plotted(body: dict[str, Any]) -> Iterator[Plotted]:
    for widget in body["widgets"]:
        if widget["type"] != "metric":
            continue
        title = widget["properties"]["title"]
        for line in widget["properties"]["metrics"]:
            if isinstance(line[0], dict):
                (expression,) = [item["expression"] for item in line]
                match = SEARCH.match(expression)
                assert match, f"{title}: only SEARCH expressions are understood here, got {expression}"
                terms = dict(TERM.findall(match["terms"]))
                namespace, *names = match["schema"].split(",")
                yield Plotted(
                    title, namespace, terms.pop("MetricName"), {name: terms.pop(name, None) for name in names}
                )
                assert not terms, f"{title}: search terms on dimensions outside the schema: {terms}"
            else:
                namespace, name, *rest = [item for item in line if not isinstance(item, dict)]
                assert len(rest) % 2 == 0, f"{title}: dimensions come in name, value pairs: {line}"
                yield Plotted(title, namespace, name, dict(zip(rest[::2], rest[1::2], strict=True)))


@pytest.fixture(scope="module")
def body() -> dict[str, Any]:
    return template_loader.dashboard()[1]


def test_the_dashboard_is_named_after_the_stack() -> None:
    name, _ = template_loader.dashboard(parameters={"AWS::StackName": "msp-usage"})
    assert name == "msp-usage"


def test_every_plotted_custom_metric_is_one_the_code_emits(body: dict[str, Any]) -> None:
    namespace = template_loader.load_template()["Globals"]["Function"]["Environment"]["Variables"][
        "POWERTOOLS_METRICS_NAMESPACE"
    ]
    services = {c.vendor: c.service for c in COLLECTORS}
    custom = [p for p in plotted(body) if p.namespace not in AWS_METRICS]
    assert custom, "the dashboard plots none of the collectors' metrics"
    for metric in custom:
        where = f"{metric.widget}: {metric.name}"
        assert metric.namespace == namespace, f"{where}: the functions emit to {namespace}"
        assert metric.name in SPECS, f"{where} is not in usagewatch.observability.CATALOGUE"
        assert set(metric.dimensions) == set(SPECS[metric.name].dimensions), f"{where}: dimensions"
        vendor, service = metric.dimensions["vendor"], metric.dimensions["service"]
        assert vendor in services, f"{where}: no collector for vendor {vendor!r}"
        assert service == services[vendor], f"{where}: {vendor}'s function emits service={services[vendor]}"


def test_every_plotted_aws_metric_is_one_of_this_stacks_functions_or_queues(body: dict[str, Any]) -> None:
    resources = template_loader.load_template()["Resources"]
    for metric in (p for p in plotted(body) if p.namespace in AWS_METRICS):
        names, dimensions = AWS_METRICS[metric.namespace]
        assert metric.name in names and set(metric.dimensions) == dimensions, metric
        (target,) = metric.dimensions.values()
        expected = "AWS::Serverless::Function" if metric.namespace == "AWS/Lambda" else "AWS::SQS::Queue"
        assert target in resources and resources[target]["Type"] == expected, metric


def test_each_widget_of_a_collector_is_about_that_collector_only(body: dict[str, Any]) -> None:
    by_function = {c.function_id: c.vendor for c in COLLECTORS}
    vendors_of: dict[str, set[str]] = {}
    for metric in plotted(body):
        vendor = metric.dimensions.get("vendor") or by_function.get(str(metric.dimensions.get("FunctionName")))
        if vendor is not None:
            vendors_of.setdefault(metric.widget, set()).add(vendor)
    assert all(len(v) == 1 for v in vendors_of.values()), vendors_of


def test_every_collector_has_its_block_and_every_dead_letter_queue_is_shown(body: dict[str, Any]) -> None:
    everything = list(plotted(body))
    for collector in COLLECTORS:
        mine = {p.name for p in everything if p.dimensions.get("vendor") == collector.vendor}
        assert {"LastSuccessAgeSeconds", "UsageTotal", "RunSucceeded", "TenantsCollected", "TenantsFailed"} <= mine
        assert {"AlertsPublished", "PublishFailures"} <= mine, collector.vendor
        functions = {p.name for p in everything if p.dimensions.get("FunctionName") == collector.function_id}
        assert {"Errors", "Duration"} <= functions, collector.vendor
    alarmed = {
        resource["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for resource in template_loader.load_template()["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm"
        and resource["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    }
    shown = {p.dimensions["QueueName"] for p in everything if p.namespace == "AWS/SQS"}
    assert shown == alarmed


def test_duration_is_drawn_against_each_functions_timeout(body: dict[str, Any]) -> None:
    for collector in COLLECTORS:
        (widget,) = [
            w
            for w in body["widgets"]
            if w["type"] == "metric"
            and any(
                line[:4] == ["AWS/Lambda", "Duration", "FunctionName", collector.function_id]
                for line in w["properties"]["metrics"]
            )
        ]
        (line,) = widget["properties"]["annotations"]["horizontal"]
        assert line["value"] == collector.timeout_seconds * 1000


def schedule_seconds(expression: str) -> int:
    match = RATE.match(expression)
    assert match, f"a default schedule the test can read (rate(N unit)), got {expression}"
    return int(match[1]) * {"minute": 60, "hour": 3600, "day": 86400}[match[2]]


@pytest.mark.parametrize("collector", COLLECTORS, ids=lambda c: c.vendor)
def test_no_successful_run_for_two_schedule_periods_alarms_ops(collector: Collector) -> None:
    template = template_loader.load_template()
    entry = template["Mappings"]["Collectors"][collector.vendor]
    period = schedule_seconds(template["Parameters"][collector.schedule_parameter]["Default"])
    assert (entry["Service"], entry["PeriodSeconds"], entry["StaleSeconds"]) == (
        collector.service,
        period,
        2 * period,
    )
    alarms = [
        resource
        for resource in template["Resources"].values()
        if resource["Type"] == "AWS::CloudWatch::Alarm" and resource["Properties"]["MetricName"] == RUN_SUCCEEDED.name
    ]
    resolve = template_loader.resolve_value
    (alarm,) = [
        a
        for a in alarms
        if {d["Name"]: resolve(d["Value"]) for d in a["Properties"]["Dimensions"]}.get("vendor") == collector.vendor
    ]
    properties = {key: resolve(value) for key, value in alarm["Properties"].items()}
    dimensions = {d["Name"]: d["Value"] for d in properties["Dimensions"]}
    assert dimensions == {"service": collector.service, "vendor": collector.vendor}
    assert set(dimensions) == set(RUN_SUCCEEDED.dimensions)
    assert properties["Namespace"] == "usagewatch"
    assert (properties["Statistic"], properties["Period"], properties["EvaluationPeriods"]) == ("Sum", period, 2)
    assert (properties["DatapointsToAlarm"], properties["Threshold"], properties["ComparisonOperator"]) == (
        2,
        1,
        "LessThanThreshold",
    )
    assert properties["TreatMissingData"] == "breaching", "a collector that stops running must alarm"
    assert alarm["Condition"] == collector.function_id.replace("CollectorFunction", "IsScheduled")
