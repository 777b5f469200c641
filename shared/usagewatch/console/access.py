"""Who is calling: the claims API Gateway's JWT authorizer (or the local front) verified, read from the event."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

OPERATORS: Final = "operators"
VIEWERS: Final = "viewers"


class UnauthorizedError(Exception):
    """No verified identity on the request: the page leads back to sign-in."""


class ForbiddenError(Exception):
    """A verified identity without the group a change needs."""


@dataclass(frozen=True, slots=True)
class Caller:
    username: str
    groups: frozenset[str]

    @property
    def operator(self) -> bool:
        return OPERATORS in self.groups

    def require_operator(self) -> None:
        if not self.operator:
            raise ForbiddenError(f"{self.username} is not in the {OPERATORS} group: changes are refused")


def _groups(value: Any) -> frozenset[str]:
    """`cognito:groups` as a list, or as HTTP API passes an array claim: the text "[operators viewers]"."""
    if isinstance(value, list | tuple):
        return frozenset(str(v) for v in value)
    if isinstance(value, str):
        return frozenset(value.strip("[]").replace(",", " ").split())
    return frozenset()


def caller(event: Mapping[str, Any]) -> Caller:
    """The caller of an HTTP API (payload 2.0) event; UnauthorizedError when no verified claims are attached."""
    context = event.get("requestContext") or {}
    claims = ((context.get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
    username = claims.get("cognito:username") or claims.get("username") or claims.get("sub")
    if not username:
        raise UnauthorizedError("sign in first")
    return Caller(str(username), _groups(claims.get("cognito:groups")))
