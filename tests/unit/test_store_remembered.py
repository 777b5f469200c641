"""The copy of a stored item a run keeps (usage.remembered): packed and read back unchanged."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from usagewatch.store.usage import _unpack, remembered
from usagewatch.store.usage_shape import digest

ITEM: dict[str, Any] = {
    "record_type": "usage",
    "tenant_id": "c-1",
    "tenant_name": "Ünïcode & <b>",
    "parent_tenant_id": None,
    "billed": True,
    "metrics": {
        "monthly_users": {"value": 6, "unit": "users", "projection_fit": [6.7817, 0.5, 0.0, 1e-12, 1]},
        "target_users": {"value": 10**15, "unit": "users", "quota": 25, "limit_exceeded": False},
    },
    "log": [{"a": "2026-12-01T06:00:00Z", "c": 12, "d": {"target_users": {"v": 5, "-": ["x"]}}}],
    "as_of": "2026-12-07T06:00:00Z",
}


def test_a_remembered_item_reads_back_equal_with_its_types() -> None:
    fingerprint, names, packed = remembered(ITEM)
    back = _unpack(packed)
    assert back == ITEM
    assert isinstance(back["metrics"]["monthly_users"]["projection_fit"][0], float)
    assert back["billed"] is True and back["parent_tenant_id"] is None
    assert names == frozenset({"monthly_users", "target_users"})
    assert fingerprint == digest(ITEM)


def test_a_mapping_that_is_not_a_dict_is_packed_too() -> None:
    assert _unpack(remembered(MappingProxyType(ITEM), b"")[2]) == ITEM
