"""scripts/sam-local/env_vars_from_stack.py: the env-vars file `sam local invoke` needs, from a deployed stack."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest

from tests.local_aws import in_process_aws

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sam-local" / "env_vars_from_stack.py"
STACK_TEMPLATE = {
    "Parameters": {
        "KeepnetSecretName": {"Type": "String"},
        "GravityZoneSecretName": {"Type": "String"},
        "ThousandEyesSecretName": {"Type": "String"},
        "MicrosoftSecretName": {"Type": "String"},
        "AlertRulesParameterName": {"Type": "String", "Default": ""},
    },
    "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    "Outputs": {
        "UsageTableName": {"Value": "usagewatch-UsageTable-1A2B"},
        "AlertTopicArn": {"Value": {"Ref": "Topic"}},
        "GravityZoneWorkQueueUrl": {"Value": "https://sqs.eu-west-1.amazonaws.com/123456789012/gz-work.fifo"},
    },
}


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("env_vars_from_stack", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with in_process_aws():
        yield boto3.client("cloudformation", region_name="eu-west-1")


def test_writes_each_functions_names_from_the_stack(aws: Any, tmp_path: Path) -> None:
    aws.create_stack(
        StackName="usagewatch",
        TemplateBody=json.dumps(STACK_TEMPLATE),
        Parameters=[
            {"ParameterKey": "KeepnetSecretName", "ParameterValue": "msp/keepnet"},
            {"ParameterKey": "GravityZoneSecretName", "ParameterValue": "msp/gz"},
            {"ParameterKey": "ThousandEyesSecretName", "ParameterValue": "msp/te"},
            {"ParameterKey": "MicrosoftSecretName", "ParameterValue": "msp/m365"},
            {"ParameterKey": "AlertRulesParameterName", "ParameterValue": "/usagewatch/rules"},
        ],
    )
    topic = boto3.client("sns", region_name="eu-west-1").list_topics()["Topics"][0]["TopicArn"]
    target = tmp_path / "env-vars.json"

    assert _script().main(["usagewatch", str(target)]) == 0

    written = json.loads(target.read_text())
    common = {"USAGE_TABLE_NAME": "usagewatch-UsageTable-1A2B", "ALERT_TOPIC_ARN": topic}
    common["ALERT_RULES_PARAMETER"] = "/usagewatch/rules"
    assert written == {
        "KeepnetCollectorFunction": common | {"VENDOR_SECRET_ID": "msp/keepnet"},
        "GravityZoneCollectorFunction": common
        | {
            "VENDOR_SECRET_ID": "msp/gz",
            "WORK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/gz-work.fifo",
        },
        "ThousandEyesCollectorFunction": common | {"VENDOR_SECRET_ID": "msp/te"},
        "MicrosoftCollectorFunction": common | {"VENDOR_SECRET_ID": "msp/m365"},
    }


def test_a_stack_without_the_outputs_is_refused(aws: Any, tmp_path: Path) -> None:
    template = STACK_TEMPLATE | {"Outputs": {"Other": {"Value": "x"}}}
    parameters = [{"ParameterKey": k, "ParameterValue": "s"} for k in list(STACK_TEMPLATE["Parameters"])[:4]]
    aws.create_stack(StackName="other", TemplateBody=json.dumps(template), Parameters=parameters)

    with pytest.raises(SystemExit, match="no output UsageTableName, AlertTopicArn, GravityZoneWorkQueueUrl"):
        _script().main(["other", str(tmp_path / "env-vars.json")])
    assert not (tmp_path / "env-vars.json").exists()
