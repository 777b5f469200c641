"""The validation fast paths of the per-record path (issue 29): each gives exactly what the full check gives."""

from __future__ import annotations

import dataclasses
import inspect
import math
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes.memory_store import MemoryStore
from usagewatch.errors import VendorDataError
from usagewatch.model import MAX_NAME_LENGTH, MAX_PLAUSIBLE_VALUE, Period, Tenant, UsageRecord, Window
from usagewatch.pipeline.account import AccountRun
from usagewatch.rules import DEFAULT_RULES
from usagewatch.text import clean_name
from usagewatch.trends import Trends

NOV = Window.month(Period(2026, 11))


def record(**changes: object) -> UsageRecord:
    fields: dict[str, object] = {
        "vendor": "keepnet",
        "account_id": "kn",
        "tenant": Tenant("c1", "Acme"),
        "metric": "target_users",
        "value": 12,
        "unit": "users",
        "window": NOV,
        "quota": 20,
        "limit_exceeded": False,
        **changes,
    }
    return UsageRecord(**fields)  # type: ignore[arg-type]


def slow_name(text: str) -> str:
    """Tenant's name rule written out without the fast path."""
    name = clean_name(text[: MAX_NAME_LENGTH * 4])
    return name[: MAX_NAME_LENGTH - 1] + "\u2026" if len(name) > MAX_NAME_LENGTH else name


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"projected": 30, "projection_source": "vendor", "minimum": 5, "projected_next_period": 40},
        {"projection_fit": (1.0, 2.0, 3.0), "projected": 31.5, "projection_source": "usagewatch"},
        {"metric": "sku", "vendor": "microsoft365", "unit": "seats", "attributes": {"sku_id": "x", "state": "on"}},
    ],
)
@pytest.mark.parametrize(
    ("projected", "source", "fit"),
    [(None, None, None), (42.25, "usagewatch", (1.0, 2.5)), (7, None, None), (0, "vendor", ()), (None, None, (3.0,))],
)
def test_with_projection_is_replace_without_the_re_check(
    changes: dict[str, object], projected: float | None, source: str | None, fit: tuple[float, ...] | None
) -> None:
    base = record(**changes)
    fast = base.with_projection(projected, source, fit)  # type: ignore[arg-type]
    slow = dataclasses.replace(base, projected=projected, projection_source=source, projection_fit=fit)  # type: ignore[arg-type]
    assert fast == slow and type(fast) is UsageRecord
    assert [getattr(fast, f.name) for f in dataclasses.fields(UsageRecord)] == [
        getattr(slow, f.name) for f in dataclasses.fields(UsageRecord)
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.value = 3  # type: ignore[misc]


@pytest.mark.parametrize("bad", [-1, math.nan, math.inf, True, MAX_PLAUSIBLE_VALUE + 1, "5"])
def test_with_projection_refuses_what_the_constructor_refuses(bad: object) -> None:
    with pytest.raises(VendorDataError) as slow:
        dataclasses.replace(record(), projected=bad, projection_source="usagewatch")  # type: ignore[arg-type]
    with pytest.raises(VendorDataError) as fast:
        record().with_projection(bad, "usagewatch", None)  # type: ignore[arg-type]
    assert str(fast.value) == str(slow.value)
    with pytest.raises(VendorDataError, match="unknown projection source"):
        record().with_projection(1, "someone", None)  # type: ignore[arg-type]


class Count(int):
    """An int subclass takes the full check, as before."""


@pytest.mark.parametrize(
    ("name", "bad", "message"),
    [
        ("value", -1, "out of range"),
        ("value", MAX_PLAUSIBLE_VALUE + 1, "out of range"),
        ("value", True, "must be a number, got bool"),
        ("value", math.nan, "out of range"),
        ("quota", False, "must be a number, got bool"),
        ("quota", -3, "out of range"),
        ("minimum", math.inf, "out of range"),
        ("projected_next_period", "7", "must be a number, got str"),
    ],
)
def test_plain_counts_take_one_step_and_anything_else_the_full_check(name: str, bad: object, message: str) -> None:
    with pytest.raises(VendorDataError, match=message):
        record(**{name: bad})
    assert record(value=Count(5)).value == 5 and record(value=2.5, quota=0).value == 2.5
    assert record(value=MAX_PLAUSIBLE_VALUE, quota=0).quota == 0


@settings(deadline=None)  # timing is for `make bench`; a loaded machine must not fail this
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_a_tenant_name_is_what_clean_name_makes_of_it(text: str) -> None:
    assert Tenant("t", text).tenant_name == slow_name(text)


@pytest.mark.parametrize(
    "text",
    [
        "Acme Corp",
        " Acme",
        "Acme ",
        "two  spaces",
        "tab\there",
        "bidi\u202eevil",
        "nbsp\u00a0x",
        "line\u2028sep",
        "zero\u200bwidth",
        "x" * MAX_NAME_LENGTH,
        "x" * (MAX_NAME_LENGTH + 1),
        "\u00e9t\u00e9 \u65e5\u672c",
        "",
    ],
)
def test_tenant_names_fast_or_slow_agree(text: str) -> None:
    assert Tenant("t", text).tenant_name == slow_name(text)


def test_every_character_below_u3100_alone_and_inside_a_name() -> None:
    for code in range(0x3100):
        char = chr(code)
        for text in (f"a{char}b", char, f"{char}a", f"a {char}"):
            assert Tenant("t", text).tenant_name == slow_name(text), hex(code)


def test_observe_names_each_period_whatever_object_carries_it() -> None:
    run = AccountRun("keepnet", "kn", datetime(2026, 11, 10, tzinfo=UTC))
    oct_ = Window.month(Period(2026, 10))
    other_nov = Window.month(Period(2026, 11))  # equal to NOV, another object
    for window, value in ((NOV, 1), (oct_, 2), (other_nov, 4), (NOV, 8)):
        run.observe(record(window=window, value=value), [])
    assert run.periods == {"2026-11", "2026-10"}
    assert run.read == {("c1", "2026-11"), ("c1", "2026-10")}
    assert run.metrics_read == {("c1", "target_users", "2026-11"), ("c1", "target_users", "2026-10")}
    sums = {key: (value, len(tenants)) for key, (_, value, tenants, _) in run.totals.sums.items()}
    assert sums == {("2026-11", "target_users"): (13, 1), ("2026-10", "target_users"): (2, 1)}


def test_judge_groups_a_tenants_records_by_period_in_order() -> None:
    store = MemoryStore()
    trends = Trends(store, DEFAULT_RULES)
    oct_ = Window.month(Period(2026, 10))
    other_nov = Window.month(Period(2026, 11))
    records = [
        record(window=NOV, metric="target_users"),
        record(window=oct_, metric="monthly_users", quota=None, limit_exceeded=None),
        record(window=other_nov, metric="deleted_target_users", quota=None, limit_exceeded=None),
    ]
    judged = trends.judge(records, datetime(2026, 11, 10, tzinfo=UTC))
    # Grouped by period (November's two records together, in their order), then October.
    assert [(str(r.period), r.metric) for r, _ in judged] == [
        ("2026-11", "target_users"),
        ("2026-11", "deleted_target_users"),
        ("2026-10", "monthly_users"),
    ]
    # October is over: its cumulative metric carries no projection; a non-cumulative record comes back as it was.
    monthly = judged[2][0]
    assert (monthly.projected, monthly.projection_source, monthly.projection_fit) == (None, None, None)
    assert judged[0][0] == records[0] and judged[1][0] == records[2]


def test_the_written_out_init_takes_every_field_in_order_with_its_default() -> None:
    parameters = list(inspect.signature(UsageRecord.__init__).parameters.values())[1:]
    declared = dataclasses.fields(UsageRecord)
    assert [p.name for p in parameters] == [f.name for f in declared]
    for parameter, declared_field in zip(parameters, declared, strict=True):
        expected = inspect.Parameter.empty if declared_field.default is dataclasses.MISSING else declared_field.default
        assert parameter.default == expected, parameter.name
    made = record(projected=30, attributes=None)
    assert [getattr(made, f.name) for f in declared] == [
        "keepnet", "kn", Tenant("c1", "Acme"), "target_users", 12, "users", NOV, 20, 30, None, False, None, None,
        "vendor", None,
    ]  # fmt: skip
    assert made == record(projected=30) and hash(made) == hash(record(projected=30))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.metric = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"vendor": "nobody"}, "unknown vendor"),
        ({"unit": "parsecs"}, "unknown unit"),
        ({"metric": "Target Users"}, "invalid metric name"),
        ({"metric": ""}, "invalid metric name"),
    ],
)
def test_names_once_valid_do_not_make_other_names_valid(changes: dict[str, object], message: str) -> None:
    record()  # the valid (vendor, unit, metric) is remembered
    for _ in range(2):  # refused every time, not only the first
        with pytest.raises(VendorDataError, match=message):
            record(**changes)


def test_a_float_list_is_stored_as_the_general_path_stores_it() -> None:
    from usagewatch.store.table import _value, serialize

    values = [0.1, 2.0, 1e-07, 12345678.125, 3, -0.0, math.inf]
    fast = serialize({"fit": values})["fit"]
    assert fast == {"L": [{"N": repr(v)} if isinstance(v, float) else {"N": str(v)} for v in values]}
    assert fast == {"L": [_value(v) for v in values]}
    assert serialize({"fit": ["a", None, True]})["fit"] == {"L": [{"S": "a"}, {"BOOL": True}]}
