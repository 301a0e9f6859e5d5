"""Reading Segment's HTTP answers, the same for the Profile API and the tracking API."""

from __future__ import annotations

import httpx


def error_message(response: httpx.Response) -> str:
    """`code: message` from Segment's error body, or the status when the body is not one."""
    try:
        error = response.json()["error"]
        return f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code} from Segment"


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a `Retry-After` header, when there is a usable one."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None
