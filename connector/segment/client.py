"""The Profile API client: one pooled httpx.Client, retries within a deadline, typed errors.

httpx exceptions never leave this module; Segment's statuses become the errors of
`connector.errors` in one function, each carrying Segment's `Request-Id`.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from connector.errors import (
    AuthenticationFailed,
    NoSlot,
    ProfileApiError,
    ProfileNotFound,
    RateLimited,
    SpaceNotFound,
    UpstreamInvalidRequest,
    UpstreamUnavailable,
)
from connector.metrics import figures
from connector.segment.deadline import Deadline
from connector.segment.responses import error_message, retry_after, segment_error
from connector.state.rates import RateBudget
from connector.tls import tls_context

REQUEST_TIMEOUT = httpx.Timeout(3.0, connect=1.0)
POOL_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=50)
USER_AGENT = "unified-profiles-connector"
# How long a request may wait for a slot in the space's pace, as a share of what is left of its
# lookup's time. When the pace has a queue (a storm), a lookup's opening request waits at most
# 40%, so that its later requests (the next candidate, the sections) still find slots before the
# deadline: lookups under way finish and new ones fail fast, rather than every lookup taking its
# first slot and none its last. A speculative request takes a slot only if one is free now.
PATIENT = 1.0
OPENING_PATIENCE = 0.4
SPECULATIVE = 0.0
# Segment answers a wrong space id with a 404 too ("Space was not found."): only the message
# tells it from a missing profile, and reading it here keeps that guess in one place.
SPACE_NOT_FOUND = re.compile(r"\bspace\b.*\bnot\s+found\b", re.IGNORECASE)


def build_http_client(transport: httpx.BaseTransport | None = None) -> httpx.Client:
    """The process's one pooled client (built by the app factory, never at import)."""
    return httpx.Client(
        timeout=REQUEST_TIMEOUT,
        limits=POOL_LIMITS,
        transport=transport,
        headers={"User-Agent": USER_AGENT},
        follow_redirects=False,
        verify=tls_context(),
    )


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter; `Retry-After` wins when Segment sends it."""

    attempts: int = 4
    base: float = 0.1
    cap: float = 2.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        return random.uniform(0, min(self.cap, self.base * 2**attempt))


def encode_identifier(type_: str, value: str) -> str:
    """`type:value` for a path: lowercase, every reserved character escaped (`+` as `%2B`)."""
    return f"{quote(type_.lower(), safe='')}:{quote(value.lower(), safe='')}"


class ProfileClient:
    """Reads one space's profiles; cheap to build, shares the process's httpx.Client."""

    def __init__(
        self,
        http: httpx.Client,
        base_url: str,
        space_id: str,
        token: SecretStr,
        budget: RateBudget,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = http
        self._base = f"{base_url}/v1/spaces/{quote(space_id, safe='')}/collections"
        self._space_id = space_id
        self._auth = (token.get_secret_value(), "")
        self._budget = budget
        self._retry = retry or RetryPolicy()
        self._sleep = sleep

    def get(
        self,
        collection: str,
        identifier: str,
        section: str,
        deadline: Deadline,
        params: Mapping[str, str] | None = None,
        patience: float = PATIENT,
    ) -> dict[str, Any]:
        """GET one section of a profile; `identifier` is already encoded (see encode_identifier).

        `patience`: the share of the deadline it may wait for a slot (see OPENING_PATIENCE)."""
        url = f"{self._base}/{collection}/profiles/{identifier}/{section}"
        last: ProfileApiError = UpstreamUnavailable("no attempt was made before the deadline")
        for attempt in range(self._retry.attempts):
            if deadline.expired:  # it waited for a thread until now: no slot could help
                raise last
            slot_by = deadline if patience >= PATIENT else deadline.share(patience)
            if not self._budget.acquire(self._space_id, slot_by):
                raise NoSlot("the space's request budget has no room before the deadline")
            try:
                return self._attempt(url, params, deadline, f"{collection}/{section}")
            except (RateLimited, UpstreamUnavailable) as error:
                last = error
                if isinstance(error, RateLimited) and error.retry_after:
                    # Segment's limit is the space's: every request to it waits, not only ours.
                    self._budget.back_off(self._space_id, error.retry_after)
            pause = self._retry.delay(attempt, last.retry_after)
            if attempt + 1 == self._retry.attempts or pause >= deadline.remaining():
                break
            self._sleep(pause)
            if deadline.remaining() <= 0:
                break  # the pause overran the deadline: Segment's own answer says more
        raise last

    def _attempt(
        self, url: str, params: Mapping[str, str] | None, deadline: Deadline, section: str
    ) -> dict[str, Any]:
        """One request, timed and counted for /metrics (by section: never the identifier)."""
        started = time.monotonic()
        try:
            return self._request(url, params, deadline)
        except ProfileNotFound:
            raise  # an answer (no such profile), not a failure
        except ProfileApiError as error:
            figures().upstream_error(section, error.code, error.upstream_status)
            raise
        finally:
            figures().upstream(section, time.monotonic() - started)

    def _request(
        self, url: str, params: Mapping[str, str] | None, deadline: Deadline
    ) -> dict[str, Any]:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise UpstreamUnavailable("the lookup's deadline passed")
        timeout = httpx.Timeout(
            min(REQUEST_TIMEOUT.read or remaining, remaining),
            connect=min(REQUEST_TIMEOUT.connect or remaining, remaining),
        )
        try:
            response = self._http.get(url, params=params, auth=self._auth, timeout=timeout)
        except httpx.TimeoutException:
            raise UpstreamUnavailable("Segment did not answer in time") from None
        except httpx.TransportError as error:
            raise UpstreamUnavailable(f"cannot reach Segment ({type(error).__name__})") from None
        except httpx.HTTPError as error:  # a body that cannot be decoded (bad gzip, say)
            raise UpstreamUnavailable(
                f"Segment's answer was unreadable ({type(error).__name__})"
            ) from None
        if response.status_code == 200:
            try:
                body = response.json()
            except (ValueError, httpx.DecodingError):  # not JSON, or not even decodable
                raise UpstreamUnavailable(
                    "Segment answered with invalid JSON", request_id=_request_id(response)
                ) from None
            if isinstance(body, dict):
                return body
            raise UpstreamUnavailable(
                "Segment answered with an unexpected body", request_id=_request_id(response)
            )
        raise error_for(response)


def error_for(response: httpx.Response) -> ProfileApiError:
    """The one place where Segment's status codes become our errors."""
    status, request_id = response.status_code, _request_id(response)
    message = error_message(response)
    if status in (401, 403):
        return AuthenticationFailed(message, status=status, request_id=request_id)
    if status == 404 and SPACE_NOT_FOUND.search(message):
        return SpaceNotFound(message, status=status, request_id=request_id)
    if status == 404 and segment_error(response) is None:
        # Not Segment's "no such profile": something else at profile_api_url (a proxy, a wrong
        # path). Read as "unknown customer", it would make every customer unknown.
        return UpstreamInvalidRequest(message, status=status, request_id=request_id)
    if status == 404:
        return ProfileNotFound(message, status=status, request_id=request_id)
    if status == 429:
        return RateLimited(
            message, status=status, request_id=request_id, retry_after=retry_after(response)
        )
    if 400 <= status < 500:
        return UpstreamInvalidRequest(message, status=status, request_id=request_id)
    return UpstreamUnavailable(
        message, status=status, request_id=request_id, retry_after=retry_after(response)
    )


def _request_id(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get("Request-Id")
    return value
