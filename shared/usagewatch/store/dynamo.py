"""The usage table's store: one class composed of the rooms."""

from __future__ import annotations

from usagewatch.store.alerts import AlertTable
from usagewatch.store.runs import RunTable
from usagewatch.store.usage import UsageTable


class DynamoStore(UsageTable, AlertTable, RunTable):
    """Every room of the store over one table: the collector's, the readers' and the migration's store."""
