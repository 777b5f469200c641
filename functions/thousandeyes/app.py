"""Lambda entry point of the thousandeyes collector: wiring only; the logic lives in the usagewatch layer."""

from usagewatch.handler import lambda_handler_for
from usagewatch.sources.thousandeyes import ThousandEyesSource

lambda_handler = lambda_handler_for(ThousandEyesSource)
