"""What the deployed stack must be, asserted on the template translated to CloudFormation (what AWS really gets).

IAM least privilege, failure handling, encryption, retention, the functions' environment and schedules, the table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests import template_loader
from tests.infrastructure.conftest import ALL_FEATURES_ON, COLLECTORS, REPO
from usagewatch import registry

SCHEDULER_INPUT = {"scheduled_time": "<aws.scheduler.scheduled-time>"}
OPS_ACTIONS = {"Fn::If": ["HasOpsEmail", [{"Ref": "OpsTopic"}], {"Ref": "AWS::NoValue"}]}

# Managed policies SAM attaches and why they are acceptable: CloudWatch Logs writing (logs:CreateLogStream /
# PutLogEvents, Resource "*" in the AWS policy). Nothing else may be attached (no X-Ray: tracing is off).
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
}

TABLE_ACTIONS = {
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
}

# GravityZone continues accounts too large for one invocation on a FIFO work queue feeding the same function: the
# function sends the chunks (SendMessage) and Lambda's event source mapping, using the function's role, receives,
# deletes and re-times them (the other four).
WORK_QUEUE_FUNCTION = "GravityZoneCollectorFunction"
REPORT_FUNCTION = "MonthlyReportFunction"
PSA_FUNCTION = "PsaSyncFunction"
CONSOLE_FUNCTION = "ConsoleFunction"
FUNCTIONS = {*COLLECTORS, REPORT_FUNCTION, PSA_FUNCTION, CONSOLE_FUNCTION}
WORK_QUEUE = "GravityZoneWorkQueue"
WORK_DEAD_LETTER_QUEUE = "GravityZoneWorkDeadLetterQueue"
WORK_QUEUE_ACTIONS = {
    "sqs:SendMessage",
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
}

# Every function's environment; the GravityZone function also gets its work queue's URL. Never a credential.
LOCAL_ENDPOINT_VARIABLE = {"Fn::If": ["HasLocalAwsEndpoint", {"Ref": "LocalAwsEndpoint"}, {"Ref": "AWS::NoValue"}]}
CHAT_TOPIC_VARIABLE = {"Fn::If": ["ChatIsEnabled", {"Ref": "ChatTopic"}, {"Ref": "AWS::NoValue"}]}
COMMON_ENVIRONMENT = {
    "AWS_ENDPOINT_URL",
    "CHAT_TOPIC_ARN",
    "USAGE_TABLE_NAME",
    "ALERT_TOPIC_ARN",
    "VENDOR_SECRET_ID",
    "ALERT_RULES_PARAMETER",
    "POWERTOOLS_SERVICE_NAME",
    "POWERTOOLS_METRICS_NAMESPACE",
    "LOG_LEVEL",
    "SNAPSHOT_RETENTION_DAYS",
}


def resources_of(cfn: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == kind}


def ref_to(value: Any) -> str | None:
    """The logical id a {"Ref": x} or {"Fn::GetAtt": [x, ...]} points at."""
    if isinstance(value, dict) and "Ref" in value:
        return str(value["Ref"])
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        return str(value["Fn::GetAtt"][0])
    return None


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def unwrap_if(value: Any) -> Iterator[Any]:
    """Both branches of an Fn::If (never AWS::NoValue), or the value itself."""
    if isinstance(value, dict) and "Fn::If" in value:
        for branch in value["Fn::If"][1:]:
            if branch != {"Ref": "AWS::NoValue"}:
                yield from unwrap_if(branch)
    else:
        yield value


def role_statements(role: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for policy in role["Properties"].get("Policies", []):
        for concrete in unwrap_if(policy):
            for statement in as_list(concrete["PolicyDocument"]["Statement"]):
                yield concrete["PolicyName"], statement


def function_role(cfn: dict[str, Any], function_id: str) -> dict[str, Any]:
    role_id = ref_to(cfn["Resources"][function_id]["Properties"]["Role"])
    assert role_id is not None
    return dict(cfn["Resources"][role_id])


def statements_for(cfn: dict[str, Any], function_id: str, action: str) -> list[dict[str, Any]]:
    return [s for _, s in role_statements(function_role(cfn, function_id)) if action in as_list(s["Action"])]


def granted_on(cfn: dict[str, Any], function_id: str) -> dict[str, set[str]]:
    """Action -> the logical ids of the resources the function's role allows it on (Ref / GetAtt resources only)."""
    granted: dict[str, set[str]] = {}
    for _, statement in role_statements(function_role(cfn, function_id)):
        targets = {ref_to(r) for r in as_list(statement["Resource"])} - {None}
        for action in as_list(statement["Action"]):
            granted.setdefault(action, set()).update(str(t) for t in targets)
    return granted


# ---------------------------------------------------------------------------------------------------------------------
# IAM
# ---------------------------------------------------------------------------------------------------------------------


def test_no_wildcard_action_or_resource_in_any_iam_policy(cfn_default: dict[str, Any]) -> None:
    roles = resources_of(cfn_default, "AWS::IAM::Role")
    # Each collector and its schedule, the monthly report and its schedule, the PSA sync and its schedule, the
    # console function (the HTTP API invokes it through a resource policy, not a role).
    assert len(roles) == 2 * len(COLLECTORS) + 2 + 2 + 1, sorted(roles)
    assert not resources_of(cfn_default, "AWS::IAM::Policy")
    assert not resources_of(cfn_default, "AWS::IAM::ManagedPolicy")
    for role_id, role in roles.items():
        for policy_name, statement in role_statements(role):
            where = f"{role_id}/{policy_name}"
            assert statement["Effect"] == "Allow", where
            assert "NotAction" not in statement, where
            assert "NotResource" not in statement, where
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{where}: wildcard action {action}"
            for resource in as_list(statement["Resource"]):
                text = json.dumps(resource)
                assert resource != "*", f"{where}: Resource *"
                # The only wildcards allowed: this table's indexes and the report objects of this stack's bucket
                # (and the Secrets Manager random ARN suffix, `?`).
                if "*" in text:
                    assert resource in (
                        {"Fn::Sub": "${UsageTable.Arn}/index/*"},
                        {"Fn::Sub": "${ReportBucket.Arn}/reports/*"},
                    ), f"{where}: wildcard in {text}"


def test_only_the_expected_managed_policies_are_attached(cfn_default: dict[str, Any]) -> None:
    for role_id, role in resources_of(cfn_default, "AWS::IAM::Role").items():
        attached = set(role["Properties"].get("ManagedPolicyArns", []))
        assert attached <= ALLOWED_MANAGED_POLICIES, f"{role_id}: {attached - ALLOWED_MANAGED_POLICIES}"


def test_roles_are_assumed_only_by_their_service(cfn_default: dict[str, Any]) -> None:
    for role_id, role in resources_of(cfn_default, "AWS::IAM::Role").items():
        statements = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        expected = "scheduler.amazonaws.com" if role_id.endswith("ScheduleRole") else "lambda.amazonaws.com"
        assert [s["Principal"] for s in statements] == [{"Service": [expected]}], role_id


@pytest.mark.parametrize("function_id", list(COLLECTORS))
def test_function_role_has_exactly_the_permissions_it_needs(cfn_default: dict[str, Any], function_id: str) -> None:
    actions = {
        action for _, s in role_statements(function_role(cfn_default, function_id)) for action in as_list(s["Action"])
    }
    expected = TABLE_ACTIONS | {
        "sns:Publish",
        "secretsmanager:GetSecretValue",
        "ssm:GetParameter",
        "sqs:SendMessage",
    }
    if function_id == WORK_QUEUE_FUNCTION:
        expected |= WORK_QUEUE_ACTIONS
    assert actions == expected


@pytest.mark.parametrize("function_id", list(COLLECTORS))
def test_work_queue_access_is_the_gravityzone_function_on_its_queue_only(
    cfn_default: dict[str, Any], function_id: str
) -> None:
    role = function_role(cfn_default, function_id)
    statements = [
        s for _, s in role_statements(role) if set(as_list(s["Action"])) & (WORK_QUEUE_ACTIONS - {"sqs:SendMessage"})
    ]
    mentioning = [s for _, s in role_statements(role) if WORK_QUEUE in json.dumps(s)]
    if function_id != WORK_QUEUE_FUNCTION:
        assert not statements, f"{function_id} may touch a queue it has no use for: {statements}"
        assert not mentioning, f"{function_id} has a permission on the GravityZone work queue: {mentioning}"
        return
    (statement,) = statements
    assert statement["Sid"] == "WorkQueue"
    assert sorted(as_list(statement["Action"])) == sorted(WORK_QUEUE_ACTIONS)
    # The queue's own ARN and nothing else: not its dead-letter queue, not a pattern, not "*".
    assert statement["Resource"] == {"Fn::GetAtt": [WORK_QUEUE, "Arn"]}
    assert mentioning == [statement]


@pytest.mark.parametrize("function_id", list(COLLECTORS))
def test_table_access_is_this_table_and_its_indexes_only(cfn_default: dict[str, Any], function_id: str) -> None:
    statements = statements_for(cfn_default, function_id, "dynamodb:Query")
    assert len(statements) == 1
    assert set(as_list(statements[0]["Action"])) == TABLE_ACTIONS
    assert statements[0]["Resource"] == [
        {"Fn::GetAtt": ["UsageTable", "Arn"]},
        {"Fn::Sub": "${UsageTable.Arn}/index/*"},
    ]


@pytest.mark.parametrize("function_id", list(COLLECTORS))
def test_publish_is_to_the_alert_topic_and_with_chat_the_chat_topic_only(
    cfn_default: dict[str, Any], function_id: str
) -> None:
    statements = statements_for(cfn_default, function_id, "sns:Publish")
    (statement,) = [s for s in statements if "ChatTopic" not in json.dumps(s)]
    arn = template_loader.resolve_value(statement["Resource"], resources={"AlertTopic.TopicName": "uw-alerts"})
    assert arn == "arn:aws:sns:eu-west-1:123456789012:uw-alerts"
    role = function_role(cfn_default, function_id)
    (chat,) = [p for p in role["Properties"]["Policies"] if "ChatTopic" in json.dumps(p)]
    chat_topic = {"ChatTopic": "arn:aws:sns:eu-west-1:123456789012:uw-chat"}
    assert template_loader.resolve_value(chat, resources=chat_topic) is None, "no chat topic, no permission on it"
    policy = template_loader.resolve_value(chat, parameters={"ChatNotifications": "true"}, resources=chat_topic)
    (statement,) = policy["PolicyDocument"]["Statement"]
    assert (statement["Action"], statement["Resource"]) == ("sns:Publish", chat_topic["ChatTopic"])


@pytest.mark.parametrize(("function_id", "collector"), list(COLLECTORS.items()))
def test_each_function_reads_only_its_own_vendor_secret(
    cfn_default: dict[str, Any], function_id: str, collector: tuple[str, str, str, str]
) -> None:
    _, secret_parameter, _, _ = collector
    (statement,) = statements_for(cfn_default, function_id, "secretsmanager:GetSecretValue")
    assert as_list(statement["Action"]) == ["secretsmanager:GetSecretValue"]
    arn = template_loader.resolve_value(statement["Resource"], parameters={secret_parameter: "msp/vendor-prod"})
    # Secrets Manager ARNs end in "-" + 6 random characters: "??????" matches exactly those, not "msp/vendor-prod-old".
    assert arn == "arn:aws:secretsmanager:eu-west-1:123456789012:secret:msp/vendor-prod-??????"
    others = {p for _, p, _, _ in COLLECTORS.values()} - {secret_parameter}
    assert not any(other in json.dumps(statement) for other in others)


@pytest.mark.parametrize("function_id", list(COLLECTORS))
@pytest.mark.parametrize(
    ("parameter_name", "expected_arn"),
    [
        ("/usagewatch/rules", "arn:aws:ssm:eu-west-1:123456789012:parameter/usagewatch/rules"),
        ("usagewatch-rules", "arn:aws:ssm:eu-west-1:123456789012:parameter/usagewatch-rules"),
        ("/rules", "arn:aws:ssm:eu-west-1:123456789012:parameter/rules"),
    ],
)
def test_rules_parameter_access_only_when_configured(
    cfn_default: dict[str, Any], function_id: str, parameter_name: str, expected_arn: str
) -> None:
    role = function_role(cfn_default, function_id)
    conditional = [p for p in role["Properties"]["Policies"] if "Fn::If" in p and "ssm:" in json.dumps(p)]
    assert len(conditional) == 1, "the ssm:GetParameter policy must sit behind a condition"
    for parameters, expected in (({"AlertRulesParameterName": parameter_name}, expected_arn), ({}, None)):
        policy = template_loader.resolve_value(conditional[0], parameters=parameters)
        if expected is None:
            assert policy is None, "no rules parameter configured: no ssm permission at all"
        else:
            (statement,) = policy["PolicyDocument"]["Statement"]
            assert statement["Action"] == "ssm:GetParameter"
            assert statement["Resource"] == expected


# boto3 client/resource methods -> the IAM action AWS checks for them (the ones this code base could plausibly use).
BOTO3_METHOD_ACTIONS = {
    "get_item": "dynamodb:GetItem",
    "put_item": "dynamodb:PutItem",
    "update_item": "dynamodb:UpdateItem",
    "delete_item": "dynamodb:DeleteItem",
    "batch_write_item": "dynamodb:BatchWriteItem",
    "batch_writer": "dynamodb:BatchWriteItem",
    "batch_get_item": "dynamodb:BatchGetItem",
    "query": "dynamodb:Query",
    "scan": "dynamodb:Scan",
    "transact_write_items": "dynamodb:TransactWriteItems",
    "transact_get_items": "dynamodb:TransactGetItems",
    "describe_table": "dynamodb:DescribeTable",
    "execute_statement": "dynamodb:PartiQLSelect",
    "publish": "sns:Publish",
    "publish_batch": "sns:Publish",
    "get_secret_value": "secretsmanager:GetSecretValue",
    "get_parameter": "ssm:GetParameter",
    "get_parameters": "ssm:GetParameters",
    "get_parameters_by_path": "ssm:GetParametersByPath",
    "send_message": "sqs:SendMessage",
    "send_message_batch": "sqs:SendMessage",
    "receive_message": "sqs:ReceiveMessage",
    "delete_message": "sqs:DeleteMessage",
    "delete_message_batch": "sqs:DeleteMessage",
    "change_message_visibility": "sqs:ChangeMessageVisibility",
    "change_message_visibility_batch": "sqs:ChangeMessageVisibility",
    "get_queue_attributes": "sqs:GetQueueAttributes",
    "get_queue_url": "sqs:GetQueueUrl",
}


# billing_commit.py: the collectors only read billing through it (Query, GetItem, as the usage reads); its
# all-or-nothing writes (TransactWriteItems) are the operator's imports.
OPERATOR_ONLY = frozenset({"migrate.py", "billing_commit.py"})  # and the cli/ package


def aws_calls_in_the_code() -> dict[str, set[str]]:
    """IAM action -> the files of shared/usagewatch calling it: `.method(` calls, `get_paginator("method")` and the
    store's one wrapper, `_call("method", ...)`. The operator's command and its migration run with the operator's
    credentials, never a function role: they are left out."""
    calls: dict[str, set[str]] = {}
    for path in (REPO / "shared" / "usagewatch").rglob("*.py"):
        if path.name in OPERATOR_ONLY or "cli" in path.relative_to(REPO / "shared" / "usagewatch").parts[:1]:
            continue
        text = path.read_text(encoding="utf-8")
        methods = (
            re.findall(r"\.([a-z_]+)\(", text)
            + re.findall(r"get_paginator\(\s*[\"']([a-z_]+)[\"']", text)
            + re.findall(r"_call\(\s*[\"']([a-z_]+)[\"']", text)
        )
        for method in methods:
            if method in BOTO3_METHOD_ACTIONS:
                calls.setdefault(BOTO3_METHOD_ACTIONS[method], set()).add(str(path.relative_to(REPO)))
    return calls


def test_every_aws_call_in_the_code_is_allowed_by_the_function_roles(cfn_default: dict[str, Any]) -> None:
    """moto does not enforce IAM: a store change to, say, TransactWriteItems passes every local test and fails
    in AWS with AccessDenied. This keeps the code's AWS calls and the roles' actions in step."""
    calls = aws_calls_in_the_code()
    assert "dynamodb:Query" in calls, "found no DynamoDB call at all: is the scan looking in the right place?"
    # The continuation's calls are seen: the chunk messages, and the conditional updates of a split run's progress
    # (a ConditionExpression needs no action of its own beyond UpdateItem / PutItem).
    assert "shared/usagewatch/publisher.py" in calls.get("sqs:SendMessage", set())
    assert "shared/usagewatch/store/runs.py" in calls.get("dynamodb:UpdateItem", set())
    assert "ConditionExpression" in (REPO / "shared" / "usagewatch" / "store" / "runs.py").read_text(encoding="utf-8")
    for function_id in COLLECTORS:
        allowed = {
            action
            for _, s in role_statements(function_role(cfn_default, function_id))
            for action in as_list(s["Action"])
        }
        missing = {action: sorted(files) for action, files in calls.items() if action not in allowed}
        assert not missing, f"{function_id}'s role does not allow what the code calls: {missing}"
        # ...and on the right resource, not merely under the same action name elsewhere in the role.
        granted = granted_on(cfn_default, function_id)
        for action in calls:
            if action.startswith("dynamodb:"):
                assert "UsageTable" in granted[action], f"{function_id}: {action} is not allowed on UsageTable"


def test_the_code_sends_to_sqs_only_through_the_work_queue_of_its_environment(cfn_default: dict[str, Any]) -> None:
    """sqs:SendMessage is on every role (the on-failure destination), so the action name alone proves nothing: the
    code's only SQS client is SqsWorkQueue, built from WORK_QUEUE_URL, and each function with that variable may
    call what the code calls on that very queue."""
    calls = aws_calls_in_the_code()
    sqs_calls = {action: files for action, files in calls.items() if action.startswith("sqs:")}
    assert sqs_calls == {"sqs:SendMessage": {"shared/usagewatch/publisher.py"}}, sqs_calls
    package = REPO / "shared" / "usagewatch"
    builders = {
        str(path.relative_to(REPO)): re.findall(r"SqsWorkQueue\(([^)]*)\)", path.read_text(encoding="utf-8"))
        for path in package.rglob("*.py")
    }
    assert {f: b for f, b in builders.items() if b} == {"shared/usagewatch/handler.py": ["env.work_queue_url"]}
    settings = (package / "settings.py").read_text(encoding="utf-8")
    assert re.search(r'work_queue_url=env\.get\("WORK_QUEUE_URL"', settings), "WORK_QUEUE_URL is not what it reads"
    with_queue = {}
    for function_id in COLLECTORS:
        variables = cfn_default["Resources"][function_id]["Properties"]["Environment"]["Variables"]
        if "WORK_QUEUE_URL" in variables:
            with_queue[function_id] = ref_to(variables["WORK_QUEUE_URL"])
    assert with_queue == {WORK_QUEUE_FUNCTION: WORK_QUEUE}
    for function_id, queue_id in with_queue.items():
        granted = granted_on(cfn_default, function_id)
        for action in sqs_calls:
            assert queue_id in granted.get(action, set()), f"{function_id}: {action} not allowed on {queue_id}"


def test_schedule_roles_invoke_only_their_function_and_write_only_the_dead_letter_queue(
    cfn_default: dict[str, Any],
) -> None:
    for function_id in COLLECTORS:
        role = cfn_default["Resources"][f"{function_id}ScheduleRole"]
        granted = {(s["Action"], ref_to(s["Resource"])) for _, s in role_statements(role)}
        assert granted == {("lambda:InvokeFunction", function_id), ("sqs:SendMessage", "CollectorDeadLetterQueue")}


def test_queue_policies_admit_only_the_alert_topic(cfn_default: dict[str, Any]) -> None:
    policies = resources_of(cfn_default, "AWS::SQS::QueuePolicy")
    assert set(policies) == {"AlertQueuePolicy", "AlertDeadLetterQueuePolicy"}
    for policy_id, policy in policies.items():
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
            assert statement["Principal"] == {"Service": "sns.amazonaws.com"}, policy_id
            assert statement["Action"] == "sqs:SendMessage", policy_id
            assert statement["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Ref": "AlertTopic"}}}, policy_id


def test_ops_key_policy_is_the_default_plus_cloudwatch_use(cfn_default: dict[str, Any]) -> None:
    (key,) = resources_of(cfn_default, "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = {s["Sid"]: s for s in key["Properties"]["KeyPolicy"]["Statement"]}
    assert set(statements) == {"AccountAdministers", "CloudWatchAlarmsPublish"}
    # Key policies always say Resource "*" (it means this key); the account root statement is AWS's default policy.
    assert statements["AccountAdministers"]["Principal"] == {
        "AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    }
    assert statements["CloudWatchAlarmsPublish"]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert sorted(statements["CloudWatchAlarmsPublish"]["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_report_function_reads_the_table_writes_its_reports_and_publishes_only(cfn_default: dict[str, Any]) -> None:
    granted = granted_on(cfn_default, REPORT_FUNCTION)
    # ...and, with a PSA connection, reads its secret and stores the plan's proposals (test_template_psa_console.py
    # checks the condition and scope).
    assert set(granted) == {
        "dynamodb:Query",
        "dynamodb:PutItem",
        "s3:PutObject",
        "sns:Publish",
        "sqs:SendMessage",
        "secretsmanager:GetSecretValue",
    }
    assert granted["dynamodb:Query"] == {"UsageTable"}
    (put,) = statements_for(cfn_default, REPORT_FUNCTION, "s3:PutObject")
    assert put["Resource"] == {"Fn::Sub": "${ReportBucket.Arn}/reports/*"}
    (publish,) = statements_for(cfn_default, REPORT_FUNCTION, "sns:Publish")
    arn = template_loader.resolve_value(publish["Resource"], resources={"AlertTopic.TopicName": "uw-alerts"})
    assert arn == "arn:aws:sns:eu-west-1:123456789012:uw-alerts"
    variables = cfn_default["Resources"][REPORT_FUNCTION]["Properties"]["Environment"]["Variables"]
    assert variables["REPORT_BUCKET"] == {"Ref": "ReportBucket"}
    assert "VENDOR_SECRET_ID" not in variables


def test_report_bucket_is_private_encrypted_versioned_tls_only_and_retained(cfn_default: dict[str, Any]) -> None:
    bucket = cfn_default["Resources"]["ReportBucket"]
    assert (bucket["DeletionPolicy"], bucket["UpdateReplacePolicy"]) == ("Retain", "Retain")
    properties = bucket["Properties"]
    (rule,) = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "aws:kms"}
    assert set(properties["PublicAccessBlockConfiguration"].values()) == {True}
    assert len(properties["PublicAccessBlockConfiguration"]) == 4
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    (deny,) = cfn_default["Resources"]["ReportBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert (deny["Effect"], deny["Condition"]) == ("Deny", {"Bool": {"aws:SecureTransport": "false"}})
    schedules = [
        s["Properties"]
        for s in resources_of(cfn_default, "AWS::Scheduler::Schedule").values()
        if ref_to(s["Properties"]["Target"]["Arn"]) == REPORT_FUNCTION
    ]
    (schedule,) = schedules
    assert json.loads(schedule["Target"]["Input"]) == SCHEDULER_INPUT
    assert template_loader.load_template()["Parameters"]["MonthlyReportSchedule"]["Default"] == "cron(0 7 1 * ? *)"


# ---------------------------------------------------------------------------------------------------------------------
# Failure handling
# ---------------------------------------------------------------------------------------------------------------------


def test_every_function_has_an_on_failure_destination_and_bounded_retries(cfn_default: dict[str, Any]) -> None:
    configs = {
        ref_to(c["Properties"]["FunctionName"]): c["Properties"]
        for c in resources_of(cfn_default, "AWS::Lambda::EventInvokeConfig").values()
    }
    functions = resources_of(cfn_default, "AWS::Lambda::Function")
    assert set(functions) == FUNCTIONS
    # The console is invoked only synchronously, by its HTTP API: nothing could reach an on-failure destination.
    assert CONSOLE_FUNCTION not in configs
    assert not [
        s for s in resources_of(cfn_default, "AWS::Scheduler::Schedule").values()
        if ref_to(s["Properties"]["Target"]["Arn"]) == CONSOLE_FUNCTION
    ]  # fmt: skip
    for function_id in set(functions) - {CONSOLE_FUNCTION}:
        assert function_id in configs, f"{function_id} has no EventInvokeConfig"
        config = configs[function_id]
        assert config["MaximumRetryAttempts"] == 1
        assert ref_to(config["DestinationConfig"]["OnFailure"]["Destination"]) == "CollectorDeadLetterQueue"
        # ...and the role may write there (Lambda sends with the function's role); the GravityZone function also
        # sends its continuation chunks to its work queue, and nothing else anywhere.
        statements = statements_for(cfn_default, function_id, "sqs:SendMessage")
        targets = sorted(str(ref_to(s["Resource"])) for s in statements)
        expected = ["CollectorDeadLetterQueue"] + ([WORK_QUEUE] if function_id == WORK_QUEUE_FUNCTION else [])
        assert targets == sorted(expected), function_id
        (destination,) = [s for s in statements if ref_to(s["Resource"]) == "CollectorDeadLetterQueue"]
        assert as_list(destination["Action"]) == ["sqs:SendMessage"]


def test_gravityzone_work_queue_feeds_the_gravityzone_function_one_chunk_at_a_time(
    cfn_default: dict[str, Any],
) -> None:
    """The handler takes an SQS batch of work items and answers {"batchItemFailures": [...]}: the mapping must
    deliver one chunk per invocation from the work queue and honour that partial batch response."""
    mappings = resources_of(cfn_default, "AWS::Lambda::EventSourceMapping")
    # Exactly the explicit one: a SAM SQS event would add its own mapping and the AWSLambdaSQSQueueExecutionRole
    # managed policy (Resource "*"), which test_only_the_expected_managed_policies_are_attached refuses.
    assert set(mappings) == {"GravityZoneWorkQueueMapping"}
    properties = mappings["GravityZoneWorkQueueMapping"]["Properties"]
    assert properties["FunctionName"] == {"Ref": WORK_QUEUE_FUNCTION}
    assert properties["EventSourceArn"] == {"Fn::GetAtt": [WORK_QUEUE, "Arn"]}
    assert properties["BatchSize"] == 1
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Two workers at most (the least Lambda allows); FIFO groups (one per account) keep one per API key.
    assert properties["ScalingConfig"] == {"MaximumConcurrency": 2}
    assert properties.get("Enabled", True) is True
    assert set(properties) <= {
        "FunctionName",
        "EventSourceArn",
        "BatchSize",
        "FunctionResponseTypes",
        "ScalingConfig",
        "Enabled",
    }
    source_events = template_loader.load_template()["Resources"][WORK_QUEUE_FUNCTION]["Properties"]["Events"]
    assert {e["Type"] for e in source_events.values()} == {"ScheduleV2"}, "no SAM SQS event (see above)"


def test_gravityzone_work_queue_is_fifo_and_redrives_to_its_fifo_dead_letter_queue(
    cfn_default: dict[str, Any],
) -> None:
    queue = cfn_default["Resources"][WORK_QUEUE]["Properties"]
    dead_letter = cfn_default["Resources"][WORK_DEAD_LETTER_QUEUE]["Properties"]
    # FIFO: one message group per account keeps one worker per API key; a FIFO queue's DLQ must be FIFO too.
    assert queue["FifoQueue"] is True
    assert dead_letter["FifoQueue"] is True
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [WORK_DEAD_LETTER_QUEUE, "Arn"]},
        "maxReceiveCount": 3,
    }
    assert "RedrivePolicy" not in dead_letter
    # Lambda's SQS event source: visibility timeout at least six times the function's timeout.
    timeout = cfn_default["Resources"][WORK_QUEUE_FUNCTION]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] == 3600
    assert queue["VisibilityTimeout"] >= 6 * timeout
    # A dead-lettered message keeps its first enqueue time: the DLQ must keep messages longer than the queue.
    assert queue["MessageRetentionPeriod"] < dead_letter["MessageRetentionPeriod"]
    for queue_id, properties in ((WORK_QUEUE, queue), (WORK_DEAD_LETTER_QUEUE, dead_letter)):
        name = template_loader.resolve_value(properties["QueueName"], parameters={"AWS::StackName": "usagewatch"})
        assert name.startswith("usagewatch-") and name.endswith(".fifo"), (queue_id, name)


def dead_letter_queues(cfn: dict[str, Any]) -> set[str]:
    """Every queue named as a dead letter: queue and subscription redrive policies, on-failure destinations and
    schedule dead-letter configs."""
    targets: set[str | None] = set()
    for resource in cfn["Resources"].values():
        properties = resource.get("Properties", {})
        if resource["Type"] in {"AWS::SQS::Queue", "AWS::SNS::Subscription"} and "RedrivePolicy" in properties:
            targets.add(ref_to(properties["RedrivePolicy"]["deadLetterTargetArn"]))
        elif resource["Type"] == "AWS::Lambda::EventInvokeConfig":
            targets.add(ref_to(properties["DestinationConfig"]["OnFailure"]["Destination"]))
        elif resource["Type"] == "AWS::Scheduler::Schedule":
            targets.add(ref_to(properties["Target"]["DeadLetterConfig"]["Arn"]))
    assert None not in targets, "a dead-letter target that is not a queue of this stack"
    return {str(t) for t in targets}


def test_dead_letter_queue_keeps_messages_14_days(cfn_default: dict[str, Any]) -> None:
    expected = {"CollectorDeadLetterQueue", "AlertDeadLetterQueue", WORK_DEAD_LETTER_QUEUE}
    assert dead_letter_queues(cfn_default) == expected
    for queue_id in expected:
        assert cfn_default["Resources"][queue_id]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


def test_alarms_cover_every_function_and_dead_letter_queue_and_notify_ops_only(cfn_default: dict[str, Any]) -> None:
    alarms = resources_of(cfn_default, "AWS::CloudWatch::Alarm")
    error_alarms = {
        ref_to(a["Properties"]["Dimensions"][0]["Value"]): a["Properties"]
        for a in alarms.values()
        if a["Properties"]["MetricName"] == "Errors"
    }
    assert set(error_alarms) == FUNCTIONS
    for alarm in error_alarms.values():
        assert (alarm["Namespace"], alarm["Statistic"], alarm["Threshold"], alarm["EvaluationPeriods"]) == (
            "AWS/Lambda",
            "Sum",
            1,
            1,
        )
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    dlq_alarms = {
        ref_to(a["Properties"]["Dimensions"][0]["Value"]): a["Properties"]
        for a in alarms.values()
        if a["Properties"]["MetricName"] == "ApproximateNumberOfMessagesVisible"
    }
    assert set(dlq_alarms) == {"CollectorDeadLetterQueue", "AlertDeadLetterQueue", WORK_DEAD_LETTER_QUEUE}
    # ...which are exactly the queues something dead-letters into, so a new one cannot go unwatched.
    assert set(dlq_alarms) == dead_letter_queues(cfn_default)
    for alarm in dlq_alarms.values():
        assert (alarm["Namespace"], alarm["Statistic"]) == ("AWS/SQS", "Maximum")
        assert (alarm["Threshold"], alarm["ComparisonOperator"]) == (0, "GreaterThanThreshold")
        (dimension,) = alarm["Dimensions"]
        assert dimension["Name"] == "QueueName"
        assert dimension["Value"]["Fn::GetAtt"][1] == "QueueName"
    for alarm_id, alarm in alarms.items():
        for key in ("AlarmActions", "OKActions"):
            assert alarm["Properties"][key] == OPS_ACTIONS, f"{alarm_id}.{key}"
        assert "AlertTopic" not in json.dumps(alarm), f"{alarm_id} must never notify the alert topic"


# ---------------------------------------------------------------------------------------------------------------------
# Encryption and retention
# ---------------------------------------------------------------------------------------------------------------------


def test_table_topics_and_queues_are_encrypted(cfn_default: dict[str, Any]) -> None:
    table = cfn_default["Resources"]["UsageTable"]["Properties"]
    assert table["SSESpecification"] == {"SSEEnabled": True}
    topics = resources_of(cfn_default, "AWS::SNS::Topic")
    assert set(topics) == {"AlertTopic", "OpsTopic", "ChatTopic"}
    assert topics["AlertTopic"]["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"
    # Only our functions publish to the chat topic (with their roles), so the AWS-managed key will do.
    assert topics["ChatTopic"]["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"
    # CloudWatch cannot publish to a topic under the AWS-managed key: the ops topic has its own key.
    assert topics["OpsTopic"]["Properties"]["KmsMasterKeyId"] == {"Ref": "OpsTopicKey"}
    queues = resources_of(cfn_default, "AWS::SQS::Queue")
    assert {"CollectorDeadLetterQueue", "AlertDeadLetterQueue", WORK_QUEUE, WORK_DEAD_LETTER_QUEUE} <= set(queues)
    for queue_id, queue in queues.items():
        assert queue["Properties"].get("SqsManagedSseEnabled") is True, f"{queue_id} is not encrypted"


def test_every_log_group_has_a_retention_and_every_function_logs_to_one(cfn_default: dict[str, Any]) -> None:
    log_groups = resources_of(cfn_default, "AWS::Logs::LogGroup")
    for group_id, group in log_groups.items():
        assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, group_id
    for function_id, function in resources_of(cfn_default, "AWS::Lambda::Function").items():
        target = ref_to(function["Properties"]["LoggingConfig"]["LogGroup"])
        assert target in log_groups, f"{function_id} does not log to a log group of this stack"
    assert template_loader.load_template()["Parameters"]["LogRetentionDays"]["Default"] == 90


# ---------------------------------------------------------------------------------------------------------------------
# Functions: runtime, environment, schedules
# ---------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("function_id", list(COLLECTORS))
def test_runtime_architecture_tracing_and_layer(cfn_default: dict[str, Any], function_id: str) -> None:
    properties = cfn_default["Resources"][function_id]["Properties"]
    assert properties["Runtime"] == "python3.12"
    # A parameter only so that `sam local` can run them on x86_64: arm64 unless asked otherwise.
    assert properties["Architectures"] == [{"Ref": "Architecture"}]
    assert template_loader.resolve_value(properties["Architectures"]) == ["arm64"]
    # No code creates a Powertools Tracer or X-Ray subsegment: traces nobody reads are not paid for.
    assert properties.get("TracingConfig", {"Mode": "PassThrough"}) == {"Mode": "PassThrough"}
    assert properties["Handler"] == "app.lambda_handler"
    assert (properties["MemorySize"], properties["Timeout"]) == (512, 600)
    (layer,) = properties["Layers"]
    layer_resource = cfn_default["Resources"][ref_to(layer) or ""]
    assert layer_resource["Type"] == "AWS::Lambda::LayerVersion"
    assert layer_resource["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer_resource["Properties"]["CompatibleArchitectures"] == [{"Ref": "Architecture"}]
    assert template_loader.resolve_value(layer_resource["Properties"]["CompatibleArchitectures"]) == ["arm64"]


@pytest.mark.parametrize(("function_id", "collector"), list(COLLECTORS.items()))
def test_environment_has_every_variable_the_code_needs(
    cfn_default: dict[str, Any], function_id: str, collector: tuple[str, str, str, str]
) -> None:
    vendor, secret_parameter, _, _ = collector
    variables = cfn_default["Resources"][function_id]["Properties"]["Environment"]["Variables"]
    assert variables["USAGE_TABLE_NAME"] == {"Ref": "UsageTable"}
    assert variables["ALERT_TOPIC_ARN"] == {"Ref": "AlertTopic"}
    assert variables["VENDOR_SECRET_ID"] == {"Ref": secret_parameter}
    assert variables["ALERT_RULES_PARAMETER"] == {"Ref": "AlertRulesParameterName"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == f"usagewatch-{vendor}"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "usagewatch"
    assert variables["LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert variables["SNAPSHOT_RETENTION_DAYS"] == {"Ref": "SnapshotRetentionDays"}
    # Declared for `sam local` only (it passes no undeclared variable): absent unless a loopback endpoint is given.
    assert variables["AWS_ENDPOINT_URL"] == LOCAL_ENDPOINT_VARIABLE
    assert template_loader.resolve_value(LOCAL_ENDPOINT_VARIABLE) is None
    assert variables["CHAT_TOPIC_ARN"] == CHAT_TOPIC_VARIABLE
    assert template_loader.resolve_value(CHAT_TOPIC_VARIABLE) is None
    local = {"LocalAwsEndpoint": "http://127.0.0.1:5000"}
    assert template_loader.resolve_value(LOCAL_ENDPOINT_VARIABLE, parameters=local) == "http://127.0.0.1:5000"
    # Nothing else: in particular never a credential (those are read from Secrets Manager at run time). Only the
    # GravityZone function continues work on a queue; the others must not get one (the code would use it).
    if function_id == WORK_QUEUE_FUNCTION:
        assert variables["WORK_QUEUE_URL"] == {"Ref": WORK_QUEUE}
        assert set(variables) == COMMON_ENVIRONMENT | {"WORK_QUEUE_URL"}
    else:
        assert set(variables) == COMMON_ENVIRONMENT


@pytest.mark.parametrize(("function_id", "collector"), list(COLLECTORS.items()))
def test_each_function_has_one_schedule_with_the_scheduler_input(
    cfn_default: dict[str, Any], function_id: str, collector: tuple[str, str, str, str]
) -> None:
    _, _, schedule_parameter, default_expression = collector
    schedules = [
        s["Properties"]
        for s in resources_of(cfn_default, "AWS::Scheduler::Schedule").values()
        if ref_to(s["Properties"]["Target"]["Arn"]) == function_id
    ]
    assert len(schedules) == 1
    (schedule,) = schedules
    assert json.loads(schedule["Target"]["Input"]) == SCHEDULER_INPUT
    assert schedule["ScheduleExpression"] == {"Ref": schedule_parameter}
    vendor_enabled = f"{schedule_parameter.removesuffix('Schedule')}IsEnabled"
    assert schedule["State"] == {"Fn::If": [vendor_enabled, {"Ref": "ScheduleState"}, "DISABLED"]}
    for parameters, expected in (
        ({}, "ENABLED"),
        ({"ScheduleState": "DISABLED"}, "DISABLED"),
        ({f"{schedule_parameter.removesuffix('Schedule')}Enabled": "false"}, "DISABLED"),
    ):
        assert template_loader.resolve_value(schedule["State"], parameters=parameters) == expected, parameters
    assert schedule["Target"]["RetryPolicy"] == {"MaximumRetryAttempts": 2}
    assert ref_to(schedule["Target"]["DeadLetterConfig"]["Arn"]) == "CollectorDeadLetterQueue"
    assert "Name" not in schedule, "a fixed schedule name would clash between two stacks in one account"
    parameters = template_loader.load_template()["Parameters"]
    assert parameters[schedule_parameter]["Default"] == default_expression
    assert template_loader.schedule_inputs(function_id) == {"Schedule": SCHEDULER_INPUT}


def test_schedule_parameters_accept_only_scheduler_expressions() -> None:
    parameters = template_loader.load_template()["Parameters"]
    for _, _, schedule_parameter, _ in COLLECTORS.values():
        pattern = re.compile(parameters[schedule_parameter]["AllowedPattern"])
        for good in ("rate(6 hours)", "rate(1 hour)", "cron(0 */6 * * ? *)"):
            assert pattern.fullmatch(good)
        for bad in ("6 hours", "every hour", ""):
            assert not pattern.fullmatch(bad)


# ---------------------------------------------------------------------------------------------------------------------
# Table and alert delivery
# ---------------------------------------------------------------------------------------------------------------------


def test_table_is_retained_recoverable_on_demand_with_ttl(cfn_default: dict[str, Any]) -> None:
    table = cfn_default["Resources"]["UsageTable"]
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"
    properties = table["Properties"]
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert properties["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    (index,) = properties["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "gsi1"
    assert index["Projection"] == {"ProjectionType": "ALL"}


# The report and the PSA plan when someone has to act: psa.plan.ready is a warning when changes wait for approval,
# psa.plan.failed always is one (shared/usagewatch/psa/monthly.py).
ACTIONABLE = ["report.ready", "psa.plan.ready", "psa.plan.failed"]
DIGEST_OR_REPORT = [{"event_type": ["digest"]}, {"event_type": ACTIONABLE, "severity": ["warning"]}]


def test_email_subscription_gets_the_digests_and_critical_events(cfn_default: dict[str, Any]) -> None:
    subscription = cfn_default["Resources"]["AlertEmailSubscription"]
    assert subscription["Condition"] == "HasAlertEmail"
    properties = subscription["Properties"]
    assert ref_to(properties["TopicArn"]) == "AlertTopic"
    assert properties["Protocol"] == "email"
    assert properties["FilterPolicyScope"] == "MessageAttributes"
    policy = properties["FilterPolicy"]
    assert template_loader.resolve_value(policy) == {"$or": [*DIGEST_OR_REPORT, {"severity": ["critical"]}]}
    digest_only = {"AlertEmailCriticalImmediately": "false"}
    assert template_loader.resolve_value(policy, parameters=digest_only) == {"$or": DIGEST_OR_REPORT}
    assert ref_to(properties["RedrivePolicy"]["deadLetterTargetArn"]) == "AlertDeadLetterQueue"


def test_alert_queue_receives_every_event_raw(cfn_default: dict[str, Any]) -> None:
    subscription = cfn_default["Resources"]["AlertQueueSubscription"]
    assert subscription["Condition"] == "AlertQueueIsEnabled"
    properties = subscription["Properties"]
    assert ref_to(properties["TopicArn"]) == "AlertTopic"
    assert (properties["Protocol"], properties["RawMessageDelivery"]) == ("sqs", True)
    assert "FilterPolicy" not in properties
    assert cfn_default["Resources"]["AlertQueue"]["Condition"] == "AlertQueueIsEnabled"


def test_conditions_follow_the_parameters() -> None:
    def conditions(parameters: dict[str, str]) -> dict[str, bool]:
        names = template_loader.load_template()["Conditions"]
        return {
            name: template_loader.resolve_value({"Fn::If": [name, True, False]}, parameters=parameters)
            for name in names
        }

    prefixes = [v.template_name for v in registry.vendors()]
    vendors = {f"{p}IsEnabled" for p in prefixes}
    scheduled = {f"{p}IsScheduled" for p in prefixes}
    defaults = conditions({})
    assert {name for name, on in defaults.items() if on} == vendors | scheduled | {"ConsoleIsEnabled"}, (
        "by default: every vendor on its schedule and the console (without users), no optional extra"
    )
    assert not conditions({"ConsoleEnabled": "false", "ConsoleOperatorEmail": "a@example.com"})["HasConsoleOperator"]
    assert not any(on for name, on in conditions({"ScheduleState": "DISABLED"}).items() if name in scheduled)
    assert not conditions({"KeepnetEnabled": "false"})["KeepnetIsScheduled"]
    local_only = {"HasLocalAwsEndpoint"}
    assert all(on for name, on in conditions(ALL_FEATURES_ON).items() if name not in local_only)
    assert conditions({"LocalAwsEndpoint": "http://127.0.0.1:5000"})["HasLocalAwsEndpoint"]


def test_outputs_name_what_operators_need(cfn_default: dict[str, Any]) -> None:
    outputs = cfn_default["Outputs"]
    for key, target in {
        "UsageTableName": "UsageTable",
        "AlertTopicArn": "AlertTopic",
        "CollectorDeadLetterQueueUrl": "CollectorDeadLetterQueue",
        "KeepnetCollectorFunctionName": "KeepnetCollectorFunction",
        "GravityZoneCollectorFunctionName": "GravityZoneCollectorFunction",
        "ThousandEyesCollectorFunctionName": "ThousandEyesCollectorFunction",
        "AlertQueueUrl": "AlertQueue",
    }.items():
        assert ref_to(outputs[key]["Value"]) == target, key
    assert outputs["AlertQueueUrl"]["Condition"] == "AlertQueueIsEnabled"


def test_local_aws_endpoint_accepts_loopback_only() -> None:
    parameter = template_loader.load_template()["Parameters"]["LocalAwsEndpoint"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    for accepted in ("", "http://127.0.0.1:5000", "http://localhost:4566", "http://[::1]:8000"):
        assert pattern.fullmatch(accepted), accepted
    for refused in ("https://dynamodb.eu-west-1.amazonaws.com", "http://10.0.0.5:5000", "http://127.0.0.1.example:80"):
        assert not pattern.fullmatch(refused), refused
