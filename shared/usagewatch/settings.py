"""Environment, vendor secret and rules document: read, validated, and failing fast with the field named.

Secrets Manager and SSM are read through Powertools Parameters (cached: the secret for 5 minutes, the
rules for 1 minute), so a warm function does not call them on every run and an operator's change
still lands within minutes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from usagewatch import aws
from usagewatch.errors import ConfigError
from usagewatch.rules import DEFAULT_RULES, RulesDocument, parse_rules_document

SECRET_MAX_AGE: Final = 300
RULES_MAX_AGE: Final = 60
REQUIRED_ENV: Final = ("USAGE_TABLE_NAME", "ALERT_TOPIC_ARN", "VENDOR_SECRET_ID")


@dataclass(frozen=True, slots=True)
class Environment:
    usage_table_name: str
    alert_topic_arn: str
    vendor_secret_id: str
    alert_rules_parameter: str | None
    snapshot_retention_days: int
    work_queue_url: str | None = None
    chat_topic_arn: str | None = None


def load_environment(environ: Mapping[str, str] | None = None) -> Environment:
    env = os.environ if environ is None else environ
    missing = [name for name in REQUIRED_ENV if not env.get(name, "").strip()]
    if missing:
        raise ConfigError(f"environment variable(s) not set: {', '.join(missing)}")
    topic = env["ALERT_TOPIC_ARN"].strip()
    if not topic.startswith("arn:") or ":sns:" not in topic:
        raise ConfigError("ALERT_TOPIC_ARN: expected an SNS topic ARN (arn:aws:sns:region:account:name)")
    retention_text = env.get("SNAPSHOT_RETENTION_DAYS", "").strip() or "400"
    # isdecimal, not isdigit: "²" is a digit that int() refuses
    if not retention_text.isdecimal() or not 1 <= int(retention_text) <= 3650:
        raise ConfigError("SNAPSHOT_RETENTION_DAYS: expected a whole number of days from 1 to 3650")
    return Environment(
        usage_table_name=env["USAGE_TABLE_NAME"].strip(),
        alert_topic_arn=topic,
        vendor_secret_id=env["VENDOR_SECRET_ID"].strip(),
        alert_rules_parameter=env.get("ALERT_RULES_PARAMETER", "").strip() or None,
        snapshot_retention_days=int(retention_text),
        work_queue_url=env.get("WORK_QUEUE_URL", "").strip() or None,
        chat_topic_arn=_chat_topic(env),
    )


def _chat_topic(env: Mapping[str, str]) -> str | None:
    topic = env.get("CHAT_TOPIC_ARN", "").strip()
    if topic and (not topic.startswith("arn:") or ":sns:" not in topic):
        raise ConfigError("CHAT_TOPIC_ARN: expected an SNS topic ARN (arn:aws:sns:region:account:name)")
    return topic or None


class ConfigLoader:
    """Holds the Powertools providers (and so their cache) for the life of a Lambda container."""

    def __init__(self) -> None:
        self._secrets: Any = None
        self._ssm: Any = None

    def secret_accounts(self, secret_id: str, *, vendor: str) -> list[dict[str, Any]]:
        """The `accounts` list of a vendor secret; each entry still to be validated by its vendor module."""
        from aws_lambda_powertools.utilities.parameters import SecretsProvider
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        if self._secrets is None:
            self._secrets = SecretsProvider(boto3_client=aws.client("secretsmanager"))
        try:
            text = self._secrets.get(secret_id, max_age=SECRET_MAX_AGE)
        except GetParameterError as exc:
            raise ConfigError(f"cannot read secret {secret_id!r} ({_why(exc)})") from None
        return parse_secret(text, secret_id=secret_id, vendor=vendor)

    def rules(self, parameter_name: str | None) -> RulesDocument:
        if not parameter_name:
            return DEFAULT_RULES
        from aws_lambda_powertools.utilities.parameters import SSMProvider
        from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

        if self._ssm is None:
            self._ssm = SSMProvider(boto3_client=aws.client("ssm"))
        try:
            text = self._ssm.get(parameter_name, max_age=RULES_MAX_AGE)
        except GetParameterError as exc:
            raise ConfigError(f"cannot read rules parameter {parameter_name!r} ({_why(exc)})") from None
        return parse_rules_document(text, source=f"rules document {parameter_name}")


def _why(exc: BaseException) -> str:
    """What failed under Powertools' GetParameterError, which wraps the SDK error without `from` (so it is the
    context, not the cause): the AWS error code (AccessDeniedException, ResourceNotFoundException, ...) or the
    exception type (EndpointConnectionError, ...). Never the message, which could quote a value."""
    cause = exc.__cause__ or exc.__context__ or exc
    response = getattr(cause, "response", None)
    error = response.get("Error") if isinstance(response, dict) else None
    code = error.get("Code") if isinstance(error, dict) else None
    return code if isinstance(code, str) and code else type(cause).__name__


def parse_secret(text: object, *, secret_id: str, vendor: str) -> list[dict[str, Any]]:
    """Shape checks only; never echoes a value (a JSON error message could quote one)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if not isinstance(text, str):
        raise ConfigError(f"{vendor} secret {secret_id!r}: expected a JSON string")
    try:
        document = json.loads(text)
    except ValueError:
        raise ConfigError(f"{vendor} secret {secret_id!r}: not valid JSON") from None
    if not isinstance(document, dict) or "accounts" not in document:
        raise ConfigError(f"{vendor} secret {secret_id!r}: expected an object with an 'accounts' list")
    accounts = document["accounts"]
    if not isinstance(accounts, list) or not accounts:
        raise ConfigError(f"{vendor} secret {secret_id!r}: accounts: expected a non-empty list")
    unknown = sorted(set(document) - {"accounts"})
    if unknown:
        raise ConfigError(f"{vendor} secret {secret_id!r}: unknown field(s): {', '.join(unknown)}")
    seen: set[str] = set()
    for index, account in enumerate(accounts):
        if not isinstance(account, dict):
            raise ConfigError(f"{vendor} secret {secret_id!r}: accounts[{index}]: expected an object")
        account_id = account.get("account_id")
        if isinstance(account_id, str):
            account_id = account_id.strip()  # as the account model strips it: " a" and "a" are one account
        if isinstance(account_id, str) and account_id in seen:
            raise ConfigError(f"{vendor} secret {secret_id!r}: accounts[{index}].account_id: duplicate {account_id!r}")
        if isinstance(account_id, str):
            seen.add(account_id)
    return accounts


# ISO 4217 currencies whose minor unit is not 2 digits; every other code has 2 (cents).
_MINOR_UNITS: Final = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV"), 0),
    **dict.fromkeys(("XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
}
DEFAULT_CURRENCY: Final = "USD"


@dataclass(frozen=True, slots=True)
class Currency:
    """The deployment's one billing currency (env `CURRENCY`, docs/billing.md): every amount is in it."""

    code: str
    minor_unit: int
    """Digits after the decimal point that amounts are rounded to (half-up)."""


def load_currency(environ: Mapping[str, str] | None = None) -> Currency:
    env = os.environ if environ is None else environ
    code = env.get("CURRENCY", "").strip() or DEFAULT_CURRENCY
    if not (len(code) == 3 and code.isascii() and code.isalpha() and code.isupper()):
        raise ConfigError(f"CURRENCY: {code[:20]!r} is not an ISO 4217 code (three capital letters, e.g. USD)")
    return Currency(code, _MINOR_UNITS.get(code, 2))


PSA_SECRET_ENV: Final = "PSA_SECRET_ID"  # noqa: S105 (the name of an environment variable)
"""Names the ConnectWise connection's secret (template parameter ConnectWiseSecretName) for the PSA sync, the
monthly report's plan and the console's PSA page; unset or empty: no PSA is linked."""


def usage_table_name(environ: Mapping[str, str] | None = None) -> str:
    """USAGE_TABLE_NAME, the one table; ConfigError when it is not set."""
    name = (os.environ if environ is None else environ).get("USAGE_TABLE_NAME", "")
    if not name:
        raise ConfigError("environment: USAGE_TABLE_NAME not set")
    return name


def psa_secret_id(environ: Mapping[str, str] | None = None) -> str:
    """The PSA connection's secret name, or "" when no PSA is linked."""
    env = os.environ if environ is None else environ
    return env.get(PSA_SECRET_ENV, "").strip()


@dataclass(frozen=True, slots=True)
class ConsoleEnvironment:
    """The web console function's settings (template.yaml: ConsoleFunction) besides its table (`usage_table_name`),
    read at each request (it is cheap, and a test or `make console` may change them between requests)."""

    cognito_endpoint: str
    """The user pool's endpoint the sign-in page talks to (and the only one the CSP lets it reach)."""
    cognito_client_id: str
    psa_linked: bool
    """A PSA connection is configured (PSA_SECRET_ENV): the console shows the PSA plan page."""
    period: str
    """CONSOLE_PERIOD: the month shown when a request names none ("" for this month; `make console` sets the demo's)."""


def load_console_environment(environ: Mapping[str, str] | None = None) -> ConsoleEnvironment:
    env = os.environ if environ is None else environ
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "eu-west-1"
    return ConsoleEnvironment(
        cognito_endpoint=env.get("COGNITO_ENDPOINT") or f"https://cognito-idp.{region}.amazonaws.com",
        cognito_client_id=env.get("COGNITO_CLIENT_ID", ""),
        psa_linked=bool(psa_secret_id(env)),
        period=env.get("CONSOLE_PERIOD", "").strip(),
    )


@dataclass(frozen=True, slots=True)
class ReportEnvironment:
    """The monthly report function's settings (template.yaml: ReportFunction)."""

    usage_table_name: str
    alert_topic_arn: str
    report_bucket: str
    currency: Currency
    psa_secret_id: str = ""
    """The PSA connection's secret: the report also makes the month's PSA plan; "" for none."""


def load_report_environment(environ: Mapping[str, str] | None = None) -> ReportEnvironment:
    env = os.environ if environ is None else environ
    missing = [name for name in ("USAGE_TABLE_NAME", "ALERT_TOPIC_ARN", "REPORT_BUCKET") if not env.get(name)]
    if missing:
        raise ConfigError(f"environment: {', '.join(missing)} not set")
    return ReportEnvironment(
        env["USAGE_TABLE_NAME"], env["ALERT_TOPIC_ARN"], env["REPORT_BUCKET"], load_currency(env), psa_secret_id(env)
    )
