"""`connector sandbox` as a separate process, for tests, benchmarks and drills."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

READY_LINE = "  try:"  # the last line `connector sandbox` prints before it serves


@dataclass(frozen=True)
class SandboxProcess:
    url: str
    printed: str  # everything the command printed until it was ready
    process: subprocess.Popen[str]


@contextmanager
def sandbox_process(*args: str, port: int = 0) -> Iterator[SandboxProcess]:
    """Run `connector sandbox --port PORT ARGS...` until the block ends; stop it with SIGTERM."""
    command = [sys.executable, "-m", "connector", "sandbox", "--port", str(port), *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(  # noqa: S603 - our own interpreter and command, no shell
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    ) as process:
        printed = ""
        for line in process.stdout or ():
            printed += line
            if line.startswith(READY_LINE):
                break
        match = re.search(r"Segment sandbox on (http://127\.0\.0\.1:\d+)", printed)
        if not match:
            process.kill()
            raise RuntimeError(f"connector sandbox did not start:\n{printed}")
        try:
            yield SandboxProcess(match[1], printed, process)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=10)
