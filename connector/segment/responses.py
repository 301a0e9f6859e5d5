"""Reading Segment's HTTP answers, the same for the Profile API and the tracking API."""

from __future__ import annotations

import httpx


def error_message(response: httpx.Response) -> str:
    """`code: message` from Segment's error body, or the status when the body is not one."""
    error = segment_error(response)
    return f"{error[0]}: {error[1]}" if error else f"HTTP {response.status_code} from Segment"


def segment_error(response: httpx.Response) -> tuple[str, str] | None:
    """(code, message) when the body is Segment's error shape; None for anything else (a
    proxy's page, a wrong URL's 404)."""
    try:
        error = response.json()["error"]
        return str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        return None


def retry_after(response: httpx.Response) -> float | None:
    """Seconds from a `Retry-After` header, when there is a usable one."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None
