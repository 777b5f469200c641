"""Write the `--env-vars` file for `sam local invoke` against a deployed stack: its table, topic, queue, secrets.

`sam local` resolves `!Ref UsageTable` to the string "UsageTable", not to the stack's table, so the functions need
the deployed names: `python scripts/sam-local/env_vars_from_stack.py STACK [FILE]` reads them from the stack's
outputs and parameters (`make sam-env-vars STACK=...` runs it). The credentials are the caller's own (AWS_PROFILE).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import boto3

from usagewatch import registry

SECRET_PARAMETERS = {v.function_name: v.secret_parameter for v in registry.vendors()}


def env_vars(stack: dict[str, Any]) -> dict[str, dict[str, str]]:
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    missing = [key for key in ("UsageTableName", "AlertTopicArn", "GravityZoneWorkQueueUrl") if key not in outputs]
    if missing:
        raise SystemExit(f"stack {stack.get('StackName')} has no output {', '.join(missing)}: is it usagewatch?")
    common = {
        "USAGE_TABLE_NAME": outputs["UsageTableName"],
        "ALERT_TOPIC_ARN": outputs["AlertTopicArn"],
        "ALERT_RULES_PARAMETER": parameters.get("AlertRulesParameterName", ""),
    }
    result = {}
    for function, secret_parameter in SECRET_PARAMETERS.items():
        variables = common | {"VENDOR_SECRET_ID": parameters.get(secret_parameter, "")}
        if function == "GravityZoneCollectorFunction":
            variables["WORK_QUEUE_URL"] = outputs["GravityZoneWorkQueueUrl"]
        result[function] = {key: value for key, value in variables.items() if value}
    return result


def main(argv: list[str]) -> int:
    if len(argv) not in (1, 2):
        print("usage: env_vars_from_stack.py STACK [FILE]", file=sys.stderr)
        return 2
    target = Path(argv[1] if len(argv) == 2 else ".aws-sam/env-vars.json")
    (stack,) = boto3.client("cloudformation").describe_stacks(StackName=argv[0])["Stacks"]
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(env_vars(stack), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {target} from stack {argv[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
