"""Lambda entry point of the keepnet collector: wiring only; the logic lives in the usagewatch layer.

The source module is imported at the first invocation, not at module load (cold start: docs/performance.md).
"""

from typing import Any

from usagewatch.handler import lambda_handler_for
from usagewatch.model import Source


def _source() -> Source[Any]:
    from usagewatch.sources.keepnet import KeepnetSource

    return KeepnetSource()


lambda_handler = lambda_handler_for(_source)
