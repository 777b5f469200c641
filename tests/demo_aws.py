"""The demo's embedded AWS, kept: `make demo` saves its table and report bucket here at its end, and
`make demo-shell` (scripts/demo-shell) starts a moto server on a fixed loopback port, restores them, and opens a
shell in which every `usagewatch` command the demo printed runs as printed. The console reuses `start_restored`.

    python -m tests.demo_aws [--port N] [--state DIR] [--serve]

`--serve` keeps the embedded AWS up until Ctrl-C without a shell (use it from another terminal with the
variables it prints).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ROOT / ".demo" / "aws"
PORT = 4599
REGION = "eu-west-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "demo", "AWS_SECRET_ACCESS_KEY": "demo"}
MANIFEST = "manifest.json"


def aws_environment(endpoint: str) -> dict[str, str]:
    """What a process needs to use the embedded AWS: its endpoint, dummy credentials, the region."""
    return {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION, **CREDENTIALS}


def shell_command(argv: Sequence[str]) -> str:
    """A `usagewatch` command line exactly as the demo prints it and a shell runs it."""
    return shlex.join(["usagewatch", *argv])


_PATCHED: list[bool] = []


def quick_transactions() -> None:
    """moto backs up the whole table once per action of a TransactWriteItems (a deepcopy each), which on a demo-sized
    table under load outlasts the SDK's 10 s read timeout, and the SDK's retry then races the first call. One
    backup per call, one transaction at a time: moto's rollback stays as it is."""
    if _PATCHED:
        return
    import copy
    import types

    import moto.dynamodb.models as models

    real = models.DynamoDBBackend.transact_write_items
    lock = threading.Lock()

    def once(self: Any, transact_items: list[dict[str, Any]]) -> None:
        memo: dict[int, Any] = {}

        def backup(value: Any) -> Any:
            if id(value) not in memo:
                memo[id(value)] = copy.deepcopy(value)
            return memo[id(value)]

        with lock:
            saved = models.copy
            models.copy = types.SimpleNamespace(deepcopy=backup)  # type: ignore[assignment]
            try:
                real(self, transact_items)
            finally:
                models.copy = saved

    models.DynamoDBBackend.transact_write_items = once  # type: ignore[method-assign]
    _PATCHED.append(True)


# --- save (the demo's end) -------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    """A DynamoDB attribute value made JSON: bytes become {"$b64": ...}."""
    if isinstance(value, bytes | bytearray):
        return {"$b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"$b64"}:
            return base64.b64decode(value["$b64"])
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return value


def save(state: Path, *, tables: Sequence[str], buckets: Sequence[str] = (), commands: Sequence[str] = ()) -> Path:
    """Write the tables' items, the buckets' objects and the printed commands under `state` (replaced)."""
    import shutil

    ddb: Any = boto3.client("dynamodb", region_name=REGION)
    s3: Any = boto3.client("s3", region_name=REGION)
    if state.exists():
        shutil.rmtree(state)
    (state / "tables").mkdir(parents=True)
    for name in tables:
        with (state / "tables" / f"{name}.jsonl").open("w", encoding="utf-8") as out:
            for page in ddb.get_paginator("scan").paginate(TableName=name):
                for item in page["Items"]:
                    out.write(json.dumps(_plain(item), ensure_ascii=False) + "\n")
    for bucket in buckets:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for entry in page.get("Contents", []):
                target = state / "s3" / bucket / entry["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s3.get_object(Bucket=bucket, Key=entry["Key"])["Body"].read())
    manifest = {"tables": list(tables), "buckets": list(buckets), "commands": list(commands)}
    (state / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return state


# --- restore (demo-shell, the console) -------------------------------------------------------------------------


@dataclass
class Restored:
    endpoint: str
    tables: dict[str, int]
    """Each restored table and how many items it holds."""
    buckets: dict[str, int]
    commands: list[str]
    server: Any

    def stop(self) -> None:
        self.server.stop()


def _read_manifest(state: Path) -> dict[str, Any]:
    try:
        manifest: dict[str, Any] = json.loads((state / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"demo-shell: no saved demo in {state}: run `make demo` first") from None
    return manifest


def _start_server(port: int) -> Any:
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise SystemExit(
                f"demo-shell: port {port} on 127.0.0.1 is in use (another demo-shell?): stop it or pass --port N "
                "(make demo-shell DEMO_AWS_PORT=N)"
            ) from None
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    quick_transactions()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


def restore(state: Path) -> tuple[dict[str, int], dict[str, int]]:
    """Create the saved tables (their definition from template.yaml) and buckets, and put the saved items back,
    through whatever AWS the environment points at."""
    from tests.template_loader import table_definition, ttl_attribute

    manifest = _read_manifest(state)
    ddb: Any = boto3.client("dynamodb", region_name=REGION)
    s3: Any = boto3.client("s3", region_name=REGION)
    tables: dict[str, int] = {}
    for name in manifest["tables"]:
        ddb.create_table(**table_definition(table_name=name))
        if ttl := ttl_attribute():
            ddb.update_time_to_live(TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl})
        lines = (state / "tables" / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        items = [_typed(json.loads(line)) for line in lines if line]
        for start in range(0, len(items), 25):
            requests = [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            while requests:
                answer = ddb.batch_write_item(RequestItems={name: requests})
                requests = answer.get("UnprocessedItems", {}).get(name, [])
        tables[name] = len(items)
    buckets: dict[str, int] = {}
    for bucket in manifest["buckets"]:
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION})
        root = state / "s3" / bucket
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []
        for file in files:
            s3.put_object(Bucket=bucket, Key=file.relative_to(root).as_posix(), Body=file.read_bytes())
        buckets[bucket] = len(files)
    return tables, buckets


def start_restored(*, port: int = PORT, state: Path = STATE_DIR) -> Restored:
    """A moto server on 127.0.0.1:`port` holding the saved demo; this process's environment points at it.
    Returns where it is and what it holds; `stop()` ends it."""
    manifest = _read_manifest(state)
    server = _start_server(port)
    endpoint = f"http://127.0.0.1:{port}"
    os.environ.update(aws_environment(endpoint))
    os.environ.pop("AWS_PROFILE", None)
    try:
        tables, buckets = restore(state)
    except BaseException:
        server.stop()
        raise
    return Restored(endpoint, tables, buckets, list(manifest.get("commands", [])), server)


@contextlib.contextmanager
def restored_aws(*, port: int = PORT, state: Path = STATE_DIR) -> Iterator[str]:
    """`start_restored` as a context: yields the endpoint, stops the server on leaving."""
    restored = start_restored(port=port, state=state)
    try:
        yield restored.endpoint
    finally:
        restored.stop()


# --- the shell ---------------------------------------------------------------------------------------------------


def shell_environment(restored: Restored) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AWS_PROFILE"}
    env.update(aws_environment(restored.endpoint))
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    if restored.tables:
        env["USAGEWATCH_TABLE"] = next(iter(restored.tables))
    env["USAGEWATCH_DEMO_SHELL"] = restored.endpoint
    return env


def banner(restored: Restored, state: Path, *, serve: bool) -> str:
    where = state.relative_to(ROOT) if state.is_relative_to(ROOT) else state
    lines = [f"Embedded AWS (moto server) on {restored.endpoint}, restored from {where}:"]
    lines += [f"  table {name}: {count} items" for name, count in restored.tables.items()]
    lines += [f"  bucket {name}: {count} objects" for name, count in restored.buckets.items()]
    env = aws_environment(restored.endpoint)
    if serve:
        lines += ["", "Until Ctrl-C. In another shell (from the repository), set:"]
        lines += [f"  export {k}={v}" for k, v in env.items()] + [f"  export PATH={ROOT / '.venv' / 'bin'}:$PATH"]
    else:
        lines += [
            "",
            "A shell with " + ", ".join(env) + ", USAGEWATCH_TABLE and .venv/bin on PATH.",
            "The demo's commands run here as it printed them; `exit` (or Ctrl-D) stops the embedded AWS.",
        ]
    if restored.commands:
        lines += ["", "The commands the demo printed:"] + [f"  {c}" for c in restored.commands]
    return "\n".join(lines)


def _shell(env: dict[str, str]) -> list[str]:
    """The user's shell; bash gets a prompt saying where it is (after the user's own ~/.bashrc)."""
    shell = os.environ.get("SHELL") or "/bin/bash"
    if Path(shell).name != "bash" or not sys.stdin.isatty():
        return [shell]
    rc = tempfile.NamedTemporaryFile("w", suffix=".bashrc", delete=False, encoding="utf-8")  # noqa: SIM115
    with rc:
        rc.write('[ -f ~/.bashrc ] && . ~/.bashrc\nPS1="(usagewatch demo) $PS1"\n')
    env["USAGEWATCH_DEMO_RC"] = rc.name
    return [shell, "--rcfile", rc.name, "-i"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="demo-shell", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_AWS_PORT") or PORT))
    parser.add_argument("--state", type=Path, default=STATE_DIR, help="the saved demo (default .demo/aws)")
    parser.add_argument("--serve", action="store_true", help="no shell: keep the embedded AWS up until Ctrl-C")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT / "shared"))
    restored = start_restored(port=args.port, state=args.state.resolve())
    try:
        print(banner(restored, args.state.resolve(), serve=args.serve), flush=True)
        if args.serve:
            with contextlib.suppress(KeyboardInterrupt):
                threading.Event().wait()
            return 0
        env = shell_environment(restored)
        command = _shell(env)
        # Ctrl-C belongs to the shell and what it runs; a handler (not SIG_IGN) is reset in the child at exec.
        previous = signal.signal(signal.SIGINT, lambda *_: None)
        try:
            return subprocess.run(command, env=env, cwd=ROOT, check=False).returncode
        finally:
            signal.signal(signal.SIGINT, previous)
            if rc := env.get("USAGEWATCH_DEMO_RC"):
                Path(rc).unlink(missing_ok=True)
    finally:
        restored.stop()
        print(f"Embedded AWS on {restored.endpoint} stopped; the saved demo stays in {args.state}.", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
