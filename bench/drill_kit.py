"""The drills' harness: a sandbox and `connector serve` as processes, the data, the config.

Only the connector's public interface is used: the `connector sandbox`, `connector serve` and
`connector outbox` commands, the connection file, signals, HTTP routes and the sandbox's control
plane (through `SandboxControl`). Nothing here imports the connector's internals, so the drills
run unchanged against future code.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from connector.sandbox.control_client import SandboxControl
from connector.sandbox.process import SandboxProcess, sandbox_process
from connector.serving.loopback import free_port

SPACE, TOKEN, WRITE_KEY = "spa_drills", "drill-profile-token", "drill-write-key"
TWILIO_SID, TWILIO_AUTH = "AC" + "d" * 32, "drill-twilio-auth-token"
STUDIO = ("studio", "drill-studio-password")  # Studio flows authenticate with Basic auth
PROFILES = 2000
HOST = "127.0.0.1"
TRAITS = ("plan", "lifetime_value", "customer_since", "city")  # on every profile, on every card


def known_phone(n: int) -> str:
    """The phone number of drill profile n (every profile has every configured trait)."""
    return f"+1212{3_000_000 + n:07d}"


def unknown_phone(n: int) -> str:
    """A well-formed number no profile has."""
    return f"+1646{5_000_000 + n:07d}"


def user_id(n: int) -> str:
    return f"drill-u{n:05d}"


def write_data(path: Path, profiles: int = PROFILES) -> None:
    """JSON Lines of identify calls (the sandbox's public `--data` format)."""
    with path.open("w", encoding="utf-8") as file:
        for n in range(profiles):
            traits = {
                "first_name": f"Drill{n}",
                "last_name": "Caller",
                "email": f"drill{n}@example.com",
                "phone": known_phone(n),
                "plan": ("gold", "silver", "bronze")[n % 3],
                "lifetime_value": 100 + n,
                "customer_since": "2021-08-19",
                "city": "Lyon",
            }
            message = {"type": "identify", "userId": user_id(n), "traits": traits}
            file.write(json.dumps(message) + "\n")


def connection_toml(
    sandbox_url: str,
    friendly_name: str = "Drills",
    label_suffix: str = "",
    **lookup: Any,
) -> str:
    """The drills' connection file, in the order of config/connection.example.toml."""
    settings = "".join(f"{key} = {json.dumps(value)}\n" for key, value in lookup.items())
    traits = "".join(
        f'[[traits]]\nkey = "{key}"\nlabel = "{key.replace("_", " ").title()}{label_suffix}"\n\n'
        for key in TRAITS
    )
    return (
        f'[connection]\nfriendly_name = "{friendly_name}"\nspace_id = "{SPACE}"\n'
        f'profile_api_url = "{sandbox_url}"\ntoken_env = "SEGMENT_PROFILE_API_TOKEN"\n\n'
        f'[lookup]\ndefault_country = "US"\nphone_identifiers = ["phone"]\n'
        f'phone_formats = ["e164"]\n{settings}\n'
        '[[identifiers]]\ntype = "user_id"\nlabel = "Customer ID"\n\n'
        '[[identifiers]]\ntype = "email"\nlabel = "Email"\n\n'
        f"{traits}"
        "[auth]\nagent_lookups_per_minute = 1000000\nflow_lookups_per_minute = 1000000\n"
        'studio_basic_auth_env = "DRILL_STUDIO_BASIC_AUTH"\n\n'
        f'[writeback]\nenabled = true\nwrite_key_env = "SEGMENT_WRITE_KEY"\n'
        f'tracking_api_url = "{sandbox_url}"\noutbox_path = "outbox.sqlite"\n'
    )


def replace_atomically(path: Path, text: str) -> None:
    """An edit as a careful admin or a config tool makes it: write aside, then rename."""
    aside = path.with_suffix(".tmp")
    aside.write_text(text, encoding="utf-8")
    aside.replace(path)


class Serve:
    """`connector serve` in its own session, so the drill can kill -9 master and workers."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.config, self.env = config, env
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self._logs: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as self

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, within: float = 30.0) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "connector", "serve", "--config", str(self.config)]
        command += ["--host", HOST, "--port", str(self.port), "--workers", "2"]
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **self.env},
            stdout=self._logs,
            stderr=self._logs,
            start_new_session=True,
        )
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.exited():
                raise RuntimeError(f"connector serve exited:\n{self.logs()[-3000:]}")
            if self.healthy():
                return
            time.sleep(0.1)
        raise RuntimeError("connector serve did not become healthy in time")

    def healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def exited(self) -> bool:
        return self.process is None or self.process.poll() is not None

    def workers(self) -> list[int]:
        """The gunicorn workers: the master's children, from /proc."""
        if self.process is None:
            return []
        pid = self.process.pid
        children: list[int] = []
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            children += [int(child) for child in task.read_text().split()]
        return sorted(children)

    def kill9(self) -> None:
        """SIGKILL to master and workers at once (the whole session's process group)."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.exited():
            self._reap_group()
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self._reap_group()

    def _reap_group(self) -> None:
        """Workers a killed master left behind (same process group) go too."""
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def logs(self) -> str:
        self._logs.seek(0)
        return self._logs.read().decode("utf-8", "replace")

    def close(self) -> None:
        self.stop()
        self._logs.close()


def client(url: str, timeout: float, connections: int, fresh: bool, **options: Any) -> httpx.Client:
    """A client of the connector. `fresh`: a new connection per request (as Studio's calls
    come), so that requests spread over the gunicorn workers instead of sticking to one."""
    headers = {**options.pop("headers", {}), **({"Connection": "close"} if fresh else {})}
    return httpx.Client(
        base_url=url,
        timeout=timeout,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers=headers,
        **options,
    )


@dataclass
class Stack:
    """One drill's world: a sandbox, its control plane, a connection file and `connector serve`."""

    folder: Path
    sandbox_url: str
    control: SandboxControl
    agent: str
    config: Path
    serve: Serve

    @property
    def url(self) -> str:
        return self.serve.url

    def agent_client(
        self, timeout: float = 15.0, connections: int = 64, fresh: bool = True
    ) -> httpx.Client:
        """An agent's client (Flex token as Bearer)."""
        headers = {"Authorization": f"Bearer {self.agent}"}
        return client(self.url, timeout, connections, fresh, headers=headers)

    def studio_client(
        self, timeout: float = 15.0, connections: int = 64, fresh: bool = True
    ) -> httpx.Client:
        """A Studio flow's client (Basic auth)."""
        return client(self.url, timeout, connections, fresh, auth=STUDIO)

    def upstream_calls(self) -> int:
        return int(self.control.stats()["profile_api"]["requests"])

    def rewrite(self, **options: Any) -> None:
        """Replace the connection file atomically with the drills' file built from `options`."""
        replace_atomically(self.config, connection_toml(self.sandbox_url, **options))

    def outbox_files_bytes(self) -> dict[str, int]:
        """Sizes of the outbox database and its WAL and shared-memory files."""
        return {
            path.name: path.stat().st_size
            for path in sorted(self.folder.glob("outbox.sqlite*"))
            if path.is_file()
        }


@dataclass(frozen=True)
class OutboxState:
    pending: int
    sent: int
    dead: int
    printed: str


def outbox_state(config: Path) -> OutboxState:
    """What `connector outbox --config PATH` prints, parsed."""
    result = subprocess.run(
        [sys.executable, "-m", "connector", "outbox", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # "N pending (oldest ...), N sent[ (kept ...)], N dead[ (kept ...)]", then dead letters.
    match = re.search(r"(\d+) pending.*?(\d+) sent\b.*?(\d+) dead", result.stdout)
    if not match:
        raise RuntimeError(f"connector outbox printed no depth: {result.stdout}{result.stderr}")
    pending, sent, dead = (int(g) for g in match.groups())
    return OutboxState(pending, sent, dead, result.stdout)


def settle(stack: Stack, within: float = 90.0) -> OutboxState:
    """Wait until the outbox holds nothing pending (or `within` seconds pass)."""
    deadline = time.monotonic() + within
    state = outbox_state(stack.config)
    while state.pending and time.monotonic() < deadline:
        time.sleep(1.0)
        state = outbox_state(stack.config)
    return state


def receipts(stack: Stack) -> dict[str, int]:
    """How many times Segment (the sandbox) received each messageId."""
    tracking = stack.control.stats(detail=True)["tracking"]
    return {str(k): int(v) for k, v in tracking.get("receipts", {}).items()}


def delivery(s: Stack, accepted: Sequence[str]) -> tuple[int, int]:
    """Of the events answered 202: how many Segment never received, and received twice or more."""
    received = receipts(s)
    ids = set(accepted)
    lost = sum(1 for m in ids if received.get(m, 0) == 0)
    return lost, sum(1 for m in ids if received.get(m, 0) > 1)


def profile_events(stack: Stack, n: int) -> list[dict[str, Any]]:
    """Profile n's recent events, through Segment's Profile API (the sandbox's)."""
    url = f"{stack.sandbox_url}/v1/spaces/{SPACE}/collections/users/profiles/"
    response = httpx.get(
        f"{url}user_id:{user_id(n)}/events", params={"limit": 100}, auth=(TOKEN, ""), timeout=10
    )
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()["data"]
    return data


def events_landed(stack: Stack, n: int) -> int:
    """Events profile n holds (every kind), from the control plane."""
    found = stack.control.profile("users", f"user_id:{user_id(n)}")
    return int(found["events"]) if found else 0


def drill_sandbox(data: Path, *options: str) -> AbstractContextManager[SandboxProcess]:
    """`connector sandbox` with the drills' data, space and credentials (and `options`)."""
    return sandbox_process(
        "--data",
        str(data),
        "--space-id",
        SPACE,
        "--token",
        TOKEN,
        "--write-key",
        WRITE_KEY,
        "--twilio-account-sid",
        TWILIO_SID,
        "--twilio-auth-token",
        TWILIO_AUTH,
        *options,
    )


@contextmanager
def stack(data: Path, **lookup: Any) -> Iterator[Stack]:
    """A fresh sandbox and `connector serve` (2 workers, default threads) for one drill."""
    with (
        tempfile.TemporaryDirectory(prefix="drill-") as tmp,
        drill_sandbox(data) as sandbox,
    ):
        folder = Path(tmp)
        control = SandboxControl(sandbox.url)
        config = folder / "connection.toml"
        config.write_text(connection_toml(sandbox.url, **lookup), encoding="utf-8")
        serve = Serve(config, serve_environment(sandbox.url))
        try:
            agent = str(control.issue_agent_token()["token"])
            serve.start()
            yield Stack(folder, sandbox.url, control, agent, config, serve)
        finally:
            serve.close()
            control.close()


def serve_environment(sandbox_url: str) -> dict[str, str]:
    """Secrets and Twilio's variables, as a platform would set them."""
    return {
        "SEGMENT_PROFILE_API_TOKEN": TOKEN,
        "SEGMENT_WRITE_KEY": WRITE_KEY,
        "TWILIO_ACCOUNT_SID": TWILIO_SID,
        "TWILIO_AUTH_TOKEN": TWILIO_AUTH,
        "TWILIO_IAM_URL": sandbox_url,
        "DRILL_STUDIO_BASIC_AUTH": ":".join(STUDIO),
    }
