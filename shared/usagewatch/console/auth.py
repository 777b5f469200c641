"""Check a Cognito token as API Gateway's JWT authorizer does, for the local front (`make console`): in the
stack the HTTP API's authorizer does this before the function runs.

A token passes when its RS256 signature verifies against a key of the pool's JWKS (matched by `kid`), its
issuer is the pool, it was issued to the console's app client (`aud` on an ID token, `client_id` on an access
token), its `token_use` is `id` or `access`, and it has not expired. Needs joserfc (a development dependency,
not in the Lambda layer).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from usagewatch.console.access import UnauthorizedError

TOKEN_USES: Final = ("id", "access")


class TokenVerifier:
    def __init__(
        self, issuer: str, client_id: str, jwks: Mapping[str, Any], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self.keys = KeySet.import_key_set(dict(jwks))  # type: ignore[arg-type]
        self.clock = clock

    @classmethod
    def for_pool(cls, issuer: str, client_id: str, jwks_url: str) -> TokenVerifier:
        """The verifier of one pool, its keys fetched once from `jwks_url` (Cognito's, or moto's on loopback)."""
        if not jwks_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise ValueError(f"refusing to fetch keys from {jwks_url!r}")
        answer = requests.get(jwks_url, timeout=10)
        answer.raise_for_status()
        return cls(issuer, client_id, answer.json())

    def claims(self, authorization: str | None) -> dict[str, Any]:
        """The verified claims of an `Authorization` header (`Bearer <jwt>` or the bare token)."""
        if not authorization:
            raise UnauthorizedError("no token: sign in first")
        value = authorization.removeprefix("Bearer ").strip()
        try:
            token = jwt.decode(value, self.keys, algorithms=["RS256"])
        except (JoseError, ValueError) as exc:
            raise UnauthorizedError("the token is not valid: sign in again") from exc
        claims = dict(token.claims)
        if token.header.get("alg") != "RS256":
            raise UnauthorizedError("the token is not signed with RS256")
        if claims.get("iss") != self.issuer:
            raise UnauthorizedError("the token was not issued by this console's user pool")
        use = claims.get("token_use")
        if use not in TOKEN_USES:
            raise UnauthorizedError("the token is neither an ID nor an access token")
        if claims.get("aud" if use == "id" else "client_id") != self.client_id:
            raise UnauthorizedError("the token was issued to another app client")
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= self.clock():
            raise UnauthorizedError("the token has expired: sign in again")
        return claims
