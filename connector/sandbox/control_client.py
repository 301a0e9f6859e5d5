"""A client for a running sandbox's control plane, for tests, benchmarks and drills."""

from __future__ import annotations

from typing import Any

import httpx

from connector.tls import tls_context


class SandboxControl:
    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout, verify=tls_context())

    def close(self) -> None:
        self._http.close()

    def _json(self, response: httpx.Response) -> Any:
        response.raise_for_status()
        return response.json()

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Replace the current faults (see `connector.sandbox.faults.Faults` for the fields)."""
        if "targets" in faults:
            faults["targets"] = sorted(faults["targets"])
        result: dict[str, Any] = self._json(self._http.put("/_sandbox/faults", json=faults))
        return result

    def clear_faults(self) -> None:
        self._json(self._http.delete("/_sandbox/faults"))

    def stats(self, detail: bool = False) -> dict[str, Any]:
        params = {"detail": "1"} if detail else {}
        result: dict[str, Any] = self._json(self._http.get("/_sandbox/stats", params=params))
        return result

    def reset_stats(self) -> None:
        self._json(self._http.post("/_sandbox/stats/reset"))

    def issue_agent_token(self, **fields: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._json(self._http.post("/_sandbox/agent-tokens", json=fields))
        return result

    def profile(self, collection: str, identifier: str) -> dict[str, Any] | None:
        response = self._http.get(f"/_sandbox/profiles/{collection}/{identifier}")
        if response.status_code == 404:
            return None
        result: dict[str, Any] = self._json(response)
        return result
