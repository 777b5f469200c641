"""The registry's entries say true things about the code they point at."""

from __future__ import annotations

from pathlib import Path

import pytest

from usagewatch import registry
from usagewatch.errors import ConfigError
from usagewatch.sources.base import AccountConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("entry", registry.vendors(), ids=lambda v: v.id)
def test_each_entry_points_at_its_source_settings_entry_point_and_docs(entry: registry.Vendor) -> None:
    source = entry.make_source()
    assert source.vendor == entry.id
    model = entry.settings_model()
    assert issubclass(model, AccountConfig)
    with pytest.raises(ConfigError, match=rf"^{entry.id} secret: accounts\[0\]"):
        source.parse_account({"account_id": "a"})
    app = (ROOT / "functions" / entry.id / "app.py").read_text()
    assert f'source_factory("{entry.id}")' in app
    assert (ROOT / "docs" / "vendors" / f"{entry.id}.md").exists()
    assert (ROOT / "events" / f"{entry.id}-scheduled.json").exists()


def test_units_and_names() -> None:
    assert registry.display_name("thousandeyes") == "ThousandEyes"
    assert registry.display_name("retired") == "retired"
    assert {"seats", "users", "units"} <= registry.all_units()
    with pytest.raises(KeyError, match="unknown vendor 'nope'"):
        registry.vendor("nope")


def test_a_built_in_vendor_cannot_be_unregistered() -> None:
    with pytest.raises(ValueError, match="built in"):
        registry.unregister("keepnet")


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("id", "Has Caps", "vendor id"),
        ("source", "no-colon", "source"),
        ("settings", "x:", "settings"),
        ("units", (), "at least one unit"),
        ("free_metrics", ("",), "free metric pattern"),
    ],
)
def test_a_malformed_entry_is_refused_with_the_field_named(field: str, value: object, message: str) -> None:
    fields: dict[str, object] = {
        "id": "newvendor",
        "name": "New",
        "units": ("seats",),
        "template_name": "NewVendor",
        "source": "a.b:C",
        "settings": "a.b:D",
    }
    fields[field] = value
    with pytest.raises(ValueError, match=message):
        registry.Vendor(**fields)  # type: ignore[arg-type]
