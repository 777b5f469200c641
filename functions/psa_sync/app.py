"""Lambda entry point of the daily PSA sync: wiring only; the logic lives in the usagewatch layer."""

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from usagewatch.observability import logger


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    from usagewatch.psa.scheduled import handle

    said = handle(event)
    logger.info("psa sync", extra={"sync": said})
    return said
