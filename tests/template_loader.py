"""Reads template.yaml for tests and the demo: the environment, table and code each function really gets.

The template is the single source of truth for what a deployed function sees; integration tests and the demo build
their local world (moto table, environment variables, handler module) from it through these helpers, so a variable
or key the template forgets fails a test instead of a deployment.

Dependency-light on purpose: PyYAML only (it comes with cfn-lint and aws-sam-cli). `translate_template` imports
aws-sam-translator lazily and runs it offline.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"

FUNCTION_TYPE = "AWS::Serverless::Function"

# What the pseudo parameters resolve to unless `parameters` says otherwise.
PSEUDO_PARAMETERS: dict[str, str] = {
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "usagewatch",
    "AWS::StackId": "arn:aws:cloudformation:eu-west-1:123456789012:stack/usagewatch/0000",
    "AWS::URLSuffix": "amazonaws.com",
}

_NO_VALUE = object()  # what {"Ref": "AWS::NoValue"} resolves to: the key is dropped


class TemplateError(ValueError):
    """The template does not have what a caller asked for, or something in it cannot be resolved."""


# --------------------------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------------------------

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _CfnLoader(_BaseLoader):  # type: ignore[misc]
    """SafeLoader that turns CloudFormation short-form tags into their long form."""


def _construct_intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    elif isinstance(node, yaml.MappingNode):
        value = loader.construct_mapping(node, deep=True)
    else:  # pragma: no cover - PyYAML has no other node kinds
        raise TemplateError(f"unsupported node for !{tag_suffix}")
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        resource, _, attribute = value.partition(".")
        return {"Fn::GetAtt": [resource, attribute]}
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _construct_intrinsic)


def load_template(path: str | Path = DEFAULT_TEMPLATE) -> dict[str, Any]:
    """The template as a dict, short-form intrinsics (`!Ref x`, `!GetAtt a.b`, `!Sub`...) in their long form.

    A fresh copy on every call: callers may modify it.
    """
    return copy.deepcopy(_load_cached(str(Path(path).resolve())))


def _shared(path: str | Path) -> dict[str, Any]:
    """The cached template itself, for the readers below that only read it (each integration test reads the
    functions' environment and the table from it, and a deep copy cost more than the test's own template work)."""
    return _load_cached(str(Path(path).resolve()))


@functools.cache
def _load_cached(resolved_path: str) -> dict[str, Any]:
    try:
        text = Path(resolved_path).read_text(encoding="utf-8")
    except OSError as exc:
        raise TemplateError(f"cannot read template {resolved_path}: {exc}") from exc
    document = yaml.load(text, Loader=_CfnLoader)
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{resolved_path} is not a CloudFormation template (no Resources)")
    return document


def _resource(template: Mapping[str, Any], logical_id: str, expected_type: str | None = None) -> dict[str, Any]:
    resources = template["Resources"]
    if logical_id not in resources:
        raise TemplateError(f"template has no resource {logical_id!r} (has: {', '.join(sorted(resources))})")
    resource = resources[logical_id]
    if expected_type is not None and resource.get("Type") != expected_type:
        raise TemplateError(f"{logical_id} is a {resource.get('Type')}, not a {expected_type}")
    return dict(resource)


# --------------------------------------------------------------------------------------------------------------------
# Functions
# --------------------------------------------------------------------------------------------------------------------


def function_ids(*, template: str | Path = DEFAULT_TEMPLATE) -> list[str]:
    """Logical ids of the template's AWS::Serverless::Function resources, in template order."""
    doc = _shared(template)
    return [key for key, value in doc["Resources"].items() if value.get("Type") == FUNCTION_TYPE]


def _function_property(doc: Mapping[str, Any], logical_id: str, name: str) -> Any:
    properties = _resource(doc, logical_id, FUNCTION_TYPE).get("Properties", {})
    if name in properties:
        return properties[name]
    return doc.get("Globals", {}).get("Function", {}).get(name)


def function_code_dir(logical_id: str, *, template: str | Path = DEFAULT_TEMPLATE) -> str:
    """Absolute path of the function's CodeUri directory (where its app.py lives)."""
    doc = _shared(template)
    code_uri = _function_property(doc, logical_id, "CodeUri")
    if not isinstance(code_uri, str):
        raise TemplateError(f"{logical_id} has no local CodeUri (got {code_uri!r})")
    return str((Path(template).resolve().parent / code_uri).resolve())


def function_handler(logical_id: str, *, template: str | Path = DEFAULT_TEMPLATE) -> tuple[str, str]:
    """(module, attribute) of the function's Handler, e.g. ("app", "lambda_handler")."""
    doc = _shared(template)
    handler = _function_property(doc, logical_id, "Handler")
    if not isinstance(handler, str) or "." not in handler:
        raise TemplateError(f"{logical_id} has no Handler of the form module.function (got {handler!r})")
    module, _, attribute = handler.rpartition(".")
    return module, attribute


def function_environment(
    logical_id: str,
    *,
    resources: Mapping[str, str],
    parameters: Mapping[str, str] | None = None,
    template: str | Path = DEFAULT_TEMPLATE,
) -> dict[str, str]:
    """The environment variables a deployed function gets: Globals merged with the function's own, resolved.

    `resources` maps logical ids to what `Ref` gives (table name, topic ARN, ...); for `GetAtt X.Attr` the key
    "X.Attr" is used when present, else "X". `parameters` overrides the template parameters' defaults (and the
    pseudo parameters such as "AWS::Region"). A variable whose value resolves to AWS::NoValue is left out.
    Raises TemplateError naming the variable when something cannot be resolved.
    """
    doc = _shared(template)
    _resource(doc, logical_id, FUNCTION_TYPE)
    resolver = _Resolver(doc, resources=resources, parameters=parameters)
    global_vars = doc.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {}) or {}
    own_vars = doc["Resources"][logical_id].get("Properties", {}).get("Environment", {}).get("Variables", {}) or {}
    merged = {**global_vars, **own_vars}
    environment: dict[str, str] = {}
    for name, raw in merged.items():
        try:
            value = resolver.resolve(raw)
        except TemplateError as exc:
            raise TemplateError(f"{logical_id} environment variable {name}: {exc}") from exc
        if value is _NO_VALUE:
            continue
        environment[name] = _as_env_string(name, value)
    return environment


def _as_env_string(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TemplateError(f"environment variable {name} resolves to a {type(value).__name__}, not a string")


def resolve_value(
    value: Any,
    *,
    resources: Mapping[str, str] | None = None,
    parameters: Mapping[str, str] | None = None,
    template: str | Path = DEFAULT_TEMPLATE,
) -> Any:
    """Resolve intrinsics (Ref, GetAtt, Sub, If, Join, Select, Split, FindInMap) in any template value, as
    function_environment does; returns None where the value is AWS::NoValue."""
    resolved = _Resolver(load_template(template), resources=resources or {}, parameters=parameters).resolve(value)
    return None if resolved is _NO_VALUE else resolved


def schedule_inputs(logical_id: str, *, template: str | Path = DEFAULT_TEMPLATE) -> dict[str, dict[str, Any]]:
    """Event name -> the parsed Input JSON of each schedule event (Schedule / ScheduleV2) of the function."""
    doc = _shared(template)
    events = _resource(doc, logical_id, FUNCTION_TYPE).get("Properties", {}).get("Events", {}) or {}
    inputs: dict[str, dict[str, Any]] = {}
    for name, event in events.items():
        if event.get("Type") in {"Schedule", "ScheduleV2"}:
            raw = event.get("Properties", {}).get("Input")
            inputs[name] = json.loads(raw) if isinstance(raw, str) else {}
    return inputs


def dashboard(
    logical_id: str = "Dashboard",
    *,
    resources: Mapping[str, str] | None = None,
    parameters: Mapping[str, str] | None = None,
    template: str | Path = DEFAULT_TEMPLATE,
) -> tuple[str, dict[str, Any]]:
    """(name, parsed body) of an AWS::CloudWatch::Dashboard, resolved as `resolve_value` does.

    A Ref or GetAtt to a resource missing from `resources` resolves to its logical id (the widgets of a function
    then name `KeepnetCollectorFunction`), so callers may pass only what they check.
    """
    doc = _shared(template)
    properties = _resource(doc, logical_id, "AWS::CloudWatch::Dashboard").get("Properties", {})
    known = {name: name for name in doc["Resources"]} | dict(resources or {})
    resolver = _Resolver(doc, resources=known, parameters=parameters)
    name = resolver.resolve(properties.get("DashboardName"))
    text = resolver.resolve(properties.get("DashboardBody"))
    try:
        body = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise TemplateError(f"{logical_id}.DashboardBody is not JSON once resolved: {exc}") from exc
    return str(name), body


# --------------------------------------------------------------------------------------------------------------------
# Table
# --------------------------------------------------------------------------------------------------------------------


def table_definition(
    logical_id: str = "UsageTable",
    *,
    table_name: str | None = None,
    template: str | Path = DEFAULT_TEMPLATE,
) -> dict[str, Any]:
    """Keyword arguments for boto3 `create_table` built from the template's table.

    KeySchema, AttributeDefinitions, BillingMode and the secondary indexes (with their projections and, for
    provisioned tables, throughput). TableName only when `table_name` is given.
    """
    doc = _shared(template)
    properties = _resource(doc, logical_id, "AWS::DynamoDB::Table").get("Properties", {})
    definition: dict[str, Any] = {
        "KeySchema": _literal(properties.get("KeySchema"), f"{logical_id}.KeySchema"),
        "AttributeDefinitions": _literal(properties.get("AttributeDefinitions"), f"{logical_id}.AttributeDefinitions"),
        "BillingMode": _literal(properties.get("BillingMode", "PROVISIONED"), f"{logical_id}.BillingMode"),
    }
    if "ProvisionedThroughput" in properties:
        definition["ProvisionedThroughput"] = _literal(properties["ProvisionedThroughput"], logical_id)
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if key in properties:
            indexes = _literal(properties[key], f"{logical_id}.{key}")
            definition[key] = [{k: v for k, v in index.items() if k in _INDEX_KEYS} for index in indexes]
    if table_name is not None:
        definition["TableName"] = table_name
    return definition


_INDEX_KEYS = {"IndexName", "KeySchema", "Projection", "ProvisionedThroughput"}


def ttl_attribute(logical_id: str = "UsageTable", *, template: str | Path = DEFAULT_TEMPLATE) -> str | None:
    """The table's TTL attribute name, or None when TTL is not enabled."""
    doc = _shared(template)
    spec = _resource(doc, logical_id, "AWS::DynamoDB::Table").get("Properties", {}).get("TimeToLiveSpecification")
    if not spec or spec.get("Enabled") is not True:
        return None
    return str(_literal(spec["AttributeName"], f"{logical_id}.TimeToLiveSpecification.AttributeName"))


def _literal(value: Any, where: str) -> Any:
    """A copy of `value`, refusing intrinsic functions (a create_table argument must be a plain value)."""
    if isinstance(value, dict):
        if len(value) == 1 and (next(iter(value)) in {"Ref", "Condition"} or next(iter(value)).startswith("Fn::")):
            raise TemplateError(f"{where} uses {next(iter(value))}: expected a literal value")
        return {k: _literal(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v, where) for v in value]
    if value is None:
        raise TemplateError(f"{where} is missing")
    return value


# --------------------------------------------------------------------------------------------------------------------
# Intrinsic resolution
# --------------------------------------------------------------------------------------------------------------------

_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class _Resolver:
    def __init__(
        self,
        template: Mapping[str, Any],
        *,
        resources: Mapping[str, str],
        parameters: Mapping[str, str] | None,
    ) -> None:
        self._template = template
        self._resources = dict(resources)
        declared = template.get("Parameters", {}) or {}
        overrides = dict(parameters or {})
        unknown = sorted(set(overrides) - set(declared) - set(PSEUDO_PARAMETERS))
        if unknown:
            raise TemplateError(f"unknown parameter(s) {', '.join(unknown)}; the template declares {sorted(declared)}")
        self._parameters: dict[str, Any] = dict(PSEUDO_PARAMETERS)
        for name, spec in declared.items():
            if name in overrides:
                self._parameters[name] = overrides[name]
            elif "Default" in spec:
                default = spec["Default"]
                self._parameters[name] = default if isinstance(default, str) else json.dumps(default)
        for name, value in overrides.items():
            self._parameters[name] = value
        self._conditions: dict[str, bool] = {}

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [item for item in (self.resolve(v) for v in value) if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            (key, argument), *_ = value.items()
            if key == "Ref":
                return self._ref(argument)
            if key == "Fn::GetAtt":
                return self._get_att(argument)
            if key == "Fn::Sub":
                return self._sub(argument)
            if key == "Fn::If":
                condition, if_true, if_false = argument
                return self.resolve(if_true if self.condition(condition) else if_false)
            if key == "Fn::Join":
                delimiter, items = argument
                return str(delimiter).join(str(v) for v in self.resolve(items))
            if key == "Fn::Select":
                index, items = argument
                resolved = self.resolve(items)
                return resolved[int(self.resolve(index))]
            if key == "Fn::Split":
                delimiter, text = argument
                return str(self.resolve(text)).split(str(delimiter))
            if key == "Fn::FindInMap":
                mapping, top, second = (self.resolve(v) for v in argument)
                try:
                    return self._template["Mappings"][mapping][top][second]
                except KeyError as exc:
                    raise TemplateError(f"FindInMap {mapping}.{top}.{second}: not in the template's Mappings") from exc
            if key.startswith("Fn::") or key == "Condition":
                raise TemplateError(f"cannot resolve {key} here")
        return {k: v for k, v in ((k, self.resolve(v)) for k, v in value.items()) if v is not _NO_VALUE}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self._parameters:
            return self._parameters[name]
        if name in self._template.get("Parameters", {}):
            raise TemplateError(f"parameter {name} has no default: pass it in `parameters`")
        if name in self._resources:
            return self._resources[name]
        if name in self._template["Resources"]:
            raise TemplateError(f"Ref {name}: pass its value in `resources`")
        raise TemplateError(f"Ref {name}: no such parameter or resource in the template")

    def _get_att(self, argument: Any) -> Any:
        resource, attribute = argument if isinstance(argument, list) else str(argument).split(".", 1)
        for key in (f"{resource}.{attribute}", resource):
            if key in self._resources:
                return self._resources[key]
        raise TemplateError(f"GetAtt {resource}.{attribute}: pass its value in `resources`")

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument
            local = {k: self.resolve(v) for k, v in variables.items()}
        else:
            text, local = argument, {}

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if "." in name and name.split(".", 1)[0] in self._template["Resources"]:
                return str(self._get_att(name.split(".", 1)))
            return str(self._ref(name))

        return _SUB_VARIABLE.sub(replace, str(text))

    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self._template.get("Conditions", {}) or {}
            if name not in conditions:
                raise TemplateError(f"no condition {name} in the template")
            self._conditions[name] = self._evaluate(conditions[name])
        return self._conditions[name]

    def _evaluate(self, expression: Any) -> bool:
        if not isinstance(expression, dict) or len(expression) != 1:
            raise TemplateError(f"cannot evaluate condition {expression!r}")
        (key, argument), *_ = expression.items()
        if key == "Condition":
            return self.condition(argument)
        if key == "Fn::Equals":
            left, right = (self.resolve(v) for v in argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self._evaluate(argument[0])
        if key == "Fn::And":
            return all(self._evaluate(v) for v in argument)
        if key == "Fn::Or":
            return any(self._evaluate(v) for v in argument)
        raise TemplateError(f"cannot evaluate condition function {key}")


# --------------------------------------------------------------------------------------------------------------------
# Offline SAM -> CloudFormation translation
# --------------------------------------------------------------------------------------------------------------------

_LOCAL_ARTIFACT_BUCKET = "usagewatch-local-artifacts"


def translate_template(
    *,
    parameters: Mapping[str, str] | None = None,
    template: str | Path = DEFAULT_TEMPLATE,
) -> dict[str, Any]:
    """The template translated to plain CloudFormation by aws-sam-translator, offline (no AWS call).

    Local CodeUri / ContentUri paths are replaced by s3://usagewatch-local-artifacts/<path> (what `sam package`
    would upload). `parameters` are template parameter values handed to the translator (it resolves only what it
    must, e.g. policy template arguments); pseudo parameters default to PSEUDO_PARAMETERS. Metadata (checkov
    suppressions) is passed through to the generated resources.
    """
    # Imported here: heavy, and only the infrastructure tests and the demo need it.
    import boto3
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator
    from samtranslator.utils.py27hash_fix import (
        to_py27_compatible_template,
        undo_mark_unicode_str_in_template,
    )

    doc = load_template(template)
    for resource in doc["Resources"].values():
        properties = resource.get("Properties", {})
        for key in ("CodeUri", "ContentUri"):
            if isinstance(properties.get(key), str) and not properties[key].startswith("s3://"):
                properties[key] = f"s3://{_LOCAL_ARTIFACT_BUCKET}/{properties[key].strip('/')}"
    parameter_values: dict[str, Any] = dict(PSEUDO_PARAMETERS)
    parameter_values.update(parameters or {})
    # A session with an explicit region only tells the translator the region/partition; it makes no call.
    session = boto3.session.Session(region_name=parameter_values["AWS::Region"])
    to_py27_compatible_template(doc, parameter_values)
    translated = Translator(None, Parser(), boto_session=session).translate(
        doc,
        parameter_values=parameter_values,
        passthrough_metadata=True,
        get_managed_policy_map=_no_managed_policy_lookups,
    )
    result: dict[str, Any] = undo_mark_unicode_str_in_template(translated)
    return result


def _no_managed_policy_lookups() -> dict[str, str]:
    """Stands in for the IAM ListPolicies lookup: the template names no managed policy by name."""
    return {}
