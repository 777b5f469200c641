"""Who owns an unmapped tenant: exact normalised names first, then fuzzy (rapidfuzz) within a token block.

A suggestion is only ever a proposal; the operator accepts it (CLI `--accept`, or by editing the suggestions
CSV and importing it as a mapping). Used by the CLI, never by the collectors, so the Lambda layer does not
carry rapidfuzz.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from rapidfuzz import fuzz, process

from usagewatch.customers import (
    Customer,
    NamedTenant,
    TenantMapping,
    TenantRef,
    customer_id_for,
    normalise_name,
    numbers_of,
)
from usagewatch.text import clean_name

# Scores are rapidfuzz's 0-100; below this a name is too different to propose.
DEFAULT_MIN_SCORE: Final = 85.0
# A token shared by more customers than this ("group", "services") is too common to narrow the search.
MAX_BLOCK_SIZE: Final = 200


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A proposed owner for an unmapped tenant: an existing customer, or a new one (`new_customer`) grouping
    tenants of the same company across vendors. `score` is 100 for an exact normalised-name match."""

    tenant: TenantRef
    tenant_name: str
    customer_id: str
    customer_name: str
    score: float
    method: Literal["exact", "fuzzy"]
    new_customer: bool


class _Index:
    """Customers by normalised name, plus a token index that keeps fuzzy matching to a small block."""

    def __init__(self, customers: Iterable[Customer]) -> None:
        self.by_key: dict[str, Customer] = {}
        self.keys: list[str] = []
        self.numbers: list[frozenset[str]] = []
        self.owners: list[Customer] = []
        self.ids: set[str] = set()
        self.tokens: defaultdict[str, list[int]] = defaultdict(list)
        for customer in customers:
            self.add(customer)

    def add(self, customer: Customer) -> None:
        key = normalise_name(customer.name)
        self.by_key.setdefault(key, customer)
        position = len(self.keys)
        self.keys.append(key)
        self.numbers.append(numbers_of(key))
        self.owners.append(customer)
        self.ids.add(customer.customer_id)
        for token in set(key.split()):
            self.tokens[token].append(position)

    def _block(self, token: str) -> list[int]:
        """The customers sharing `token`; none for a token too common to narrow the search."""
        block = self.tokens.get(token, [])
        return block if len(block) <= MAX_BLOCK_SIZE else []

    def best(self, key: str, min_score: float) -> tuple[Customer, float] | None:
        numbers = numbers_of(key)
        block = sorted(
            i for i in {i for token in set(key.split()) for i in self._block(token)} if self.numbers[i] == numbers
        )
        if not block:
            return None
        match = process.extractOne(
            key, [self.keys[i] for i in block], scorer=fuzz.token_sort_ratio, score_cutoff=min_score
        )
        if match is None:
            return None
        _, score, position = match
        return self.owners[block[position]], float(score)


def suggest(
    tenants: Iterable[NamedTenant],
    customers: Iterable[Customer],
    mappings: Iterable[TenantMapping] = (),
    *,
    min_score: float = DEFAULT_MIN_SCORE,
) -> list[Suggestion]:
    """A proposed customer for every tenant that has none.

    Exact normalised-name matches first, then fuzzy (rapidfuzz `token_sort_ratio`, at least `min_score`) within
    the block of customers sharing a name token and the same numbers ("Globex 2" is not "Globex 3"), so 30,000
    tenants never compare all pairs. A tenant matching no
    customer proposes a new one; later tenants of the same company (another vendor, a spelling variant) join it.
    Tenants are taken in a stable order (name, then reference), so the same input gives the same proposals.
    """
    mapped = {m.tenant for m in mappings}
    index = _Index(customers)
    proposed_new: set[str] = set()
    out: list[Suggestion] = []
    pending = sorted((t for t in tenants if t.tenant not in mapped), key=lambda t: (normalise_name(t.name), t.tenant))
    for item in pending:
        key = normalise_name(item.name)
        exact = index.by_key.get(key)
        if exact is not None:
            found: tuple[Customer, float] | None = (exact, 100.0)
        else:
            found = index.best(key, min_score)
        if found is None:
            customer = Customer(_unique_id(customer_id_for(item.name), index), clean_name(item.name))
            index.add(customer)
            proposed_new.add(customer.customer_id)
            found = (customer, 100.0)
        customer, score = found
        out.append(
            Suggestion(
                tenant=item.tenant,
                tenant_name=item.name,
                customer_id=customer.customer_id,
                customer_name=customer.name,
                score=round(score, 1),
                method="exact" if score >= 100.0 else "fuzzy",
                new_customer=customer.customer_id in proposed_new,
            )
        )
    return out


def _unique_id(wanted: str, index: _Index) -> str:
    taken = index.ids
    if wanted not in taken:
        return wanted
    n = 2
    while f"{wanted}-{n}" in taken:
        n += 1
    return f"{wanted}-{n}"
