"""The console on this machine: a Cognito user pool in the embedded AWS (moto) with an operator and a viewer,
and the local front checking tokens as the stack's JWT authorizer does. Used by `make console` and the tests."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import boto3

from tests.local_aws import REGION

GROUPS = ("operators", "viewers")


@dataclass
class Pool:
    pool_id: str
    client_id: str
    endpoint: str
    passwords: dict[str, str] = field(default_factory=dict)

    @property
    def issuer(self) -> str:
        return f"https://cognito-idp.{REGION}.amazonaws.com/{self.pool_id}"

    @property
    def jwks_url(self) -> str:
        return f"{self.endpoint}/{self.pool_id}/.well-known/jwks.json"

    def client(self) -> Any:
        return boto3.client("cognito-idp", region_name=REGION, endpoint_url=self.endpoint)

    def add_user(self, username: str, group: str, *, temporary: bool = False) -> str:
        """A user in `group`; with `temporary`, the first sign-in must choose a new password."""
        password = "Uw-9" + secrets.token_urlsafe(12)  # upper, lower, digit and symbol: the pool policy
        idp = self.client()
        idp.admin_create_user(
            UserPoolId=self.pool_id, Username=username, TemporaryPassword=password, MessageAction="SUPPRESS"
        )
        if not temporary:
            idp.admin_set_user_password(UserPoolId=self.pool_id, Username=username, Password=password, Permanent=True)
        idp.admin_add_user_to_group(UserPoolId=self.pool_id, Username=username, GroupName=group)
        self.passwords[username] = password
        return password

    def sign_in(self, username: str) -> str:
        """The ID token of `username`, as the sign-in page gets it."""
        answer = self.client().initiate_auth(
            ClientId=self.client_id,
            AuthFlow="USER_PASSWORD_AUTH",
            AuthParameters={"USERNAME": username, "PASSWORD": self.passwords[username]},
        )
        return str(answer["AuthenticationResult"]["IdToken"])


def create_pool(endpoint: str, name: str = "usagewatch-console") -> Pool:
    """A pool as the stack creates it: no self sign-up, groups operators and viewers, one app client without a
    secret allowing USER_PASSWORD_AUTH."""
    idp = boto3.client("cognito-idp", region_name=REGION, endpoint_url=endpoint)
    pool_id = idp.create_user_pool(PoolName=name, AdminCreateUserConfig={"AllowAdminCreateUserOnly": True})["UserPool"][
        "Id"
    ]
    client_id = idp.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName="console",
        GenerateSecret=False,
        ExplicitAuthFlows=["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    )["UserPoolClient"]["ClientId"]
    for group in GROUPS:
        idp.create_group(UserPoolId=pool_id, GroupName=group)
    return Pool(pool_id, client_id, endpoint)


@contextmanager
def console_front(pool: Pool, table_name: str, *, port: int = 0) -> Iterator[str]:
    """The console served through the local front; yields its URL."""
    import os

    from usagewatch.console.app import handle
    from usagewatch.console.auth import TokenVerifier
    from usagewatch.console.front import serve

    os.environ.update(USAGE_TABLE_NAME=table_name, COGNITO_CLIENT_ID=pool.client_id, COGNITO_ENDPOINT=pool.endpoint)
    server = serve(handle, TokenVerifier.for_pool(pool.issuer, pool.client_id, pool.jwks_url), port)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


HOSTILE = "<img src=x onerror=alert(1)>"
USAGE = (("c-1", "Acme Ltd", 130), ("c-2", "Globex GmbH", 40), ("c-3", HOSTILE, 9))


def fill(store: Any) -> None:
    """Three Keepnet tenants with usage this month and last (one named like an attack), none mapped."""
    from datetime import UTC, datetime

    from usagewatch.model import Period, Tenant, UsageRecord, Window

    now = Period.of(datetime.now(UTC))
    at = datetime(now.year, now.month, 1, 6, tzinfo=UTC)
    for tid, name, value in USAGE:
        for period in (now.previous(), now):
            used = value - (period != now)
            record = UsageRecord("keepnet", "kn-main", Tenant(tid, name), "monthly_users", used, "users",
                                 Window.month(period))  # fmt: skip
            store.add_usage(record, as_of=at, collected_at=at)
    store.flush()


@dataclass
class Running:
    url: str
    pool: Pool
    table_name: str
    endpoint: str


@contextmanager
def running_console(*, filled: bool = True) -> Iterator[Running]:
    """An embedded AWS (moto server on loopback: the caller has pointed AWS_ENDPOINT_URL at nothing else), the
    template's table (with the test data when `filled`), a pool with operator `olivia`, viewer `victor` and
    `nora`, an operator whose first sign-in must set a password; and the console behind the local front."""
    import os
    import socket

    from moto.server import ThreadedMotoServer

    from tests.local_aws import provision

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    saved = dict(os.environ)
    os.environ.update(AWS_ENDPOINT_URL=endpoint)
    try:
        # moto's servers in one process share one state: each console gets its own table and topic names
        suffix = secrets.token_hex(3)
        aws = provision(table_name=f"usagewatch-console-{suffix}", topic_name=f"usagewatch-console-{suffix}")
        if filled:
            fill(aws.store())
        pool = create_pool(endpoint)
        pool.add_user("olivia", "operators")
        pool.add_user("victor", "viewers")
        pool.add_user("nora", "operators", temporary=True)
        with console_front(pool, aws.table_name) as url:
            yield Running(url, pool, aws.table_name, endpoint)
    finally:
        server.stop()
        os.environ.clear()
        os.environ.update(saved)  # the endpoint, table and pool of this console leak into no later test
