"""Lambda entry point of the microsoft365 collector: wiring only; the logic lives in the usagewatch layer.

The source is imported at the first invocation, not at module load (cold start: docs/performance.md).
"""

from usagewatch.handler import lambda_handler_for
from usagewatch.registry import source_factory

lambda_handler = lambda_handler_for(source_factory("microsoft365"))
