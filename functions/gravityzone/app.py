"""Lambda entry point of the gravityzone collector: wiring only; the logic lives in the usagewatch layer."""

from usagewatch.handler import lambda_handler_for
from usagewatch.sources.gravityzone import GravityZoneSource

lambda_handler = lambda_handler_for(GravityZoneSource)
