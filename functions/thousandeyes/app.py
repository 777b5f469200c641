"""Lambda entry point of the thousandeyes collector: wiring only; the logic lives in the usagewatch layer.

The source module is imported at the first invocation, not at module load (cold start: docs/performance.md).
"""

import os
from typing import Any

from usagewatch.handler import lambda_handler_for
from usagewatch.model import Source


def _source() -> Source[Any]:
    from usagewatch.sources.thousandeyes import ThousandEyesSource
    from usagewatch.store import DynamoStore, TableIdentities

    table = os.environ.get("USAGE_TABLE_NAME")  # when absent, the handler's settings check says so
    identities = TableIdentities(DynamoStore(table), "thousandeyes") if table else None
    return ThousandEyesSource(identities=identities)


lambda_handler = lambda_handler_for(_source)
