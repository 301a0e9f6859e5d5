"""The audit trail: one JSON line per lookup or event (who asked, about whom, with what outcome)
and per refused request, on the `connector.audit` logger.

Customers appear as keyed hashes (connector.logs.caller_hash), agents by worker SID, flows by
flow SID: the trail shows which agent looked up which customer, and never a phone number, an
email or a credential.
"""

from __future__ import annotations

import logging

from flask import Response, g, request

from connector.auth.gate import current_principal
from connector.auth.policy import current_policy

audit_log = logging.getLogger("connector.audit")
OUTCOMES = {
    400: "invalid",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    413: "invalid",
    415: "invalid",
    429: "rate_limited",
    503: "unavailable",
}


def note_caller(caller: str) -> None:
    """Which customer (hashed) the current request is about."""
    g.audit_caller = caller


def note_outcome(outcome: str) -> None:
    """What the current request found (found, not_found, unavailable, queued, ...)."""
    g.audit_outcome = outcome


def record(response: Response) -> Response:
    """An `after_request` hook: audits data routes, and every refusal on any other route."""
    route = current_policy()
    if request.method == "OPTIONS" or route.access == "public":
        return response
    refused = response.status_code in (401, 403, 429)
    if not route.customer_data and not refused:
        return response
    principal = current_principal()
    outcome = g.get("audit_outcome") or OUTCOMES.get(response.status_code)
    audit_log.info(
        "audit",
        extra={
            "principal": principal.name if principal else "anonymous",
            "route": request.url_rule.rule if request.url_rule else "unknown",
            "method": request.method,
            "status": response.status_code,
            "outcome": outcome or ("ok" if response.status_code < 400 else "error"),
            "caller": g.get("audit_caller"),
            "remote": request.remote_addr,
        },
    )
    return response
