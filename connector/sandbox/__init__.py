"""An offline Segment: Profile API, tracking API and identity resolution, plus Twilio's token check.

Build a :class:`Sandbox`, load data, and serve it with :class:`SandboxServer`::

    sandbox = Sandbox(SandboxConfig(space_id="spa_demo"))
    sandbox.load("demo", rebase_time=True)
    with SandboxServer(sandbox) as server:
        ...  # server.url
"""

from connector.sandbox.core import Sandbox, SandboxConfig
from connector.sandbox.faults import Faults
from connector.sandbox.server import SandboxServer

__all__ = ["Faults", "Sandbox", "SandboxConfig", "SandboxServer"]
