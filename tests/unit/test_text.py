"""Vendor text made safe: one-line names, CSV cells that are never formulas."""

from __future__ import annotations

import pytest

from usagewatch.text import clean_name, csv_cell, one_line


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("Acme\r\nSeverity: info", "Acme Severity: info"),
        ("Esc\x1b[2Jape\x07\x00", "Esc[2Jape"),
        ("C1\x85next\x9bline", "C1 nextline"),
        ("Z\u00fcrich \u202eevil\u202c GmbH", "Z\u00fcrich evil GmbH"),
        ("  tabs\tand   spaces  ", "tabs and spaces"),
        ("\u65e5\u672c\u8a9e OK", "\u65e5\u672c\u8a9e OK"),
    ],
)
def test_names_are_one_line_without_controls(raw: str, shown: str) -> None:
    assert clean_name(raw) == shown == one_line(raw)


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ("=1+2", "'=1+2"),
        ("+SUM(A1)", "'+SUM(A1)"),
        ("-2+3", "'-2+3"),
        ("@cmd", "'@cmd"),
        ("\t=evil", "'=evil"),
        ("\r=evil", "'=evil"),
        ("Acme = Co", "Acme = Co"),
        (-5, -5),
        (12.5, 12.5),
        (None, None),
        (True, True),
    ],
)
def test_csv_cells_never_start_a_formula(value: object, cell: object) -> None:
    assert csv_cell(value) == cell
