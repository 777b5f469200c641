"""Lambda entry point of the keepnet collector: wiring only; the logic lives in the usagewatch layer."""

from usagewatch.handler import lambda_handler_for
from usagewatch.sources.keepnet import KeepnetSource

lambda_handler = lambda_handler_for(KeepnetSource)
