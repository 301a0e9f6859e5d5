"""The Profile API of the connection in use: one client per version of the file, one budget.

An edit of the connection file that changes the space, its URL or its token gets a new client
at the next request; an edit of labels costs nothing. The budget lives as long as the process:
an edit changes its rate, never refills it.
"""

from __future__ import annotations

import threading

import httpx

from connector.config.loading import Connection
from connector.segment.client import ProfileClient
from connector.state.pacing import LocalPacer
from connector.state.rates import RateBudget
from connector.state.redis import SharedRedis
from connector.state.shared_pacing import SharedPacer


class ProfileApi:
    def __init__(
        self, http: httpx.Client, processes: int = 1, shared: SharedRedis | None = None
    ) -> None:
        self.http = http
        self.processes = max(1, processes)  # each worker takes its share of the space's rate
        self.local_budget = LocalPacer(1.0)
        # With Redis, one budget for the deployment, and this share while Redis is down.
        self.shared_budget = SharedPacer(shared, self.local_budget) if shared else None
        self.budget: RateBudget = self.shared_budget or self.local_budget
        self._lock = threading.Lock()
        self._current: tuple[str, ProfileClient] | None = None

    def client(self, connection: Connection) -> ProfileClient:
        """The client for this version of the connection (built once per version)."""
        with self._lock:
            if self._current is None or self._current[0] != connection.version:
                rate = connection.file.lookup.rate_limit
                self.local_budget.set_rate(rate / self.processes)
                if self.shared_budget is not None:
                    self.shared_budget.set_rate(rate)
                client = ProfileClient(
                    self.http,
                    connection.profile_api_url,
                    connection.file.connection.space_id,
                    connection.token,
                    self.budget,
                )
                self._current = (connection.version, client)
            return self._current[1]
