"""The HTTP interface's other models: error bodies, lookup and event requests, readiness."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from connector.cards.models import _Model


class ErrorDetail(_Model):
    code: str
    message: str


class ErrorBody(_Model):
    """Segment's error shape, used by every error this service returns."""

    error: ErrorDetail


class LookupRequest(_Model):
    """Who to look up: exactly one field (query string, form or JSON); a field given twice
    (`from` and `From`, query string and body) must carry the same value."""

    from_: str | None = Field(
        default=None,
        alias="from",
        description="A channel address: +14155550123, whatsapp:+..., an email; a withheld "
        "number or a client:/sip: address is answered as not found, with a reason",
    )
    from_twilio: str | None = Field(
        default=None, alias="From", description="The same as from (Twilio's trigger.call.From)"
    )
    phone: str | None = None
    email: str | None = None
    identifier: str | None = Field(default=None, description="A Segment identifier, type:value")


class StudioLookup(BaseModel):
    """Studio's flat object: these fields, then trait_*, audience_*, computed_*, identifier_*."""

    model_config = ConfigDict(extra="allow")

    found: bool
    status: Literal["found", "not_found", "unavailable"]
    connection: str
    # not_found: withheld | not_a_customer_address | unlinked (null when Segment was asked);
    # unavailable: the error code (space_not_found, token_refused, upstream_unavailable, ...)
    reason: str | None = None
    message: str | None = Field(default=None, description="For unavailable: what to do")


class EventAccepted(_Model):
    messageId: str
    queued: bool
    duplicate: bool
    identified: bool


class UnlinkRequest(_Model):
    """`POST /v1/cards/unlink`'s fields beside the caller's (`from`): the profile the card showed
    and the identifier that found it (the card's `lookup.identifier`, Studio's
    `matched_identifier`). Twilio's TaskSid, WorkerSid and CallSid are read too."""

    segment_id: str = Field(pattern=r"^[A-Za-z0-9_.:\-]{1,200}$")
    matched_identifier: str = Field(pattern=r"^[a-z0-9_.\-]{1,100}:.{1,500}$")
    task_sid: str | None = Field(default=None, max_length=100)
    worker_sid: str | None = Field(default=None, max_length=100)
    call_sid: str | None = Field(default=None, max_length=100)
    reason: str | None = Field(default=None, max_length=500)


class Unlinked(_Model):
    unlinked: bool
    segment_id: str
    messageId: str
    sent_to_segment: bool  # false: recorded in the connector's ledger only
    duplicate: bool
    message: str


class Health(_Model):
    status: Literal["ok"]


class ReadinessConfig(_Model):
    valid: bool
    error: str | None


class ReadinessUpstream(_Model):
    reachable: bool
    token_accepted: bool | None
    detail: str
    request_id: str | None
    code: str | None  # space_not_found, token_refused, upstream_unavailable, ...


class ReadinessOutbox(_Model):
    backend: str  # sqlite | postgresql
    reachable: bool | None  # None: not opened yet (SQLite makes no file before the first event)


class ReadinessSummary(_Model):
    """What a probe without credentials learns: ready or not (the status says it too)."""

    ready: bool


class ReadinessShared(_Model):
    """Redis (REDIS_URL), when the deployment shares state through it."""

    available: bool
    where: str  # host:port
    error: str | None  # why it is not available (the exception's name)
    instances: dict[str, str]  # instance (host/master pid) -> the connection version it serves
    versions_agree: bool


class Readiness(_Model):
    ready: bool
    connection: str
    version: str
    config: ReadinessConfig
    upstream: ReadinessUpstream
    cache: dict[str, int]
    shared: ReadinessShared | None = None
    outbox: ReadinessOutbox | None = None  # while write-back is on
