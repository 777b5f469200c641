"""Lambda entry point of the web console: wiring only; the routes live in usagewatch.console.app."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from usagewatch.console.app import handle
from usagewatch.observability import logger


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, context)
