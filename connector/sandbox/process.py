"""`connector sandbox` as a separate process, for tests, benchmarks and drills."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO

READY_LINE = "  try:"  # the last line `connector sandbox` prints before it serves


@dataclass(frozen=True)
class SandboxProcess:
    url: str
    printed: str  # everything the command printed until it was ready
    process: subprocess.Popen[str]


@contextmanager
def sandbox_process(
    *args: str, port: int = 0, env: Mapping[str, str] | None = None
) -> Iterator[SandboxProcess]:
    """Run `connector sandbox --port PORT ARGS...` until the block ends; stop it with SIGTERM.

    It runs with `env` (default: this process's environment)."""
    command = [sys.executable, "-m", "connector", "sandbox", "--port", str(port), *args]
    env = {**(os.environ if env is None else env), "PYTHONUNBUFFERED": "1"}
    # Output goes to a file, not a pipe: once nobody reads a pipe, a full one blocks the sandbox.
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as output,
        subprocess.Popen(  # noqa: S603 - our own interpreter and command, no shell
            command, stdout=output, stderr=subprocess.STDOUT, text=True, env=env
        ) as process,
    ):
        printed = _until_ready(output, process)
        match = re.search(r"Segment sandbox on (http://127\.0\.0\.1:\d+)", printed)
        if not match:
            process.kill()
            raise RuntimeError(f"connector sandbox did not start:\n{printed}")
        try:
            yield SandboxProcess(match[1], printed, process)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)


def _until_ready(output: IO[str], process: subprocess.Popen[str], within: float = 600.0) -> str:
    """What the sandbox printed up to its ready line (all of it, if it exits first)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        exited = process.poll() is not None
        output.seek(0)
        printed = output.read()
        ready = [line for line in printed.splitlines() if line.startswith(READY_LINE)]
        if ready or exited:
            return printed
        time.sleep(0.05)
    return printed
