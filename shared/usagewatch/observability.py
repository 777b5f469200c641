"""One Logger and one Metrics for everything (Powertools), with secrets scrubbed from every log line."""

from __future__ import annotations

import os
from typing import Final

from aws_lambda_powertools import Logger, Metrics

from usagewatch.redaction import RedactingFilter

# The template names each function's service (usagewatch-keepnet, ...); anywhere else it is plain "usagewatch".
logger: Final = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or "usagewatch", use_rfc3339=True)
metrics: Final = Metrics(namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "usagewatch")

for _handler in logger.handlers:
    _handler.addFilter(RedactingFilter())
