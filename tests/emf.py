"""Reads CloudWatch embedded-metric-format (EMF) documents out of captured output, for the metric tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Datum:
    """One value of one metric in one EMF document."""

    namespace: str
    name: str
    dimensions: dict[str, str]
    value: float
    unit: str

    @property
    def key(self) -> tuple[str, str, frozenset[str]]:
        """What makes it one CloudWatch metric besides the dimension values: namespace, name, dimension names."""
        return self.namespace, self.name, frozenset(self.dimensions)


def documents(text: str) -> list[dict[str, Any]]:
    """Every line of `text` that is a JSON object with an `_aws` metadata key."""
    found = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("{") or '"_aws"' not in line:
            continue
        document = json.loads(line)
        if isinstance(document, dict) and "_aws" in document:
            found.append(document)
    return found


def data(text: str) -> list[Datum]:
    """Each metric value the EMF documents in `text` declare, with its dimension values (last value of a list)."""
    result = []
    for document in documents(text):
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimension_set in directive["Dimensions"]:
                dimensions = {name: str(document[name]) for name in dimension_set}
                for metric in directive["Metrics"]:
                    raw = document[metric["Name"]]
                    value = raw[-1] if isinstance(raw, list) else raw
                    result.append(
                        Datum(directive["Namespace"], metric["Name"], dimensions, float(value), metric.get("Unit", ""))
                    )
    return result
