"""The console's routes through Powertools' HTTP API resolver against moto's DynamoDB: pages read the stored
data, changes go through the billing store's change API and the trail, viewers and unsigned callers are refused,
hostile vendor text comes out escaped."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.console.local import HOSTILE, fill
from tests.local_aws import LocalAws
from usagewatch.console.app import handle
from usagewatch.model import Period
from usagewatch.store.billing import BillingStore

NOW = Period.of(datetime.now(UTC))
OPERATOR = {"cognito:username": "olivia", "cognito:groups": "[operators]", "token_use": "id"}
VIEWER = {"cognito:username": "victor", "cognito:groups": "[viewers]", "token_use": "id"}


class Context:
    function_name = "console"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:console"
    aws_request_id = "req-1"


@pytest.fixture
def filled(aws: LocalAws, monkeypatch: pytest.MonkeyPatch) -> LocalAws:
    monkeypatch.setenv("USAGE_TABLE_NAME", aws.table_name)
    fill(aws.store())
    return aws


def call(
    method: str, path: str, claims: dict[str, Any] | None = None, query: dict[str, str] | None = None,
    form: list[tuple[str, str]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {"content-type": "application/x-www-form-urlencoded"},
        "requestContext": {
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "test"},
            "requestId": "r", "routeKey": "$default", "stage": "$default", "timeEpoch": 0,
        },
        "isBase64Encoded": False,
    }  # fmt: skip
    if query:
        event["queryStringParameters"] = query
    if form is not None:
        event["body"] = urlencode(form)
    if claims is not None:
        event["requestContext"]["authorizer"] = {"jwt": {"claims": claims, "scopes": None}}
    return handle(event, Context())


def test_the_shell_is_public_with_a_strict_policy_and_pinned_htmx(filled: LocalAws) -> None:
    shell = call("GET", "/")
    assert shell["statusCode"] == 200
    policy = shell["headers"]["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert '<script src="static/htmx.min.js">' in shell["body"] and "<script>" not in shell["body"]
    htmx = call("GET", "/static/htmx.min.js")
    assert htmx["statusCode"] == 200 and htmx["body"].startswith("/*! htmx.org 2.0.11")
    assert call("GET", "/static/..%2Fapp.py")["statusCode"] == 404


@pytest.mark.parametrize("path", ["/p/overview", "/p/unmapped", "/p/month", "/p/alerts", "/p/changes"])
def test_every_page_needs_verified_claims(filled: LocalAws, path: str) -> None:
    answer = call("GET", path)
    assert answer["statusCode"] == 401 and "Sign in again" in answer["body"]
    assert call("GET", path, VIEWER)["statusCode"] == 200


def test_unmapped_tenants_accept_and_the_trail(filled: LocalAws) -> None:
    page = call("GET", "/p/unmapped", OPERATOR)["body"]
    assert "Acme Ltd" in page and "Globex GmbH" in page and "3 tenant(s)" in page
    assert HOSTILE not in page and html.escape(HOSTILE, quote=False) in page  # text, never markup
    answer = call("POST", "/p/unmapped/accept", OPERATOR, form=[("tenant", "keepnet/kn-main/c-1")])
    assert answer["statusCode"] == 200 and "Mapped 1 tenant(s)" in answer["body"]
    assert "2 tenant(s)" in answer["body"] and "Acme Ltd" not in answer["body"].split("Ignored tenants")[0]
    mappings = BillingStore(filled.store()).mappings()
    assert [(m.customer_id, m.tenant.tenant_id) for m in mappings] == [("acme", "c-1")]
    trail = call("GET", "/p/changes", VIEWER)["body"]
    assert "olivia" in trail and "keepnet/kn-main/c-1" in trail and "unmapped" in trail and "acme (Acme Ltd)" in trail
    assert re.search(r'<td class="nowrap">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>', trail), "when, on one line, in UTC"


def test_bulk_accept_takes_every_selected_tenant_at_once(filled: LocalAws) -> None:
    chosen = [("tenant", "keepnet/kn-main/c-1"), ("tenant", "keepnet/kn-main/c-2")]
    answer = call("POST", "/p/unmapped/accept", OPERATOR, form=chosen)
    assert "Mapped 2 tenant(s)" in answer["body"]
    assert sorted(m.tenant.tenant_id for m in BillingStore(filled.store()).mappings()) == ["c-1", "c-2"]


def test_ignore_and_undo(filled: LocalAws) -> None:
    ignored = call("POST", "/p/unmapped/ignore", OPERATOR, form=[("tenant", "keepnet/kn-main/c-2")])
    assert "Ignored 1 tenant(s)" in ignored["body"]
    listed, ignored_part = ignored["body"].split("Ignored tenants")
    assert "Globex GmbH" not in listed and "keepnet/kn-main/c-2" in ignored_part
    restored = call("POST", "/p/unmapped/unignore", OPERATOR, form=[("tenant", "keepnet/kn-main/c-2")])
    assert "Restored 1 tenant(s)" in restored["body"] and "Globex GmbH" in restored["body"]
    assert BillingStore(filled.store()).ignored() == set()
    trail = call("GET", "/p/changes", OPERATOR)["body"]
    assert "ignore tenant" in trail and "unignore tenant" in trail


def test_a_viewer_is_refused_every_change_and_nothing_is_written(filled: LocalAws) -> None:
    for path in ("/p/unmapped/accept", "/p/unmapped/ignore", "/p/unmapped/unignore"):
        answer = call("POST", path, VIEWER, form=[("tenant", "keepnet/kn-main/c-1")])
        assert answer["statusCode"] == 403 and "not in the operators group" in answer["body"]
    billing = BillingStore(filled.store())
    assert billing.mappings() == [] and billing.ignored() == set()
    assert "No change yet" in call("GET", "/p/changes", VIEWER)["body"]
    assert call("GET", "/p/unmapped/accept", OPERATOR)["statusCode"] == 404  # changes by POST only


def test_bad_input_is_a_clear_refusal(filled: LocalAws) -> None:
    answer = call("POST", "/p/unmapped/accept", OPERATOR, form=[("tenant", "nosuch/x/y")])
    assert answer["statusCode"] == 400 and "not a tenant of a known vendor" in answer["body"]
    answer = call("GET", "/p/month", VIEWER, query={"period": "2026-13"})
    assert answer["statusCode"] == 400 and "expected YYYY-MM" in answer["body"]


def test_month_action_lines_first_filters_customer_page_and_csv(filled: LocalAws) -> None:
    call("POST", "/p/unmapped/accept", OPERATOR, form=[("tenant", "keepnet/kn-main/c-1")])
    lines = call("GET", "/p/month", VIEWER, query={"period": str(NOW)})["body"].split("<tbody>")[1]
    assert lines.index("<td>unmapped</td>") < lines.index("<td>no_contract</td>")  # action lines first
    only = call("GET", "/p/month", VIEWER, query={"period": str(NOW), "status": "no_contract"})["body"]
    assert "Acme Ltd" in only and "Globex GmbH" not in only
    customer = call("GET", "/p/customer/acme", VIEWER, query={"period": str(NOW)})["body"]
    assert "keepnet / kn-main / c-1" in customer and "Customer acme" in customer
    assert f"{NOW.previous()}: 129" in customer  # the history of earlier months
    csv = call("GET", "/p/month.csv", VIEWER, query={"period": str(NOW)})
    assert csv["headers"]["Content-Type"].startswith("text/csv")
    assert csv["body"].splitlines()[0].startswith("period,") and "acme" in csv["body"]
    assert call("GET", "/p/month.csv", None, query={"period": str(NOW)})["statusCode"] == 401


def test_overview_and_alerts_render(filled: LocalAws) -> None:
    overview = call("GET", "/p/overview", VIEWER)["body"]
    assert "keepnet" in overview and "Unmapped tenants: 3" in overview
    assert "Nothing is firing" in call("GET", "/p/alerts", VIEWER)["body"]


def test_groups_claim_in_either_form() -> None:
    from usagewatch.console.access import caller

    for groups in ("[operators viewers]", ["operators"], "operators"):
        event = {"requestContext": {"authorizer": {"jwt": {"claims": {"username": "u", "cognito:groups": groups}}}}}
        assert caller(event).operator
    assert not caller({"requestContext": {"authorizer": {"jwt": {"claims": json.loads('{"sub": "s"}')}}}}).operator
