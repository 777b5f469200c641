"""The product map file: `product_identifier,vendor,metric`, one PSA catalogue product per line (docs/psa.md)."""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Mapping

from usagewatch.imports import ImportRejectedError
from usagewatch.text import one_line

COLUMNS = ("product_identifier", "vendor", "metric")
MAX_LINES = 100_000


def parse_products(
    text: str, *, known: Mapping[str, set[str]], vendors: Collection[str], source: str
) -> list[tuple[int, str, str, str]]:
    """(line, identifier, vendor, metric) per row; every bad line named at once, nothing kept when one is bad.
    The identifier is kept exactly as written (ConnectWise compares it as stored): only surrounding blanks go."""
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")), strict=True)
    problems: list[tuple[int, str]] = []
    rows: list[tuple[int, str, str, str]] = []
    seen: dict[str, int] = {}
    try:
        header = [h.strip().lower() for h in next(reader, [])]
        if header != list(COLUMNS):
            raise ImportRejectedError(source, [(1, f"expected the header {','.join(COLUMNS)}")])
        for cells in reader:
            line = reader.line_num
            if line > MAX_LINES:
                raise ImportRejectedError(source, [(line, f"more than {MAX_LINES} lines: split the file")])
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(COLUMNS):
                problems.append((line, f"expected {len(COLUMNS)} cells, found {len(cells)}"))
                continue
            identifier, vendor, metric = (c.strip() for c in cells)
            says = []
            if not identifier or one_line(identifier) != identifier:
                says.append("product_identifier: empty or not one line")
            if vendor not in vendors:
                says.append(f"vendor: unknown {vendor!r} (one of {', '.join(sorted(vendors))})")
            elif metric not in known.get(vendor, set()):
                says.append(f"metric: {vendor} has no metric {metric!r}")
            if identifier in seen:
                says.append(f"duplicate of line {seen[identifier]} ({identifier})")
            if says:
                problems.append((line, "; ".join(says)))
                continue
            seen[identifier] = line
            rows.append((line, identifier, vendor, metric))
    except csv.Error as exc:
        raise ImportRejectedError(source, [(reader.line_num, f"not valid CSV: {exc}")]) from exc
    if problems:
        raise ImportRejectedError(source, problems)
    return rows
