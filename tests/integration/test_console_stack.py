"""The stack's key-scoped write permissions (template.yaml, `dynamodb:LeadingKeys`) against what the code really
writes: every DynamoDB write request the console (and the PSA sync) sends to moto is recorded with its partition
keys, and each key must match a pattern of the function role's write statement, read from the translated template.
moto does not enforce IAM, so without this a new key would pass every local test and fail in AWS with AccessDenied.
The other way round: a contract and the usage items must match none of the console's patterns."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import boto3
import pytest

from tests import template_loader
from tests.console.local import fill
from tests.integration.test_console_app import NOW, Context
from tests.local_aws import LocalAws
from tests.simulators.connectwise import ConnectWiseSimulator
from usagewatch import aws as aws_module
from usagewatch import registry
from usagewatch.console.app import handle
from usagewatch.contracts import Contract
from usagewatch.customers import Customer
from usagewatch.psa.contract import LineRef
from usagewatch.psa.proposals import Proposal
from usagewatch.redaction import redactor
from usagewatch.store import DynamoStore
from usagewatch.store.billing import BillingStore
from usagewatch.store.psa import ProductMapping, PsaStore

# What IAM authorises each write call (or each action inside a transaction) as.
TRANSACT_ACTIONS = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
ROOT = Path(__file__).resolve().parents[2]
READS = {"GetItem", "Query", "BatchGetItem", "Scan", "TransactGetItems", "DescribeTable"}


@cache
def translated() -> dict[str, Any]:
    return template_loader.translate_template()


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statements(function_id: str) -> list[dict[str, Any]]:
    """The role statements of `function_id` with every optional feature on: a policy under `!If [HasPsa, ...]`
    counts as its PSA branch (the report's proposal writes exist only there)."""
    role_id = translated()["Resources"][function_id]["Properties"]["Role"]["Fn::GetAtt"][0]
    found = []
    for policy in translated()["Resources"][role_id]["Properties"]["Policies"]:
        concrete = policy
        if "Fn::If" in policy:
            condition, concrete, _ = policy["Fn::If"]
            assert condition == "HasPsa", condition
        found += as_list(concrete["PolicyDocument"]["Statement"])
    return found


def write_statement(function_id: str) -> dict[str, Any]:
    """The role statement of `function_id` that allows item writes (there is exactly one)."""
    (statement,) = [s for s in statements(function_id) if "dynamodb:PutItem" in as_list(s["Action"])]
    return dict(statement)


def leading_keys(function_id: str) -> list[str]:
    return list(write_statement(function_id)["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])


def read_actions(function_id: str) -> set[str]:
    return {
        a.removeprefix("dynamodb:")
        for s in statements(function_id)
        if "dynamodb:Query" in as_list(s["Action"])
        for a in as_list(s["Action"])
    }


def string_like(pattern: str, value: str) -> bool:
    """IAM's StringLike: `*` any run of characters, `?` one character, everything else literal, case-sensitive."""
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.DOTALL) is not None


def allowed(patterns: list[str], pk: str) -> bool:
    return any(string_like(p, pk) for p in patterns)


@dataclass
class Recorder:
    """(IAM action, partition key) of every DynamoDB item write, and the read operations, of clients built by
    usagewatch.aws.client while it is installed."""

    writes: list[tuple[str, str]] = field(default_factory=list)
    reads: set[str] = field(default_factory=set)

    def __call__(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        operation = model.name
        if operation in READS:
            self.reads.add(operation)
        elif operation == "PutItem":
            self.writes.append(("PutItem", params["Item"]["pk"]["S"]))
        elif operation in ("UpdateItem", "DeleteItem"):
            self.writes.append((operation, params["Key"]["pk"]["S"]))
        elif operation == "BatchWriteItem":
            for requests in params["RequestItems"].values():
                for r in requests:
                    item = r["PutRequest"]["Item"] if "PutRequest" in r else r["DeleteRequest"]["Key"]
                    self.writes.append(("BatchWriteItem", item["pk"]["S"]))
        elif operation == "TransactWriteItems":
            for action in params["TransactItems"]:
                ((kind, body),) = action.items()
                key = body["Item"] if kind == "Put" else body["Key"]
                self.writes.append((TRANSACT_ACTIONS[kind], key["pk"]["S"]))
        else:
            self.writes.append((operation, "?"))  # an operation this recorder does not know: fails the checks

    def clear(self) -> None:
        self.writes.clear()
        self.reads.clear()


@pytest.fixture
def recorder(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    return install_recorder(aws, monkeypatch)


def install_recorder(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """A Recorder on every DynamoDB client usagewatch.aws.client builds until the test ends."""
    recording = Recorder()
    original: Callable[..., Any] = aws_module.client

    def recording_client(service: str, **kwargs: Any) -> Any:
        client = original(service, **kwargs)
        if service == "dynamodb":
            client.meta.events.register("before-parameter-build.dynamodb", recording)
        return client

    monkeypatch.setattr(aws_module, "client", recording_client)
    monkeypatch.setenv("USAGE_TABLE_NAME", aws.table_name)
    return recording


def recorded_store(aws: LocalAws) -> DynamoStore:
    """A store whose client comes from usagewatch.aws.client, as the functions' do (LocalAws.store() brings its own)."""
    return DynamoStore(aws.table_name)


def assert_within(function_id: str, recording: Recorder) -> set[str]:
    """Every recorded write is an action the role's write statement has, on a key its LeadingKeys admit; every
    read an action of its read statement. Returns the patterns that some write needed."""
    statement = write_statement(function_id)
    actions = {a.removeprefix("dynamodb:") for a in as_list(statement["Action"])}
    patterns = leading_keys(function_id)
    assert statement["Resource"] == {"Fn::GetAtt": ["UsageTable", "Arn"]}, "writes on the table only, no index"
    assert recording.writes, "nothing was written: the scenario did not exercise a write path"
    outside = [(a, pk) for a, pk in recording.writes if a not in actions or not allowed(patterns, pk)]
    assert not outside, f"{function_id} would be refused in AWS: {outside} (allowed: {sorted(actions)} on {patterns})"
    assert recording.reads <= read_actions(function_id), recording.reads - read_actions(function_id)
    return {p for p in patterns for _, pk in recording.writes if string_like(p, pk)}


# ---------------------------------------------------------------------------------------------------------------------
# The console
# ---------------------------------------------------------------------------------------------------------------------

CONSOLE = "ConsoleFunction"


def http_api_event(path: str, form: list[tuple[str, str]], *, period: str) -> dict[str, Any]:
    """A form POST as API Gateway's HTTP API hands it over: base64-encoded, an array claim as "[a b]" text."""
    body = base64.b64encode(urlencode(form).encode()).decode()
    claims = {"cognito:username": "olivia", "cognito:groups": "[operators viewers]", "token_use": "id"}
    return {
        "version": "2.0", "routeKey": "POST /p/{proxy+}", "rawPath": path, "rawQueryString": f"period={period}",
        "queryStringParameters": {"period": period},
        "headers": {"content-type": "application/x-www-form-urlencoded"}, "body": body, "isBase64Encoded": True,
        "requestContext": {
            "http": {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1",
                     "userAgent": "test"},
            "requestId": "r", "routeKey": "POST /p/{proxy+}", "stage": "$default", "timeEpoch": 0,
            "authorizer": {"jwt": {"claims": claims, "scopes": None}},
        },
    }  # fmt: skip


# Every POST route of the console (console/app.py), each change it makes, and words its answer must hold.
CHANGES: list[tuple[str, list[tuple[str, str]], str]] = [
    ("/p/unmapped/accept", [("tenant", "keepnet/kn-main/c-1")], "Mapped 1 tenant(s)"),  # one suggestion
    ("/p/unmapped/ignore", [("tenant", "keepnet/kn-main/c-9")], ""),
    ("/p/unmapped/unignore", [("tenant", "keepnet/kn-main/c-9")], ""),
    ("/p/unmapped/assign", [("tenant", "keepnet/kn-main/c-2"), ("customer", "initech")], "Assigned"),
    ("/p/customers/create", [("customer_id", "solo"), ("customer_name", "Solo Ltd")], "Created customer Solo"),
    ("/p/customers/create", [("customer_id", "c3-ltd"), ("customer_name", "C3 Ltd"), ("external_ref", "CW-3"),
                             ("tenant", "keepnet/kn-main/c-3"), ("tenant_name", "C3"), ("map", "1")], "and mapped"),
    ("/p/psa/approve", [("proposal", "p1")], "Approved 1 proposal(s)"),  # selected
    ("/p/psa/approve", [("all", "1")], "Approved 1 proposal(s)"),  # all (the one left)
]  # fmt: skip


def test_every_console_change_writes_only_under_its_leading_keys(
    aws: LocalAws, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each POST route as the HTTP API delivers it; the proposals exist (the monthly report's plan writes them)."""
    fill(aws.store())
    BillingStore(aws.store()).import_mappings([Customer("initech", "Initech Corp", "CW-17")], [], what="test")
    period = str(NOW)
    PsaStore(aws.store()).add([replace(PROPOSAL, period=period), replace(PROPOSAL, id="p2", period=period)])
    monkeypatch.setenv("PSA_SECRET_ID", "usagewatch/connectwise")
    used: set[str] = set()
    for path, form, words in CHANGES:
        recorder.clear()
        answer = handle(http_api_event(path, form, period=period), Context())
        notice = re.findall(r'<p class="(?:notice|error)[^>]*>(.*?)</p>', answer["body"], re.DOTALL)
        assert answer["statusCode"] == 200 and words in answer["body"], (path, answer["statusCode"], notice)
        used |= assert_within(CONSOLE, recorder)
    assert {path for path, _, _ in CHANGES} == posted_routes(), "a POST route of the console is not driven here"
    mapped = {m.tenant.tenant_id: m.customer_id for m in BillingStore(aws.store()).mappings()}
    assert (mapped["c-2"], mapped["c-3"], set(mapped)) == ("initech", "c3-ltd", {"c-1", "c-2", "c-3"}), mapped
    assert {c.customer_id for c in BillingStore(aws.store()).customers()} >= {"initech", "solo", "c3-ltd"}
    approved = {(p.id, p.status.value, p.approved_by) for p in PsaStore(aws.store()).proposals(period)}
    assert approved == {("p1", "approved", "olivia"), ("p2", "approved", "olivia")}
    # Every pattern is needed by some change: the list is no wider than what the console writes.
    assert used == set(leading_keys(CONSOLE)), set(leading_keys(CONSOLE)) - used


def posted_routes() -> set[str]:
    app = (ROOT / "shared" / "usagewatch" / "console" / "app.py").read_text(encoding="utf-8")
    return set(re.findall(r'@app\.post\("([^"]+)"\)', app))


PROPOSAL = Proposal(
    id="p1", period="2026-12", psa="connectwise", ref=LineRef(7, 1), customer_id="acme", vendor="keepnet",
    metric="monthly_users", product_identifier="KN-USERS", from_quantity=Decimal(100), to_quantity=Decimal(130),
    unit_price=Decimal("2.50"), reason="more used than billed",
)  # fmt: skip


def test_contracts_and_usage_are_outside_the_console_leading_keys(aws: LocalAws, recorder: Recorder) -> None:
    patterns = leading_keys(CONSOLE)
    # Usage, snapshots, totals, the period's account list: what a collector writes.
    fill(recorded_store(aws))
    usage = {pk for _, pk in recorder.writes}
    assert any(pk.startswith("USAGE#") for pk in usage), usage
    assert not [pk for pk in usage if allowed(patterns, pk)], "the console could overwrite usage"
    # A contract change (the operator's `contracts import`, the PSA sync): the contract items must be refused.
    recorder.clear()
    BillingStore(recorded_store(aws)).import_contracts([Contract("acme", "keepnet", "monthly_users", 60, NOW)])
    contracts = {pk for _, pk in recorder.writes if pk.startswith("BILLING#") and pk.count("#") == 1}
    assert contracts == {"BILLING#keepnet"}
    assert not [pk for pk in contracts if allowed(patterns, pk)], "the console could change a contract"
    for vendor in registry.vendor_ids():
        assert not allowed(patterns, f"BILLING#{vendor}"), vendor
    # ...and the other keys no console change needs.
    for other in ("RUN#keepnet#kn-main", "ALERT#keepnet#kn-main", "PSA#PRODUCTS", "PSA#AUDIT#2026-12", "USAGE#x"):
        assert not allowed(patterns, other), other


def test_string_like_is_iams() -> None:
    assert string_like("BILLING#*#*", "BILLING#keepnet#kn-main")
    assert string_like("BILLING#*#*", "BILLING#CHANGE#0123abcd")
    assert not string_like("BILLING#*#*", "BILLING#keepnet")
    assert not string_like("BILLING", "BILLING#keepnet")
    assert string_like("a?c", "abc") and not string_like("a?c", "ac")
    assert not string_like("PSA#PROPOSALS#*", "psa#proposals#2026-12")


# ---------------------------------------------------------------------------------------------------------------------
# The PSA sync
# ---------------------------------------------------------------------------------------------------------------------

PSA_SYNC = "PsaSyncFunction"


def test_the_psa_sync_writes_only_contracts_and_their_change(aws: LocalAws, recorder: Recorder) -> None:
    from usagewatch.psa.scheduled import handle

    redactor.clear()
    store = aws.store()
    BillingStore(store).import_mappings([Customer("acme", "Acme Ltd", "ACME")], [])
    PsaStore(store).import_products([ProductMapping("connectwise", "KN-USERS", "keepnet", "monthly_users")], what="t")
    with ConnectWiseSimulator() as sim:
        company = sim.add_company("ACME", "Acme Ltd")
        agreement = sim.add_agreement(company, "Managed services")
        sim.add_addition(agreement, "KN-USERS", Decimal(12))
        boto3.client("secretsmanager").create_secret(Name="cw", SecretString=json.dumps(sim.connection()))
        environ = {"USAGE_TABLE_NAME": aws.table_name, "PSA_SECRET_ID": "cw"}
        recorder.clear()
        assert handle({}, environ=environ)["written"] == 1
        used = assert_within(PSA_SYNC, recorder)
        assert "BILLING#keepnet" in {pk for _, pk in recorder.writes}
    assert {"BILLING", "BILLING#CHANGE#*", "BILLING#keepnet"} <= used
    patterns = leading_keys(PSA_SYNC)
    assert sorted(p.removeprefix("BILLING#") for p in patterns if p.count("#") == 1 and "*" not in p) == sorted(
        registry.vendor_ids()
    ), "the sync may write the contracts of every registered vendor, and only theirs"
    for console_only in ("CUSTOMERS", "BILLING#IGNORED", "BILLING#keepnet#kn-main", "AUDIT#CONSOLE", "USAGE#x"):
        assert not allowed(patterns, console_only), console_only
