"""`make console`: the web console on this machine, on the demo's data.

The demo's pipeline runs into an embedded AWS (moto server on loopback) that stays up; a Cognito user pool in
it gets a demo operator and viewer (their passwords are printed); the console is served through the local front
that checks tokens as the stack's JWT authorizer does. Ctrl-C stops everything.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "shared"), str(ROOT)]


def main() -> int:
    from tests import demo
    from tests.console.local import console_front, create_pool

    started = demo.local_aws()
    endpoint = started.__enter__()

    @contextlib.contextmanager
    def stay_up() -> Iterator[str]:  # the demo's own runs against the server started above, left running
        yield endpoint

    demo.local_aws = stay_up  # type: ignore[assignment]
    print(f"Filling the embedded AWS ({endpoint}) with the demo's data (its output: .demo/console-demo.txt) ...")
    (ROOT / ".demo").mkdir(exist_ok=True)
    log = ROOT / ".demo" / "console-demo.txt"
    with open(log, "w", encoding="utf-8") as out, contextlib.redirect_stdout(out):
        try:
            code = demo.main()
        except Exception as exc:  # the console still serves what the demo stored
            print(f"the demo stopped: {exc!r}")
            code = 1
    if code:
        print(f"warning: the demo did not finish (see {log.relative_to(ROOT)}): the console shows what it stored")
    from tests.demo_billing import PERIOD

    os.environ.setdefault("CONSOLE_PERIOD", PERIOD)  # the demo's month: its report, its plan's proposals
    psa = psa_secret()
    if psa:  # the demo's PSA story made a connection: the PSA plan page shows its proposals
        os.environ["PSA_SECRET_ID"] = psa
    pool = create_pool(endpoint)
    operator = pool.add_user("demo-operator", "operators")
    viewer = pool.add_user("demo-viewer", "viewers")
    port = int(os.environ.get("CONSOLE_PORT", "8765"))
    if psa:
        print(f"The PSA plan page shows the demo's ConnectWise proposals of {os.environ['CONSOLE_PERIOD']}.")
    with console_front(pool, "usagewatch-demo-usage", port=port) as url:
        print(f"\nusagewatch console on the demo's data: {url}")
        print(f"  operator: demo-operator / {operator}")
        print(f"  viewer:   demo-viewer / {viewer}")
        print("Ctrl-C stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)
    started.__exit__(None, None, None)
    return 0


def psa_secret() -> str:
    """The demo's PSA secret name when its PSA story stored it in the embedded AWS, else ""."""
    from tests.demo_psa import SECRET
    from usagewatch import aws

    try:
        aws.client("secretsmanager").describe_secret(SecretId=SECRET)
    except Exception:  # no PSA story ran (or it stopped before its connection): no PSA page
        return ""
    return SECRET


if __name__ == "__main__":
    sys.exit(main())
