"""The console behind the local front, over HTTP on loopback: tokens from the embedded Cognito pool (moto in
server mode) are checked as API Gateway's JWT authorizer checks them; a missing, expired, foreign, tampered or
other-client token is refused before the function runs, and a viewer's change is refused by the function."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from moto.utilities.utils import load_resource

from tests.console.local import Running, running_console
from usagewatch.store import DynamoStore
from usagewatch.store.billing import BillingStore

MOTO_KEY = RSAKey.import_key(load_resource("cognitoidp/resources/jwks-private.json"))
"""The one key moto signs every pool's tokens with: what the expired and other-pool tokens are signed with."""


@pytest.fixture(scope="module")
def console() -> Iterator[Running]:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (
            ("AWS_ACCESS_KEY_ID", "t"),
            ("AWS_SECRET_ACCESS_KEY", "t"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
        ):
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        with running_console() as running:
            yield running


def fetch(url: str, token: str | None = None, data: bytes | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def mint(claims: dict[str, Any], key: RSAKey = MOTO_KEY) -> str:
    return jwt.encode({"alg": "RS256", "kid": "dummy"}, claims, key)


def claims_of(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))))


def test_a_signed_in_operator_and_viewer_read_pages(console: Running) -> None:
    for user in ("olivia", "victor"):
        status, body = fetch(console.url + "p/unmapped", console.pool.sign_in(user))
        assert status == 200 and f"Signed in as {user}" in body and "Acme Ltd" in body


def test_the_shell_and_htmx_need_no_token(console: Running) -> None:
    status, body = fetch(console.url)
    assert status == 200 and console.pool.client_id in body and "Sign in" in body
    assert fetch(console.url + "static/htmx.min.js")[0] == 200


def test_bad_tokens_are_refused_before_the_function(console: Running) -> None:
    page = console.url + "p/overview"
    real = claims_of(console.pool.sign_in("olivia"))
    now = int(time.time())
    other = console.pool.client()
    foreign_pool = other.create_user_pool(PoolName="another")["UserPool"]["Id"]
    refused = {
        "none": None,
        "garbage": "not-a-jwt",
        "expired": mint(real | {"iat": now - 7200, "exp": now - 3600}),
        "another pool (same moto key)": mint(real | {"iss": real["iss"].rsplit("/", 1)[0] + "/" + foreign_pool}),
        "another key": mint(real, RSAKey.generate_key(2048)),
        "another client": mint(real | {"aud": "someone-else"}),
        "refresh-like use": mint(real | {"token_use": "refresh"}),
    }
    for why, token in refused.items():
        status, body = fetch(page, token)
        assert (status, json.loads(body)) == (401, {"message": "Unauthorized"}), why
    assert fetch(page, mint(real))[0] == 200  # the same claims, validly signed, pass: the refusals above are real


def test_a_tampered_token_cannot_make_a_viewer_an_operator(console: Running) -> None:
    token = console.pool.sign_in("victor")
    head, _, signature = token.split(".")
    claims = claims_of(token) | {"cognito:groups": ["operators"]}
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    data = b"tenant=keepnet%2Fkn-main%2Fc-1"
    assert fetch(console.url + "p/unmapped/accept", f"{head}.{forged}.{signature}", data)[0] == 401
    status, page = fetch(console.url + "p/unmapped/accept", token, data)
    assert status == 403 and "victor is not in the operators group" in page
    assert BillingStore(DynamoStore(console.table_name)).mappings() == []


def test_the_first_sign_in_sets_a_new_password(console: Running) -> None:
    idp = console.pool.client()
    first = idp.initiate_auth(
        ClientId=console.pool.client_id,
        AuthFlow="USER_PASSWORD_AUTH",
        AuthParameters={"USERNAME": "nora", "PASSWORD": console.pool.passwords["nora"]},
    )
    assert first["ChallengeName"] == "NEW_PASSWORD_REQUIRED"
