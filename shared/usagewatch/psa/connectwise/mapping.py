"""ConnectWise PSA (Manage) payloads and query text, pure: no I/O (docs/psa.md, "ConnectWise").

Numbers come from the JSON text as `Decimal` (`parse_json_exact`), never through a float; a quantity that
DynamoDB cannot hold exactly is a `LineProblem`, not a rounded number.
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final
from urllib.parse import urlsplit

from usagewatch.errors import VendorDataError
from usagewatch.psa.contract import BillCustomer, LineProblem, LineRef, PsaAgreement, PsaCompany, PsaInfo, PsaLine
from usagewatch.redaction import redactor
from usagewatch.text import one_line

PSA: Final = "connectwise"
API_VERSION: Final = "2026.4"
ACCEPT: Final = f"application/vnd.connectwise.com+json; version={API_VERSION}"
MAX_PAGE_SIZE: Final = 1000
# DynamoDB keeps a number exactly up to 38 significant digits, magnitudes 1E-130 to 9.99...E+125.
MAX_DIGITS: Final = 38
MIN_EXPONENT: Final = -130
MAX_EXPONENT: Final = 125
_CODEBASE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}/$")
_LINK: Final = re.compile(r"<([^>]*)>\s*((?:;\s*[^;,]*)*)")
_REL_NEXT: Final = re.compile(r"""(?i);\s*rel\s*=\s*"?next"?(?:\s|;|$)""")


def clip(text: str, limit: int = 300) -> str:
    """Vendor text fit for one line of an error or a log: secrets masked, control characters gone, bounded."""
    text = redactor.scrub(one_line(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- query text ------------------------------------------------------------------------------------------------
def quoted(value: str) -> str:
    """A string literal for `conditions`: in double quotes, with `\\` and `"` escaped by a backslash."""
    if any(ord(char) < 32 for char in value):
        raise ValueError("a condition value must not contain control characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def equals(field: str, value: str | int | bool) -> str:
    """`field=value`: strings quoted and escaped, numbers and booleans bare."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*(?:/[A-Za-z][A-Za-z0-9_]*)*", field):
        raise ValueError(f"not a ConnectWise field path: {field!r}")
    if isinstance(value, bool):
        return f"{field}={'true' if value else 'false'}"
    if isinstance(value, int):
        return f"{field}={value}"
    return f"{field}={quoted(value)}"


def any_of(field: str, values: list[str]) -> str:
    """`(field="a" or field="b")`."""
    if not values:
        raise ValueError("any_of needs at least one value")
    return "(" + " or ".join(equals(field, value) for value in values) + ")"


ACTIVE_AGREEMENTS: Final = f"{equals('agreementStatus', 'Active')} and {equals('cancelledFlag', False)}"


def next_link(header: str | None) -> str | None:
    """The `rel="next"` target of a `Link` header (RFC 8288), or None."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        if _REL_NEXT.search(match.group(2) + ";"):
            return match.group(1).strip() or None
    return None


def same_origin(url: str, base: str) -> bool:
    """A `Link` target is followed only on the host the credentials were meant for."""
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port) and a.path.startswith(b.path + "/")


# --- payloads --------------------------------------------------------------------------------------------------
def parse_json_exact(body: bytes) -> Any:
    """JSON with every non-integer number as `Decimal` from its own text; NaN and Infinity refused."""

    def refuse(name: str) -> Any:
        raise VendorDataError(f"ConnectWise sent {name}, which is not a number")

    try:
        return json.loads(body, parse_float=Decimal, parse_constant=refuse)
    except (ValueError, UnicodeDecodeError) as exc:
        raise VendorDataError(f"ConnectWise sent invalid JSON: {clip(str(exc), 120)}") from None


def exact_quantity(value: object, *, what: str = "quantity", signed: bool = False) -> Decimal:
    """`value` (an int or a Decimal parsed from JSON text) as a Decimal DynamoDB stores exactly; ValueError says
    why not (a float here means the payload was parsed the wrong way: refused rather than trusted)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise ValueError(f"{what} is not a number")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError(f"{what} is not finite")
    if number < 0 and not signed:
        raise ValueError(f"{what} {number} is negative")
    if number.is_zero():
        return Decimal(0)
    exponent = number.adjusted()
    # Not normalize(): it rounds to the context's 28 digits, which would hide exactly what is checked here.
    digits = len("".join(map(str, number.as_tuple().digits)).strip("0"))
    if digits > MAX_DIGITS or not MIN_EXPONENT <= exponent <= MAX_EXPONENT:
        raise ValueError(f"{what} {clip(str(value), 60)} cannot be stored exactly (more than {MAX_DIGITS} digits)")
    return number


def wire_number(quantity: Decimal) -> int | float:
    """The JSON number to send for `quantity`, written with exactly its decimal digits (json writes a float as
    its shortest round-trip text); ValueError when no JSON number of that text exists for it."""
    if not quantity.is_finite() or quantity < 0:
        raise ValueError(f"quantity {quantity} cannot be sent")
    if quantity == quantity.to_integral_value():
        return int(quantity)
    as_float = float(quantity)
    try:
        same = Decimal(repr(as_float)) == quantity
    except InvalidOperation:
        same = False
    if not same:
        raise ValueError(f"quantity {quantity} has more digits than ConnectWise's number type keeps")
    return as_float


def patch_quantity(quantity: Decimal) -> list[dict[str, Any]]:
    """The JSON Patch that sets an addition's quantity outright."""
    return [{"op": "replace", "path": "quantity", "value": wire_number(quantity)}]


def parse_codebase(payload: object) -> str:
    """`Codebase` of `/login/companyinfo/{company_id}` (for example `v4_6_release/`)."""
    if not isinstance(payload, dict):
        raise VendorDataError("ConnectWise companyinfo is not an object (is company_id right for this site?)")
    value = payload.get("Codebase", payload.get("codebase"))
    if not isinstance(value, str) or not value.strip():
        raise VendorDataError("ConnectWise companyinfo has no Codebase (is company_id right for this site?)")
    value = value.strip()
    if not value.endswith("/"):
        value += "/"
    if not _CODEBASE.fullmatch(value):
        raise VendorDataError(f"ConnectWise companyinfo Codebase {clip(value, 40)!r} is not a codebase name")
    return value


def parse_info(payload: object) -> PsaInfo:
    if not isinstance(payload, dict) or not isinstance(payload.get("version"), str):
        raise VendorDataError("ConnectWise /system/info has no version")
    cloud = payload.get("isCloud")
    region = payload.get("cloudRegion")
    return PsaInfo(
        psa=PSA,
        version=clip(payload["version"], 40),
        cloud=cloud if isinstance(cloud, bool) else None,
        region=clip(region, 40) if isinstance(region, str) else None,
    )


def vendor_message(payload: object) -> str:
    """ConnectWise's own error text (`message`, then each `errors[].message`), one line, secrets masked."""
    if not isinstance(payload, dict):
        return ""
    parts = [payload.get("message")]
    errors = payload.get("errors")
    if isinstance(errors, list):
        parts += [e.get("message") for e in errors[:5] if isinstance(e, dict)]
    return clip("; ".join(p for p in parts if isinstance(p, str) and p.strip()))


def _id(payload: dict[str, Any], key: str = "id") -> int:
    value = payload.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise VendorDataError(f"ConnectWise record without a valid {key}")
    return value


def _ref_id(payload: dict[str, Any], key: str) -> int | None:
    ref = payload.get(key)
    value = ref.get("id") if isinstance(ref, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _text(payload: dict[str, Any], key: str, limit: int = 200) -> str:
    value = payload.get(key)
    return clip(value, limit) if isinstance(value, str) else ""


def _date(value: object) -> date | None:
    """A ConnectWise date or date-time (`2026-01-01T00:00:00Z`) as the date it names; None when absent."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip()).date()
    except ValueError:
        raise VendorDataError(f"ConnectWise date {clip(value, 40)!r} is not a date") from None


def parse_company(payload: object) -> PsaCompany:
    if not isinstance(payload, dict):
        raise VendorDataError("ConnectWise company is not an object")
    identifier = payload.get("identifier")
    if not isinstance(identifier, str) or not identifier:
        raise VendorDataError(f"ConnectWise company {_id(payload)} has no identifier")
    # The identifier is a key: kept exactly as ConnectWise stores it, only checked to be one line.
    if one_line(identifier) != identifier:
        raise VendorDataError(f"ConnectWise company {_id(payload)} has an identifier with control characters")
    return PsaCompany(id=_id(payload), identifier=identifier, name=_text(payload, "name"))


def parse_agreement(payload: object) -> PsaAgreement:
    if not isinstance(payload, dict):
        raise VendorDataError("ConnectWise agreement is not an object")
    agreement_id = _id(payload)
    company = _ref_id(payload, "company")
    if company is None:
        raise VendorDataError(f"ConnectWise agreement {agreement_id} has no company")
    cycle = payload.get("billingCycle")
    return PsaAgreement(
        id=agreement_id,
        company_id=company,
        name=_text(payload, "name"),
        status=_text(payload, "agreementStatus", 20) or "Active",
        cancelled=payload.get("cancelledFlag") is True,
        billing_cycle=_text(cycle, "name", 60) or None if isinstance(cycle, dict) else None,
        bill_start_date=_date(payload.get("billStartDate")),
        next_invoice_date=_date(payload.get("nextInvoiceDate")),
        prorate=payload.get("prorateFlag") is True,
    )


def parse_addition(payload: object, agreement_id: int, company_id: int | None = None) -> PsaLine | LineProblem:
    """One addition as a line, or the problem that keeps it from being one."""
    if not isinstance(payload, dict):
        raise VendorDataError(f"ConnectWise agreement {agreement_id}: an addition is not an object")
    ref = LineRef(agreement_id, _id(payload))
    product = payload.get("product")
    identifier = product.get("identifier") if isinstance(product, dict) else None
    if not isinstance(identifier, str) or not identifier:
        return LineProblem(ref, None, "addition has no product identifier")
    try:
        quantity = exact_quantity(payload.get("quantity", 0))
        price = payload.get("unitPrice")
        unit_price = None if price is None else exact_quantity(price, what="unitPrice", signed=True)
        bill = BillCustomer(str(payload.get("billCustomer")))
    except ValueError as exc:
        return LineProblem(ref, identifier, clip(str(exc)))
    return PsaLine(
        ref=ref,
        company_id=company_id,
        product_id=_ref_id(payload, "product"),
        product_identifier=identifier,
        quantity=quantity,
        unit_price=unit_price,
        bill_customer=bill,
        effective_date=_date(payload.get("effectiveDate")),
        cancelled_date=_date(payload.get("cancelledDate")),
        agreement_status=_text(payload, "agreementStatus", 20) or None,
    )


def parse_list(payload: object, what: str) -> list[Any]:
    if not isinstance(payload, list):
        raise VendorDataError(f"ConnectWise {what} listing is not a JSON array")
    return payload
