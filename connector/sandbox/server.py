"""The sandbox on loopback: a LoopbackServer that refuses connections during an outage."""

from __future__ import annotations

from connector.sandbox.app import create_sandbox_app
from connector.sandbox.core import Sandbox
from connector.sandbox.faults import Faults
from connector.serving.loopback import LoopbackServer


class SandboxServer(LoopbackServer):
    """The sandbox on loopback. An outage with `outage="refuse"` closes the listening socket, so
    clients get a real "connection refused"; when it ends the server listens again."""

    def __init__(self, sandbox: Sandbox, port: int = 0, threads: int = 64) -> None:
        super().__init__(create_sandbox_app(sandbox), port, threads)
        self.sandbox = sandbox
        sandbox.faults.on_change(self._follow_outage)

    def start(self) -> SandboxServer:
        super().start()
        return self

    def __enter__(self) -> SandboxServer:
        return self.start()

    def _follow_outage(self, faults: Faults) -> None:
        with self._lock:
            if faults.outage == "refuse":
                self._close()
            elif self._started:
                self._listen()
