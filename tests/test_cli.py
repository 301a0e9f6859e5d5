"""`connector sandbox` and `connector generate-data` as a user runs them: real subprocesses."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from connector.sandbox.process import sandbox_process
from tests.conftest import write_jsonl

CONNECTOR = [sys.executable, "-m", "connector"]


@contextmanager
def running_sandbox(*args: str) -> Iterator[tuple[str, str]]:
    """Start `connector sandbox`, yield (base url, everything it printed until ready)."""
    with sandbox_process(*args) as sandbox:
        yield sandbox.url, sandbox.printed
    assert sandbox.process.returncode == 0, "SIGTERM stops the sandbox cleanly"


def test_sandbox_serves_the_demo_data_and_prints_what_to_use() -> None:
    with running_sandbox(
        "--data",
        "demo",
        "--space-id",
        "spa_cli",
        "--token",
        "tok",
        "--agent-token",
        "fixed-agent-token",
    ) as (url, printed):
        assert "33 user profiles, 3 accounts" in printed
        agent = re.search(r"Flex agent token: (\S+)", printed)
        assert agent and agent[1] == "fixed-agent-token"  # the one given, not a second one
        response = httpx.get(
            f"{url}/v1/spaces/spa_cli/collections/users/profiles/phone:%2B14155550123/traits",
            params={"include": "name,plan"},
            auth=("tok", ""),
        )
        assert response.json()["traits"] == {"name": "Ada Lovelace", "plan": "gold"}
        events = httpx.get(
            f"{url}/v1/spaces/spa_cli/collections/users/profiles/user_id:u-ada/events",
            auth=("tok", ""),
        ).json()["data"]
        assert events, "the demo's events are rebased into the last 14 days"
        sid = re.search(r"Twilio account: (AC\w+) \(auth token: (\S+)\)", printed)
        assert sid
        for token in (agent[1], "fixed-agent-token"):
            check = httpx.post(
                f"{url}/v1/Accounts/{sid[1]}/Tokens/validate",
                json={"token": token},
                auth=(sid[1], sid[2]),
            ).json()
            assert check["valid"] is True


def test_generated_data_loads_through_the_command(tmp_path: Path) -> None:
    out = tmp_path / "synthetic.jsonl"
    result = subprocess.run(
        [*CONNECTOR, "generate-data", "--profiles", "200", "--seed", "7", "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "messages" in result.stdout
    with running_sandbox("--data", str(out), "--rebase-time") as (url, printed):
        assert "200 user profiles, 4 accounts" in printed
        assert httpx.get(f"{url}/_sandbox").json()["profiles"]["users"] == 200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"type": "identify"}\nnot json\n', ":2: not JSON"),
        ("[1, 2]\n", ":1: each line must be a JSON object"),
    ],
)
def test_a_bad_data_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    result = subprocess.run(
        [*CONNECTOR, "sandbox", "--port", "0", "--data", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_missing_data_file_is_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CONNECTOR, "sandbox", "--port", "0", "--data", str(tmp_path / "absent.jsonl")],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode != 0 and "absent.jsonl" in result.stderr
    assert "Traceback" not in result.stderr


def test_rebase_time_moves_the_newest_message_to_now(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "old.jsonl",
        [
            {"type": "track", "userId": "u1", "event": "Old", "timestamp": "2020-01-01T00:00:00Z"},
            {
                "type": "track",
                "userId": "u1",
                "event": "Older",
                "timestamp": "2019-12-25T00:00:00Z",
            },
        ],
    )
    with running_sandbox("--data", str(path), "--rebase-time", "--token", "t") as (url, _):
        events = httpx.get(
            f"{url}/v1/spaces/spa_sandbox/collections/users/profiles/user_id:u1/events",
            auth=("t", ""),
        ).json()["data"]
        assert [e["event"] for e in events] == ["Old", "Older"]
    with running_sandbox("--data", str(path), "--token", "t") as (url, _):
        events = httpx.get(
            f"{url}/v1/spaces/spa_sandbox/collections/users/profiles/user_id:u1/events",
            auth=("t", ""),
        ).json()["data"]
        assert events == []  # without rebasing they are older than 14 days


def test_help_lists_the_fixed_options() -> None:
    result = subprocess.run(
        [*CONNECTOR, "sandbox", "--help"], capture_output=True, text=True, check=True
    )
    for option in ("--port", "--space-id", "--token", "--data", "--agent-token", "--write-key"):
        assert option in result.stdout


def test_a_busy_port_is_a_clear_error() -> None:
    with running_sandbox() as (url, _):
        port = url.rsplit(":", 1)[1]
        result = subprocess.run(
            [*CONNECTOR, "sandbox", "--port", port],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr


def test_sigint_stops_the_sandbox_even_when_the_shell_ignored_it() -> None:
    # A shell's background job starts with SIGINT ignored; Ctrl-C must still stop the sandbox.
    command = f"trap '' INT; exec {shlex.join(CONNECTOR)} sandbox --port 0"
    with subprocess.Popen(["bash", "-c", command], stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout is not None
        try:
            for line in process.stdout:
                if line.startswith("  try:"):
                    break
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=10) == 0
        finally:
            process.kill()  # no-op once it exited; a stuck sandbox must not outlive the test
