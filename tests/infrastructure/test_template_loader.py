"""tests/template_loader.py: what integration tests and the demo read from template.yaml must be right."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest

from tests import template_loader
from tests.infrastructure.conftest import COLLECTORS, REPO
from tests.local_aws import in_process_aws
from tests.template_loader import TemplateError

RESOURCES = {"UsageTable": "usagewatch-demo", "AlertTopic": "arn:aws:sns:eu-west-1:123456789012:alerts"}
WORK_QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/usagewatch-demo-gravityzone-work.fifo"
# The GravityZone function also names its continuation work queue.
GRAVITYZONE_RESOURCES = {**RESOURCES, "GravityZoneWorkQueue": WORK_QUEUE_URL}


def test_short_form_intrinsics_become_long_form() -> None:
    doc = template_loader.load_template()
    variables = doc["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["USAGE_TABLE_NAME"] == {"Ref": "UsageTable"}
    subscription = doc["Resources"]["AlertQueueSubscription"]["Properties"]
    assert subscription["Endpoint"] == {"Fn::GetAtt": ["AlertQueue", "Arn"]}
    assert doc["Conditions"]["HasAlertEmail"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlertEmail"}, ""]}]}
    log_group = doc["Resources"]["KeepnetCollectorLogGroup"]["Properties"]
    assert log_group["LogGroupName"] == {"Fn::Sub": "/aws/lambda/${AWS::StackName}/KeepnetCollectorFunction"}


def test_load_template_returns_a_copy_callers_may_change() -> None:
    first = template_loader.load_template()
    first["Resources"].clear()
    assert template_loader.load_template()["Resources"]


def test_load_template_from_another_path(tmp_path: Path) -> None:
    other = tmp_path / "t.yaml"
    other.write_text("Resources:\n  Fn:\n    Type: AWS::Serverless::Function\n    Properties:\n      CodeUri: src/\n")
    assert template_loader.function_ids(template=other) == ["Fn"]
    assert template_loader.function_code_dir("Fn", template=other) == str(tmp_path / "src")
    bad = tmp_path / "bad.yaml"
    bad.write_text("just: text\n")
    with pytest.raises(TemplateError, match="not a CloudFormation template"):
        template_loader.load_template(bad)


def test_function_ids_and_code() -> None:
    assert set(template_loader.function_ids()) == {
        *COLLECTORS,
        "MonthlyReportFunction",
        "PsaSyncFunction",
        "ConsoleFunction",
    }
    assert template_loader.function_code_dir("MonthlyReportFunction") == str(REPO / "functions" / "report")
    for function_id, (vendor, _, _, _) in COLLECTORS.items():
        code_dir = template_loader.function_code_dir(function_id)
        assert code_dir == str(REPO / "functions" / vendor)
        assert template_loader.function_handler(function_id) == ("app", "lambda_handler")
    with pytest.raises(TemplateError, match="no resource 'Nope'"):
        template_loader.function_code_dir("Nope")
    with pytest.raises(TemplateError, match="not a AWS::Serverless::Function"):
        template_loader.function_code_dir("UsageTable")


@pytest.mark.parametrize(("function_id", "collector"), list(COLLECTORS.items()))
def test_function_environment_merges_globals_and_resolves(function_id: str, collector: tuple[str, ...]) -> None:
    vendor = collector[0]
    gravityzone = function_id == "GravityZoneCollectorFunction"
    # The other functions resolve without the work queue: they do not reference it.
    resources = GRAVITYZONE_RESOURCES if gravityzone else RESOURCES
    environment = template_loader.function_environment(function_id, resources=resources)
    expected = {
        "USAGE_TABLE_NAME": "usagewatch-demo",
        "ALERT_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:alerts",
        "ALERT_RULES_PARAMETER": "",
        "POWERTOOLS_METRICS_NAMESPACE": "usagewatch",
        "POWERTOOLS_SERVICE_NAME": f"usagewatch-{vendor}",
        "LOG_LEVEL": "INFO",
        "SNAPSHOT_RETENTION_DAYS": "400",
        "VENDOR_SECRET_ID": f"usagewatch/{vendor}",
    }
    if gravityzone:
        expected["WORK_QUEUE_URL"] = WORK_QUEUE_URL
    assert environment == expected


def test_function_environment_takes_parameter_overrides() -> None:
    environment = template_loader.function_environment(
        "ThousandEyesCollectorFunction",
        resources=RESOURCES,
        parameters={"ThousandEyesSecretName": "msp/te", "AlertRulesParameterName": "/uw/rules", "LogLevel": "DEBUG"},
    )
    assert environment["VENDOR_SECRET_ID"] == "msp/te"
    assert environment["ALERT_RULES_PARAMETER"] == "/uw/rules"
    assert environment["LOG_LEVEL"] == "DEBUG"


def test_function_environment_takes_parameter_overrides_for_gravityzone() -> None:
    environment = template_loader.function_environment(
        "GravityZoneCollectorFunction",
        resources=GRAVITYZONE_RESOURCES,
        parameters={"GravityZoneSecretName": "msp/gz", "LogLevel": "WARNING"},
    )
    assert environment["VENDOR_SECRET_ID"] == "msp/gz"
    assert environment["LOG_LEVEL"] == "WARNING"
    assert environment["WORK_QUEUE_URL"] == WORK_QUEUE_URL


def test_function_environment_errors_are_clear() -> None:
    with pytest.raises(TemplateError, match=r"USAGE_TABLE_NAME: Ref UsageTable: pass its value in `resources`"):
        template_loader.function_environment("KeepnetCollectorFunction", resources={"AlertTopic": "arn:x"})
    with pytest.raises(
        TemplateError,
        match=r"GravityZoneCollectorFunction environment variable WORK_QUEUE_URL: Ref GravityZoneWorkQueue: "
        r"pass its value in `resources`",
    ):
        template_loader.function_environment("GravityZoneCollectorFunction", resources=RESOURCES)
    with pytest.raises(TemplateError, match=r"unknown parameter.*KeepnetSecret"):
        template_loader.function_environment(
            "KeepnetCollectorFunction", resources=RESOURCES, parameters={"KeepnetSecret": "typo"}
        )


def test_resolver_handles_the_intrinsics_the_template_uses() -> None:
    parameters = {"AWS::Region": "us-east-2", "AlertRulesParameterName": "/a/b"}
    assert (
        template_loader.resolve_value(
            {"Fn::Sub": "arn:${AWS::Partition}:x:${AWS::Region}:${AWS::AccountId}:${Res.Name}/${!Literal}"},
            resources={"Res.Name": "n"},
            parameters=parameters,
        )
        == "arn:aws:x:us-east-2:123456789012:n/${Literal}"
    )
    assert template_loader.resolve_value({"Fn::Sub": ["${X}-y", {"X": {"Ref": "LogLevel"}}]}) == "INFO-y"
    assert template_loader.resolve_value({"Fn::Select": [1, {"Fn::Split": [",", "a,b,c"]}]}) == "b"
    assert (
        template_loader.resolve_value({"Fn::GetAtt": ["AlertTopic", "TopicName"]}, resources=RESOURCES)
        == (RESOURCES["AlertTopic"])
    )
    assert template_loader.resolve_value({"Fn::If": ["HasAlertRulesParameter", "yes", "no"]}) == "no"
    assert template_loader.resolve_value({"Fn::If": ["HasAlertRulesParameter", "y", "n"]}, parameters=parameters) == "y"
    assert template_loader.resolve_value({"Ref": "AWS::NoValue"}) is None
    with pytest.raises(TemplateError, match="no condition Nope"):
        template_loader.resolve_value({"Fn::If": ["Nope", 1, 2]})
    with pytest.raises(TemplateError, match="cannot resolve Fn::ImportValue"):
        template_loader.resolve_value({"Fn::ImportValue": "x"})


def test_table_definition_creates_the_table_in_moto() -> None:
    definition = template_loader.table_definition(table_name="uw-test")
    assert "TableName" not in template_loader.table_definition()
    assert template_loader.ttl_attribute() == "expires_at"
    with in_process_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(**definition)
        client.update_time_to_live(
            TableName="uw-test",
            TimeToLiveSpecification={"AttributeName": template_loader.ttl_attribute() or "", "Enabled": True},
        )
        table = client.describe_table(TableName="uw-test")["Table"]
        assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
        assert [i["IndexName"] for i in table["GlobalSecondaryIndexes"]] == ["gsi1"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        ttl = client.describe_time_to_live(TableName="uw-test")["TimeToLiveDescription"]
        assert ttl["AttributeName"] == "expires_at"


def test_translate_template_is_offline_and_complete() -> None:
    translated = template_loader.translate_template()
    assert "Transform" not in translated
    types = {r["Type"] for r in translated["Resources"].values()}
    assert "AWS::Serverless::Function" not in types
    assert {
        "AWS::Lambda::Function",
        "AWS::Scheduler::Schedule",
        "AWS::Lambda::LayerVersion",
        "AWS::Lambda::EventSourceMapping",
    } <= types
    code = translated["Resources"]["KeepnetCollectorFunction"]["Properties"]["Code"]
    assert code == {"S3Bucket": "usagewatch-local-artifacts", "S3Key": "functions/keepnet"}
