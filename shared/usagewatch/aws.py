"""The one edge where usagewatch meets the AWS SDK: every boto3 client is built here, with one botocore `Config`.

Timeouts are short and retries few, since a scheduled run is retried anyway and a Lambda's time is its budget;
the user agent names usagewatch and its version, so AWS-side logs (CloudTrail) tell its calls apart.
boto3 is imported on first use, not at import time (cold start: docs/performance.md).
"""

from __future__ import annotations

from typing import Any, Final

from usagewatch import __version__

CONNECT_TIMEOUT: Final = 3
READ_TIMEOUT: Final = 10
MAX_RETRIES: Final = 3
"""botocore's `max_attempts`: retries after the first attempt (four attempts in all): an unreachable service fails
within seconds (tests/faults/test_aws_faults.py). The store retries unprocessed batch items itself."""
USER_AGENT: Final = f"usagewatch/{__version__}"


def config() -> Any:
    """The botocore configuration of every client (Powertools' parameter providers are handed clients built here)."""
    from botocore.config import Config

    return Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"mode": "standard", "max_attempts": MAX_RETRIES},
        user_agent_extra=USER_AGENT,
    )


def client(service: str, *, region: str | None = None) -> Any:
    """A boto3 client of `service` with the one configuration; `region` overrides boto3's usual chain."""
    import boto3

    if region:
        return boto3.client(service, region_name=region, config=config())  # type: ignore[call-overload]
    return boto3.client(service, config=config())  # type: ignore[call-overload]
