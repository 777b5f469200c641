"""The console's routes on Powertools' HTTP API resolver: the shell and its assets are public, every other
route needs verified claims (API Gateway's JWT authorizer, or the local front), changes need `operators`."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from usagewatch.console import mapping, psa_page, views
from usagewatch.console.access import Caller, ForbiddenError, UnauthorizedError, caller
from usagewatch.errors import ConfigError
from usagewatch.model import Period
from usagewatch.settings import load_console_environment, usage_table_name
from usagewatch.store import DynamoStore, audit
from usagewatch.store.billing import BillingStore

HERE: Final = Path(__file__).parent
STATIC: Final = {"htmx.min.js": "text/javascript", "console.js": "text/javascript", "console.css": "text/css"}
HTML: Final = "text/html; charset=utf-8"

app = APIGatewayHttpResolver()


@cache
def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    env.filters["utc"] = _utc
    env.filters["utc_seconds"] = _utc_seconds
    return env


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _utc_seconds(text: str) -> str:
    """A stored ISO time as `2026-12-07 18:46:01 UTC` (the text as it is when it is not one)."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def csp() -> str:
    """No inline script or style, no eval; sign-in talks to Cognito's endpoint only."""
    cognito = load_console_environment().cognito_endpoint
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; "
        f"connect-src 'self' {cognito}; base-uri 'none'; frame-ancestors 'none'"
    )


def _headers(content_type: str) -> dict[str, str]:
    return {
        "Content-Type": content_type,
        "Content-Security-Policy": csp(),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


def page(name: str, status: int = 200, **context: Any) -> Response[str]:
    body = _templates().get_template(name).render(**context)
    return Response(status_code=status, body=body, headers=_headers(HTML))


def _store() -> DynamoStore:
    return DynamoStore(usage_table_name())


def _who() -> Caller:
    return caller(app.current_event.raw_event)


def _period() -> Period:
    text = (app.current_event.query_string_parameters or {}).get("period") or load_console_environment().period
    return Period.parse(text) if text else views.this_month()


def _form() -> dict[str, list[str]]:
    body = app.current_event.decoded_body or ""
    return parse_qs(body, keep_blank_values=False, max_num_fields=10_000)


def _tenants(form: dict[str, list[str]]) -> list[Any]:
    return [views.tenant_ref(t) for t in form.get("tenant", [])]


def _refused(exc: Exception) -> Response[str]:
    """A refusal the page shows in place: 401 leads back to sign-in, 403 and 400 say why."""
    if isinstance(exc, UnauthorizedError):
        return page("error.html", 401, message=str(exc), signin=True)
    return page("error.html", 403 if isinstance(exc, ForbiddenError) else 400, message=str(exc))


app.exception_handler([UnauthorizedError, ForbiddenError, ConfigError, ValueError])(_refused)


@app.get("/")
def shell() -> Response[str]:
    env = load_console_environment()
    return page("shell.html", psa=env.psa_linked, client_id=env.cognito_client_id, endpoint=env.cognito_endpoint)


@app.get("/static/<name>")
def static(name: str) -> Response[str]:
    if name not in STATIC:
        return page("error.html", 404, message="no such file")
    headers = _headers(STATIC[name]) | {"Cache-Control": "public, max-age=3600"}
    return Response(status_code=200, body=(HERE / "static" / name).read_text(encoding="utf-8"), headers=headers)


@app.get("/p/overview")
def overview() -> Response[str]:
    who, period = _who(), _period()
    return page("overview.html", who=who, period=period, **views.overview(_store(), period))


@app.get("/p/unmapped")
def unmapped(notice: str = "", form: mapping.CustomerForm | None = None) -> Response[str]:
    who, period = _who(), _period()
    store = _store()
    return page(
        "unmapped.html",
        400 if form and form.problems else 200,
        who=who,
        period=period,
        notice=notice,
        form=form,
        suggestions=views.suggestions(store, period),
        ignored=views.ignored(store),
    )


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    if len(values) > 1:
        raise ValueError(f"{name}: expected one value, got {len(values)}")
    return values[0].strip()


def _tenant_param(text: str) -> Any:
    return views.tenant_ref(text) if text else None


@app.get("/p/unmapped/panel")
def panel() -> Response[str]:
    """The assign / new-customer panel, for one tenant or for a customer on its own."""
    who, period = _who(), _period()
    who.require_operator()
    tenant = _tenant_param((app.current_event.query_string_parameters or {}).get("tenant", ""))
    form = mapping.tenant_form(_store(), period, tenant)
    if tenant is not None and form.tenant is None:
        return page("error.html", 400, message=f"{tenant} is no longer unmapped in {period}: reload the list")
    return page("_panel.html", who=who, period=period, form=form)


@app.get("/p/customers/search")
def search() -> Response[str]:
    who, period = _who(), _period()
    q = app.current_event.query_string_parameters or {}
    found = mapping.search(BillingStore(_store()).customers(), q.get("q", ""))
    tenant = _tenant_param(q.get("tenant", ""))
    return page("_search.html", who=who, period=period, found=found, tenant=tenant, query=q.get("q", ""))


@app.post("/p/unmapped/assign")
def assign() -> Response[str]:
    who, period, form = _who(), _period(), _form()
    who.require_operator()
    tenant = views.tenant_ref(_one(form, "tenant"))
    return unmapped(mapping.assign(_store(), who, period, tenant, _one(form, "customer")))


@app.post("/p/customers/create")
def create_customer() -> Response[str]:
    who, period, sent = _who(), _period(), _form()
    who.require_operator()
    form = mapping.CustomerForm(
        _one(sent, "customer_id"), _one(sent, "customer_name"), _one(sent, "external_ref"),
        _tenant_param(_one(sent, "tenant")), _one(sent, "tenant_name"), map_tenant=bool(_one(sent, "map")),
    )  # fmt: skip
    try:
        return unmapped(mapping.create(_store(), who, period, form))
    except mapping.FormRefusedError as exc:
        return unmapped(form=exc.form)


@app.post("/p/unmapped/accept")
def accept() -> Response[str]:
    who, period = _who(), _period()
    notice = views.accept(_store(), who, period, _tenants(_form()))
    return unmapped(notice)


@app.post("/p/unmapped/ignore")
def ignore() -> Response[str]:
    notice = views.set_ignored(_store(), _who(), _tenants(_form()), ignore=True)
    return unmapped(notice)


@app.post("/p/unmapped/unignore")
def unignore() -> Response[str]:
    notice = views.set_ignored(_store(), _who(), _tenants(_form()), ignore=False)
    return unmapped(notice)


@app.get("/p/month")
def month() -> Response[str]:
    who, period = _who(), _period()
    q = app.current_event.query_string_parameters or {}
    wanted = views.MonthFilter(q.get("status", ""), q.get("vendor", ""), q.get("customer", ""))
    result, rows = views.month(_store(), period, wanted)
    return page("month.html", who=who, period=period, result=result, rows=rows, wanted=wanted, statuses=views.STATUSES)


@app.get("/p/month.csv")
def month_csv() -> Response[str]:
    _who()
    period = _period()
    customer = (app.current_event.query_string_parameters or {}).get("customer")
    body = views.month_csv(_store(), period, customer)
    headers = _headers("text/csv; charset=utf-8") | {
        "Content-Disposition": f'attachment; filename="usagewatch-{period}.csv"'
    }
    return Response(status_code=200, body=body, headers=headers)


@app.get("/p/customer/<customer_id>")
def customer(customer_id: str) -> Response[str]:
    who, period = _who(), _period()
    store = _store()
    result, rows = views.month(store, period, views.MonthFilter(customer=customer_id))
    return page(
        "customer.html",
        who=who,
        period=period,
        customer_id=customer_id,
        rows=rows,
        result=result,
        tenants=views.customer_tenants(store, customer_id),
        contracts=views.customer_contracts(store, customer_id),
    )


@app.get("/p/alerts")
def alerts() -> Response[str]:
    who, period = _who(), _period()
    return page("alerts.html", who=who, period=period, alerts=views.alerts(_store(), period))


class NotConfiguredError(Exception):
    """A page of a link this console has not been given (no PSA connection)."""


def _psa_configured() -> None:
    if not load_console_environment().psa_linked:
        raise NotConfiguredError("No PSA connection is configured for this console: there is no PSA plan page.")


def _not_configured(exc: NotConfiguredError) -> Response[str]:
    return page("error.html", 404, message=str(exc))


app.exception_handler(NotConfiguredError)(_not_configured)


@app.get("/p/psa")
def psa() -> Response[str]:
    who, period = _who(), _period()
    _psa_configured()
    return page("psa.html", who=who, period=period, notice="", plan=psa_page.month(_store(), period))


@app.post("/p/psa/approve")
def psa_approve() -> Response[str]:
    who, period, form = _who(), _period(), _form()
    who.require_operator()
    _psa_configured()
    ids = None if _one(form, "all") else [i.strip() for i in form.get("proposal", [])]
    notice = psa_page.approve(_store(), who, period, ids)
    return page("psa.html", who=who, period=period, notice=notice, plan=psa_page.month(_store(), period))


@app.get("/p/changes")
def changes() -> Response[str]:
    who = _who()
    return page("changes.html", who=who, entries=audit.recent(_store()))


def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return app.resolve(event, context)
