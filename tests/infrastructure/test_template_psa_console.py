"""The PSA sync and the web console in the stack, asserted on the translated template: the sync only with a
ConnectWise secret, reading that one secret and writing contracts only; the console behind a Cognito JWT authorizer
on every route but the sign-in page and its static files, a pool nobody signs up to, and a role that writes only
under the partition keys the console changes (tests/integration/test_console_stack.py records the real writes)."""

from __future__ import annotations

import json
import re
from typing import Any

from tests import template_loader
from tests.infrastructure.conftest import REPO
from tests.infrastructure.test_template_policies import (
    CONSOLE_FUNCTION,
    OPS_ACTIONS,
    PSA_FUNCTION,
    REPORT_FUNCTION,
    SCHEDULER_INPUT,
    as_list,
    function_role,
    granted_on,
    ref_to,
    resources_of,
    role_statements,
    statements_for,
)
from usagewatch import registry, settings
from usagewatch.console.access import OPERATORS, VIEWERS
from usagewatch.console.front import PUBLIC
from usagewatch.model import Period
from usagewatch.monthly_report import applied_key, keys_for

PSA_SECRET = {"ConnectWiseSecretName": "msp/connectwise-prod"}
PSA_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:msp/connectwise-prod-??????"
READS = {"dynamodb:GetItem", "dynamodb:Query", "dynamodb:BatchGetItem"}
WRITES = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
CONSOLE_KEYS = ["CUSTOMERS", "BILLING", "BILLING#IGNORED", "BILLING#*#*", "AUDIT#CONSOLE", "PSA#PROPOSALS#*"]
CONSOLE_RESOURCES = {
    "ConsoleUserPool",
    "ConsoleOperatorsGroup",
    "ConsoleViewersGroup",
    "ConsoleUserPoolClient",
    "ConsoleApi",
    "ConsoleApiApiGatewayDefaultStage",
    "ConsoleApiAccessLogGroup",
    "ConsoleLogGroup",
    "ConsoleFunction",
    "ConsoleFunctionRole",
    "ConsoleErrorsAlarm",
}


def leading_keys(statement: dict[str, Any]) -> list[str]:
    (operator,) = statement["Condition"]
    assert operator == "ForAllValues:StringLike"
    (key,) = statement["Condition"][operator]
    assert key == "dynamodb:LeadingKeys"
    return list(statement["Condition"][operator][key])


# ---------------------------------------------------------------------------------------------------------------------
# PSA sync
# ---------------------------------------------------------------------------------------------------------------------


def test_the_psa_sync_exists_only_with_a_connectwise_secret(cfn_default: dict[str, Any]) -> None:
    parameter = template_loader.load_template()["Parameters"]["ConnectWiseSecretName"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch("usagewatch/connectwise")
    assert not pattern.fullmatch("arn:aws:secretsmanager:eu-west-1:1:secret:x")
    conditional = {
        k for k, r in cfn_default["Resources"].items() if "PsaSync" in k or ref_to(_target(r)) == PSA_FUNCTION
    }
    assert conditional == {
        "PsaSyncFunction",
        "PsaSyncFunctionRole",
        "PsaSyncFunctionEventInvokeConfig",
        "PsaSyncFunctionSchedule",
        "PsaSyncFunctionScheduleRole",
        "PsaSyncLogGroup",
        "PsaSyncErrorsAlarm",
    }
    for resource_id in conditional:
        assert cfn_default["Resources"][resource_id].get("Condition") == "HasPsa", resource_id
    assert cfn_default["Outputs"]["PsaSyncFunctionName"]["Condition"] == "HasPsa"
    has_psa = {"Fn::If": ["HasPsa", True, False]}
    assert template_loader.resolve_value(has_psa) is False
    assert template_loader.resolve_value(has_psa, parameters=PSA_SECRET) is True


def _target(resource: dict[str, Any]) -> Any:
    properties = resource.get("Properties", {})
    if resource["Type"] == "AWS::Scheduler::Schedule":
        return properties["Target"]["Arn"]
    if resource["Type"] == "AWS::CloudWatch::Alarm":
        return properties["Dimensions"][0]["Value"]
    return properties.get("FunctionName")


def test_the_psa_sync_runs_daily_like_the_collectors(cfn_default: dict[str, Any]) -> None:
    function = cfn_default["Resources"][PSA_FUNCTION]["Properties"]
    assert function["Handler"] == "app.lambda_handler"
    assert template_loader.function_code_dir(PSA_FUNCTION) == str(REPO / "functions" / "psa_sync")
    variables = function["Environment"]["Variables"]
    assert variables["PSA_SECRET_ID"] == {"Ref": "ConnectWiseSecretName"}
    assert variables["USAGE_TABLE_NAME"] == {"Ref": "UsageTable"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == "usagewatch-psa-sync"
    assert "VENDOR_SECRET_ID" not in variables
    # The name the functions really read (settings.py, for the sync, the report and the console), never a secret.
    assert settings.PSA_SECRET_ENV == "PSA_SECRET_ID"
    assert settings.psa_secret_id({"PSA_SECRET_ID": " msp/cw "}) == "msp/cw"
    assert settings.load_console_environment({"PSA_SECRET_ID": "msp/cw"}).psa_linked
    assert not settings.load_console_environment({"PSA_SECRET_ID": " "}).psa_linked
    for module, reads in (
        ("psa/scheduled.py", "psa_secret_id("),
        ("monthly_report.py", "load_report_environment("),
        ("console/app.py", "load_console_environment("),
    ):
        source = (REPO / "shared" / "usagewatch" / module).read_text(encoding="utf-8")
        assert reads in source and 'get("PSA_SECRET_ID"' not in source and "os.environ" not in source, module
    (schedule,) = [
        s["Properties"]
        for s in resources_of(cfn_default, "AWS::Scheduler::Schedule").values()
        if ref_to(s["Properties"]["Target"]["Arn"]) == PSA_FUNCTION
    ]
    assert json.loads(schedule["Target"]["Input"]) == SCHEDULER_INPUT
    assert schedule["ScheduleExpression"] == {"Ref": "PsaSyncSchedule"}
    assert template_loader.load_template()["Parameters"]["PsaSyncSchedule"]["Default"] == "cron(0 5 * * ? *)"
    assert schedule["State"] == {"Ref": "ScheduleState"}
    assert schedule["Target"]["RetryPolicy"] == {"MaximumRetryAttempts": 2}
    assert ref_to(schedule["Target"]["DeadLetterConfig"]["Arn"]) == "CollectorDeadLetterQueue"
    role = cfn_default["Resources"][f"{PSA_FUNCTION}ScheduleRole"]
    granted = {(s["Action"], ref_to(s["Resource"])) for _, s in role_statements(role)}
    assert granted == {("lambda:InvokeFunction", PSA_FUNCTION), ("sqs:SendMessage", "CollectorDeadLetterQueue")}
    (alarm,) = [
        a["Properties"]
        for a in resources_of(cfn_default, "AWS::CloudWatch::Alarm").values()
        if a["Properties"]["MetricName"] == "Errors"
        and ref_to(a["Properties"]["Dimensions"][0]["Value"]) == PSA_FUNCTION
    ]
    assert alarm["AlarmActions"] == OPS_ACTIONS


def test_the_psa_sync_reads_its_secret_and_writes_contracts_only(cfn_default: dict[str, Any]) -> None:
    granted = granted_on(cfn_default, PSA_FUNCTION)
    # No sns:Publish: the sync publishes nothing (the report's plan does); sqs:SendMessage is the on-failure queue.
    assert set(granted) == READS | WRITES | {"secretsmanager:GetSecretValue", "sqs:SendMessage"}
    for action in READS | WRITES:
        assert granted[action] == {"UsageTable"}, action
    (read,) = statements_for(cfn_default, PSA_FUNCTION, "dynamodb:Query")
    assert "Condition" not in read and set(read["Action"]) == READS
    (write,) = statements_for(cfn_default, PSA_FUNCTION, "dynamodb:PutItem")
    assert set(write["Action"]) == WRITES
    assert write["Resource"] == {"Fn::GetAtt": ["UsageTable", "Arn"]}
    # The change's head and manifest, and the contracts of each registered vendor: one "#", never a mapping's two.
    vendors = sorted(f"BILLING#{v}" for v in registry.vendor_ids())
    keys = leading_keys(write)
    assert keys[:2] == ["BILLING", "BILLING#CHANGE#*"] and sorted(keys[2:]) == vendors
    (secret,) = statements_for(cfn_default, PSA_FUNCTION, "secretsmanager:GetSecretValue")
    assert as_list(secret["Action"]) == ["secretsmanager:GetSecretValue"]
    assert template_loader.resolve_value(secret["Resource"], parameters=PSA_SECRET) == PSA_SECRET_ARN


def test_the_monthly_report_gets_the_psa_secret_only_with_a_connection(cfn_default: dict[str, Any]) -> None:
    variables = cfn_default["Resources"][REPORT_FUNCTION]["Properties"]["Environment"]["Variables"]
    assert template_loader.resolve_value(variables["PSA_SECRET_ID"]) is None
    assert template_loader.resolve_value(variables["PSA_SECRET_ID"], parameters=PSA_SECRET) == "msp/connectwise-prod"
    role = function_role(cfn_default, REPORT_FUNCTION)
    (conditional,) = [p for p in role["Properties"]["Policies"] if "secretsmanager" in json.dumps(p)]
    assert template_loader.resolve_value(conditional) is None, "no PSA: no secret permission at all"
    policy = template_loader.resolve_value(conditional, parameters=PSA_SECRET, resources=TABLE)
    secret, proposals = policy["PolicyDocument"]["Statement"]
    assert (secret["Action"], secret["Resource"]) == ("secretsmanager:GetSecretValue", PSA_SECRET_ARN)
    assert proposals["Sid"] == "PsaProposalWrites"


TABLE = {"UsageTable.Arn": "arn:aws:dynamodb:eu-west-1:123456789012:table/usagewatch-UsageTable"}


def test_the_monthly_report_stores_proposals_only_with_a_connection(cfn_default: dict[str, Any]) -> None:
    """The plan's one write, a conditional PutItem per proposal (store/psa.py `add`), under PSA#PROPOSALS#{period}
    only (tests/integration/test_report_stack.py records the real writes); nothing to write without a PSA."""
    role = function_role(cfn_default, REPORT_FUNCTION)
    always = [
        action
        for policy in role["Properties"]["Policies"]
        if "Fn::If" not in policy
        for statement in as_list(policy["PolicyDocument"]["Statement"])
        for action in as_list(statement["Action"])
    ]
    assert not set(always) & WRITES, "the report writes to the table only with a PSA connection"
    (conditional,) = [p for p in role["Properties"]["Policies"] if "dynamodb:PutItem" in json.dumps(p)]
    assert conditional["Fn::If"][0] == "HasPsa" and conditional["Fn::If"][2] == {"Ref": "AWS::NoValue"}
    policy = template_loader.resolve_value(conditional, parameters=PSA_SECRET, resources=TABLE)
    (write,) = [s for s in policy["PolicyDocument"]["Statement"] if "dynamodb:PutItem" in as_list(s["Action"])]
    assert write["Action"] == "dynamodb:PutItem", "no UpdateItem: approving and applying are not the report's"
    assert write["Resource"] == TABLE["UsageTable.Arn"], "the table only, no index"
    assert leading_keys(write) == ["PSA#PROPOSALS#*"]
    store = (REPO / "shared" / "usagewatch" / "store" / "psa.py").read_text(encoding="utf-8")
    assert 'return f"PSA#PROPOSALS#{period}"' in store


def test_the_monthly_report_has_time_for_the_plans_reads(cfn_default: dict[str, Any]) -> None:
    """The plan re-reads each synced line at the connection's pace (10 a second by default): Lambda's limit."""
    assert cfn_default["Resources"][REPORT_FUNCTION]["Properties"]["Timeout"] == 900
    (put,) = statements_for(cfn_default, REPORT_FUNCTION, "s3:PutObject")
    # The applied changes' CSV sits beside the report's two objects, under the prefix the role may write.
    period = Period(2026, 11)
    prefix = template_loader.resolve_value(put["Resource"], resources={"ReportBucket.Arn": "arn:aws:s3:::b"})
    assert prefix == "arn:aws:s3:::b/reports/*"
    for key in (*keys_for(period), applied_key(period)):
        assert f"arn:aws:s3:::b/{key}".startswith(prefix.removesuffix("*")), key


# ---------------------------------------------------------------------------------------------------------------------
# Console: Cognito
# ---------------------------------------------------------------------------------------------------------------------


def test_the_console_is_one_switch(cfn_default: dict[str, Any]) -> None:
    parameters = template_loader.load_template()["Parameters"]
    assert parameters["ConsoleEnabled"]["Default"] == "true"
    assert parameters["ConsoleOperatorEmail"]["Default"] == ""
    for resource_id in CONSOLE_RESOURCES:
        assert cfn_default["Resources"][resource_id]["Condition"] == "ConsoleIsEnabled", resource_id
    for output in ("ConsoleUrl", "ConsoleUserPoolId", "ConsoleUserPoolClientId"):
        assert cfn_default["Outputs"][output]["Condition"] == "ConsoleIsEnabled", output
    url = template_loader.resolve_value(cfn_default["Outputs"]["ConsoleUrl"]["Value"], resources={"ConsoleApi": "a1b2"})
    assert url == "https://a1b2.execute-api.eu-west-1.amazonaws.com/"


def test_nobody_signs_up_and_passwords_are_strong(cfn_default: dict[str, Any]) -> None:
    pool = cfn_default["Resources"]["ConsoleUserPool"]["Properties"]
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    # Signed-in names are user names (the change trail shows them), e-mail an alias to sign in with.
    assert pool["AliasAttributes"] == ["email"] and "UsernameAttributes" not in pool
    policy = pool["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 12
    assert all(policy[k] is True for k in ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols"))
    assert policy["TemporaryPasswordValidityDays"] <= 7
    assert "LambdaConfig" not in pool, "no trigger may create or confirm users"


def test_the_groups_are_the_ones_the_console_checks(cfn_default: dict[str, Any]) -> None:
    groups = resources_of(cfn_default, "AWS::Cognito::UserPoolGroup")
    assert {g["Properties"]["GroupName"] for g in groups.values()} == {OPERATORS, VIEWERS}
    for group in groups.values():
        assert group["Properties"]["UserPoolId"] == {"Ref": "ConsoleUserPool"}


def test_the_app_client_is_the_sign_in_pages(cfn_default: dict[str, Any]) -> None:
    client = cfn_default["Resources"]["ConsoleUserPoolClient"]["Properties"]
    assert client["GenerateSecret"] is False, "the page runs in the browser: a secret there is no secret"
    assert sorted(client["ExplicitAuthFlows"]) == ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_PASSWORD_AUTH"]
    page_script = (REPO / "shared" / "usagewatch" / "console" / "static" / "console.js").read_text(encoding="utf-8")
    assert 'AuthFlow: "USER_PASSWORD_AUTH"' in page_script
    assert (client["IdTokenValidity"], client["AccessTokenValidity"]) == (60, 60)
    assert client["TokenValidityUnits"] == {"IdToken": "minutes", "AccessToken": "minutes", "RefreshToken": "hours"}
    assert client["PreventUserExistenceErrors"] == "ENABLED"


def test_the_first_operator_is_created_only_when_named(cfn_default: dict[str, Any]) -> None:
    user = cfn_default["Resources"]["ConsoleFirstOperator"]
    attachment = cfn_default["Resources"]["ConsoleFirstOperatorIsOperator"]
    assert user["Condition"] == attachment["Condition"] == "HasConsoleOperator"
    assert user["Properties"]["DesiredDeliveryMediums"] == ["EMAIL"]
    email = {"ConsoleOperatorEmail": "olivia.ops@msp.example"}
    assert template_loader.resolve_value(user["Properties"]["Username"], parameters=email) == "olivia.ops"
    attributes = template_loader.resolve_value(user["Properties"]["UserAttributes"], parameters=email)
    assert {"Name": "email", "Value": "olivia.ops@msp.example"} in attributes
    assert attachment["Properties"]["GroupName"] == {"Ref": "ConsoleOperatorsGroup"}
    assert attachment["Properties"]["Username"] == {"Ref": "ConsoleFirstOperator"}


# ---------------------------------------------------------------------------------------------------------------------
# Console: HTTP API and function
# ---------------------------------------------------------------------------------------------------------------------


API_RESOURCES = {
    "ConsoleUserPool": "eu-west-1_Pool",
    "ConsoleUserPoolClient": "client123",
    "ConsoleFunction.Arn": "arn:aws:lambda:eu-west-1:123456789012:function:console",
}


def _routes(cfn: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    body = template_loader.resolve_value(cfn["Resources"]["ConsoleApi"]["Properties"]["Body"], resources=API_RESOURCES)
    return {(method, path): op for path, ops in body["paths"].items() for method, op in ops.items()}


def test_every_route_but_the_sign_in_page_needs_a_pool_token(cfn_default: dict[str, Any]) -> None:
    body = template_loader.resolve_value(
        cfn_default["Resources"]["ConsoleApi"]["Properties"]["Body"], resources=API_RESOURCES
    )
    (scheme,) = body["components"]["securitySchemes"].values()
    authorizer = scheme["x-amazon-apigateway-authorizer"]
    assert authorizer["type"] == "jwt"
    assert authorizer["identitySource"] == "$request.header.Authorization"
    assert authorizer["jwtConfiguration"] == {
        "issuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_Pool",
        "audience": ["client123"],
    }
    (name,) = body["components"]["securitySchemes"]
    routes = _routes(cfn_default)
    public = {("get", "/"), ("get", "/static/{name}")}
    assert public < set(routes)
    # The local front's public paths (console/front.py) are these two: what works locally is what is deployed.
    assert PUBLIC == ("/", "/static/")
    for route, operation in routes.items():
        expected = [{"NONE": []}] if route in public else [{name: []}]
        assert operation["security"] == expected, route
        assert operation["x-amazon-apigateway-integration"]["payloadFormatVersion"] == "2.0"
    assert set(routes) == public | {("get", "/p/{proxy+}"), ("post", "/p/{proxy+}")}
    assert "x-amazon-apigateway-any-method" not in json.dumps(body), "no catch-all method"


def test_the_api_logs_and_throttles(cfn_default: dict[str, Any]) -> None:
    stage = cfn_default["Resources"]["ConsoleApiApiGatewayDefaultStage"]["Properties"]
    assert ref_to(stage["AccessLogSettings"]["DestinationArn"]) == "ConsoleApiAccessLogGroup"
    logged = json.loads(stage["AccessLogSettings"]["Format"])
    assert {"requestId", "route", "status", "error"} <= set(logged)
    assert "Authorization" not in stage["AccessLogSettings"]["Format"], "a token never reaches the log"
    assert stage["DefaultRouteSettings"] == {"ThrottlingBurstLimit": 50, "ThrottlingRateLimit": 20}


def test_the_console_function_environment(cfn_default: dict[str, Any]) -> None:
    function = cfn_default["Resources"][CONSOLE_FUNCTION]["Properties"]
    assert template_loader.function_code_dir(CONSOLE_FUNCTION) == str(REPO / "functions" / "console")
    assert function["Timeout"] == 29, "API Gateway gives up after 30 s"
    variables = function["Environment"]["Variables"]
    assert variables["COGNITO_CLIENT_ID"] == {"Ref": "ConsoleUserPoolClient"}
    assert variables["USAGE_TABLE_NAME"] == {"Ref": "UsageTable"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == "usagewatch-console"
    assert "VENDOR_SECRET_ID" not in variables
    # The PSA plan page's switch: the secret's name with a connection, nothing without; never a permission to read it.
    assert template_loader.resolve_value(variables["PSA_SECRET_ID"]) is None
    assert template_loader.resolve_value(variables["PSA_SECRET_ID"], parameters=PSA_SECRET) == "msp/connectwise-prod"
    app = (REPO / "shared" / "usagewatch" / "console" / "app.py").read_text(encoding="utf-8")
    read = set(re.findall(r'os\.environ(?:\.get\(|\[)"([A-Z_]+)"', app))
    # AWS_REGION comes from Lambda; COGNITO_ENDPOINT (default: the region's) and CONSOLE_PERIOD are for local runs.
    assert read - set(variables) <= {"AWS_REGION", "AWS_DEFAULT_REGION", "COGNITO_ENDPOINT", "CONSOLE_PERIOD"}, read


def test_the_console_role_reads_the_table_and_writes_only_its_keys(cfn_default: dict[str, Any]) -> None:
    granted = granted_on(cfn_default, CONSOLE_FUNCTION)
    assert set(granted) == READS | WRITES, "no secret, no topic, no queue"
    statements = [s for _, s in role_statements(function_role(cfn_default, CONSOLE_FUNCTION))]
    (read,) = [s for s in statements if "dynamodb:Query" in as_list(s["Action"])]
    assert set(read["Action"]) == READS and "Condition" not in read
    assert read["Resource"] == [{"Fn::GetAtt": ["UsageTable", "Arn"]}, {"Fn::Sub": "${UsageTable.Arn}/index/*"}]
    writes = [s for s in statements if set(as_list(s["Action"])) & WRITES]
    (write,) = writes
    assert set(write["Action"]) == WRITES
    assert write["Resource"] == {"Fn::GetAtt": ["UsageTable", "Arn"]}
    assert leading_keys(write) == CONSOLE_KEYS
    assert write["Sid"] == "ConsoleWrites"
    role = function_role(cfn_default, CONSOLE_FUNCTION)
    assert role["Properties"]["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ]


def test_only_the_http_api_may_invoke_the_console(cfn_default: dict[str, Any]) -> None:
    permissions = [
        p["Properties"]
        for p in resources_of(cfn_default, "AWS::Lambda::Permission").values()
        if ref_to(p["Properties"]["FunctionName"]) == CONSOLE_FUNCTION
    ]
    assert len(permissions) == 4
    for permission in permissions:
        assert permission["Principal"] == "apigateway.amazonaws.com"
        assert "${__ApiId__}" in json.dumps(permission["SourceArn"])
        assert permission["SourceArn"]["Fn::Sub"][1]["__ApiId__"] == {"Ref": "ConsoleApi"}
