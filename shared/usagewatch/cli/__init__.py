"""`usagewatch`: read usage, totals, alerts and runs back from the deployed table; map customers, import
contracts and reconcile what is billed with what is used (docs/billing.md).

The table comes from --table, the USAGEWATCH_TABLE environment variable, or --stack NAME (the stack's
UsageTableName output). AWS credentials and region come from boto3's usual chain (or --region).
Exit codes: 0 done, 1 bad input (the message says which), 2 AWS or table error.
Each command's --help describes it and gives an example.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Final

from usagewatch.cli import alerts, contracts, customers, history, migrate, monthly, psa, reconcile, runs, usage
from usagewatch.cli.output import AWS_ERROR, BAD_INPUT, CliError, Parser, add_command
from usagewatch.cli.stack import client as _client
from usagewatch.cli.stack import table_name
from usagewatch.errors import ConfigError, PublishError, StoreError
from usagewatch.reports import ReportWriteError
from usagewatch.store import DynamoStore, OldShapeError

__all__ = ["COMMANDS", "CliError", "_client", "build_parser", "main"]

COMMANDS: Final[dict[str, ModuleType]] = {
    "report": usage,
    "alerts": alerts,
    "runs": runs,
    "history": history,
    "customers": customers,
    "contracts": contracts,
    "reconcile": reconcile,
    "monthly-report": monthly,
    "psa": psa,
    "migrate": migrate,
}
"""Command name -> its module: `HELP` (one line), `EXAMPLE`, `add_arguments(parser, common)` and
`run(store, args) -> str`. A new command is one more entry."""


def _common() -> Parser:
    """Options every subcommand accepts, before or after its name."""
    common = Parser(add_help=False)
    common.add_argument("--table", default=argparse.SUPPRESS, help="the usage table (or USAGEWATCH_TABLE)")
    common.add_argument("--stack", default=argparse.SUPPRESS, help="read the table name from this stack's outputs")
    common.add_argument("--region", default=argparse.SUPPRESS, help="AWS region (default: boto3's chain)")
    output = common.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON lines for machines")
    output.add_argument("--csv", action="store_true", default=argparse.SUPPRESS, help="CSV for spreadsheets")
    return common


def build_parser() -> Parser:
    common = _common()
    doc = __doc__ or ""
    examples = "\n".join(f"  {module.EXAMPLE}" for module in COMMANDS.values())
    parser = Parser(
        prog="usagewatch",
        description=doc.split("\n\n")[0],
        epilog=f"examples:\n{examples}\n\n" + "\n\n".join(doc.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{" + ",".join(COMMANDS) + "}")
    for name, module in COMMANDS.items():
        sub = add_command(commands, name, common, module.HELP, module.EXAMPLE)
        module.add_arguments(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        store = DynamoStore(table_name(args), client=_client("dynamodb", args))
        text = str(COMMANDS[args.command].run(store, args))
    except CliError as exc:
        return _fail(str(exc), exc.code)
    except ConfigError as exc:
        return _fail(str(exc), BAD_INPUT)
    except OldShapeError as exc:
        return _fail(str(exc), AWS_ERROR)
    except StoreError as exc:
        return _fail(f"{exc} (check the table name, region and credentials)", AWS_ERROR)
    except (PublishError, ReportWriteError) as exc:
        return _fail(str(exc), AWS_ERROR)
    except Exception as exc:  # botocore's NoRegionError, NoCredentialsError, EndpointConnectionError, ...
        if type(exc).__module__.startswith(("botocore", "boto3")):
            return _fail(f"AWS: {type(exc).__name__}: {exc}", AWS_ERROR)
        raise
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0


def _fail(message: str, code: int) -> int:
    sys.stderr.write(f"usagewatch: error: {' '.join(message.split())}\n")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
