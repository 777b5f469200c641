"""Customers: the MSP's billed companies, each owning vendor tenants, and the comparable form of a name.

Pure: no AWS, no HTTP. `usagewatch.matching` proposes owners from these names (for the CLI only).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from usagewatch.text import clean_name

# Legal-form words that say nothing about who the company is. Matched as whole tokens after punctuation is gone
# ("B.V." becomes "bv", "S.A." becomes "sa").
LEGAL_SUFFIXES: Final = frozenset(
    {
        "ab", "ag", "as", "asa", "bv", "bvba", "co", "company", "corp", "corporation", "gmbh", "inc",
        "incorporated", "kft", "kg", "limited", "llc", "llp", "lp", "ltd", "nv", "oy", "oyj", "plc", "pty",
        "sa", "sarl", "sas", "se", "spa", "sl", "srl", "sro", "ug",
    }
)  # fmt: skip

_DOTTED: Final = re.compile(r"(?<=\b\w)[./](?=\w\b)|(?<=\b\w)\.(?=\s|$)")
# Latin letters that Unicode does not decompose into a base letter and an accent.
_LATIN: Final = str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ß": "ss", "æ": "ae",
                               "Æ": "AE", "œ": "oe", "Œ": "OE", "þ": "th", "Þ": "Th", "\u0131": "i"})  # fmt: skip
_NON_WORD: Final = re.compile(r"[^\w]+")
_CUSTOMER_ID: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def normalise_name(name: str) -> str:
    """The comparable form of a company name: no accents, case, punctuation, `&` or legal form.

    `"Müller & Söhne GmbH"` and `"muller and sohne"` normalise alike. A name made only of legal-form words
    keeps them, so it never normalises to nothing.
    """
    text = unicodedata.normalize("NFKD", clean_name(name).translate(_LATIN))
    text = "".join(ch for ch in text if not unicodedata.combining(ch)).casefold()
    text = text.replace("&", " and ").replace("+", " and ")
    text = _DOTTED.sub("", text)
    tokens = [t for t in _NON_WORD.sub(" ", text).replace("_", " ").split() if t]
    kept = [t for t in tokens if t not in LEGAL_SUFFIXES]
    return " ".join(kept or tokens)


def customer_id_for(name: str) -> str:
    """A readable, stable id proposed for a new customer: the normalised name as an ASCII slug; a name with no
    ASCII letters or digits (Greek, Japanese, ...) gets `customer-` and a short hash of it."""
    normal = normalise_name(name)
    words = ["".join(ch for ch in word if ch.isascii() and ch.isalnum()) for word in normal.split()]
    slug = "-".join(w for w in words if w)[:64].strip("-")
    if slug and any(ch.isalpha() for ch in slug):
        return slug
    digest = hashlib.sha256(normal.encode()).hexdigest()[:10]
    return f"customer-{slug}-{digest}" if slug else f"customer-{digest}"


def numbers_of(normal: str) -> frozenset[str]:
    """The number tokens of a normalised name: "Globex 2" and "Globex 3" are different companies."""
    return frozenset(t for t in normal.split() if t.isdigit())


def check_customer_id(value: str, *, field: str = "customer_id") -> str | None:
    """None when `value` is a usable customer id, otherwise what is wrong with it."""
    if not _CUSTOMER_ID.match(value or ""):
        return f"{field}: expected 1-64 letters, digits, '.', '_' or '-' starting with a letter or digit, got {value!r}"
    return None


@dataclass(frozen=True, slots=True, order=True)
class TenantRef:
    """One vendor tenant, as the collectors store it."""

    vendor: str
    account_id: str
    tenant_id: str

    def __str__(self) -> str:
        return f"{self.vendor}/{self.account_id}/{self.tenant_id}"


@dataclass(frozen=True, slots=True)
class Customer:
    customer_id: str
    name: str
    external_ref: str | None = None


@dataclass(frozen=True, slots=True)
class TenantMapping:
    """`tenant` is billed to `customer_id`."""

    customer_id: str
    tenant: TenantRef


@dataclass(frozen=True, slots=True)
class NamedTenant:
    tenant: TenantRef
    name: str


def unmapped(tenants: Iterable[NamedTenant], mappings: Iterable[TenantMapping]) -> list[NamedTenant]:
    """The tenants no customer owns, in a stable order."""
    mapped = {m.tenant for m in mappings}
    return sorted((t for t in tenants if t.tenant not in mapped), key=lambda t: t.tenant)


def canonical_tenant_id(vendor: str, tenant_id: str) -> str:
    """The form in which two spellings of one vendor's tenant id compare equal (the vendor's rule: Microsoft
    365's GUIDs ignore case)."""
    from usagewatch import registry

    known = vendor in registry.vendor_ids()
    return tenant_id.casefold() if known and registry.vendor(vendor).case_insensitive_ids else tenant_id


def owners(mappings: Iterable[TenantMapping]) -> Mapping[TenantRef, str]:
    return {m.tenant: m.customer_id for m in mappings}
