"""The connector as a child process, for tests, benchmarks and `connector demo`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from connector.serving.loopback import free_port
from connector.tls import tls_context

HOST = "127.0.0.1"  # the demo, tests and benchmarks


@dataclass(frozen=True)
class ServedProcess:
    """A `connector serve` started by :func:`served_process`: its URL, master and log file."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def logs(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def worker_pids(self) -> list[int]:
        """gunicorn's workers: the master's children, read from /proc."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:  # the process ended while we looked
                continue
            if int(fields[1]) == self.process.pid:
                children.append(int(stat.parent.name))
        return children


@contextmanager
def served_process(
    config: Path,
    env: Mapping[str, str],
    port: int = 0,
    workers: int = 1,
    threads: int = 64,
    ready_within: float = 20.0,
) -> Iterator[ServedProcess]:
    """Run `connector serve` in a subprocess until the block ends (tests, benchmarks, drills)."""
    port = port or free_port()
    command = [
        sys.executable,
        "-m",
        "connector",
        "serve",
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
    ]
    with command_process(command, env, f"http://{HOST}:{port}", ready_within) as served:
        yield served


@contextmanager
def command_process(
    command: Sequence[str],
    env: Mapping[str, str],
    url: str,
    ready_within: float = 20.0,
    cwd: Path | None = None,
) -> Iterator[ServedProcess]:
    """Run a command serving the connector at `url` (a `connector serve`, the Procfile's web
    command) until the block ends; yield it once /healthz answers."""
    # Its logs go to a file opened for appending: a pipe nobody reads fills up, and then every
    # request blocks on writing its log line.
    with tempfile.TemporaryDirectory(prefix="connector-serve-") as folder:
        log_path = Path(folder) / "stderr.log"
        with (
            log_path.open("ab") as logs,
            subprocess.Popen(  # noqa: S603 - our own interpreter and command, no shell
                command, env={**os.environ, **env}, cwd=cwd, stdout=subprocess.DEVNULL, stderr=logs
            ) as process,
        ):
            served = ServedProcess(url, process, log_path)
            try:
                _wait_until_healthy(served, ready_within)
                yield served
            finally:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


def _wait_until_healthy(served: ServedProcess, within: float) -> None:
    deadline = time.monotonic() + within
    with httpx.Client(timeout=1, verify=tls_context()) as http:
        while time.monotonic() < deadline:
            if served.process.poll() is not None:
                raise RuntimeError(f"connector serve exited: {served.logs()}")
            try:
                if http.get(f"{served.url}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
    raise RuntimeError("connector serve did not become healthy in time")
