"""`/openapi.json`: the connector's HTTP interface, generated from the pydantic models it serves."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel, Field, create_model
from pydantic.json_schema import models_json_schema

from connector import __version__
from connector.cards.models import ProfileCard
from connector.web.fields import ENVELOPE_FIELDS
from connector.web.models import (
    ErrorBody,
    EventAccepted,
    Health,
    LookupRequest,
    Readiness,
    ReadinessSummary,
    StudioLookup,
    Unlinked,
    UnlinkRequest,
)
from connector.writeback.events import EventRequest
from connector.writeback.history import CardHistory

REF = "#/components/schemas/{model}"
MODELS: list[type[BaseModel]] = [
    ProfileCard,
    StudioLookup,
    EventAccepted,
    CardHistory,
    Unlinked,
    Health,
    Readiness,
    ReadinessSummary,
    ErrorBody,
]
GATE_FIELDS = {
    "Token": "The agent's Flex token (Flex's convention)",
    "FlowSid": "The Studio flow's SID ({{flow.flow_sid}}): its name in the audit trail",
}


def _as_sent(name: str, *models: type[BaseModel]) -> type[BaseModel]:
    """A request body as clients send it: the models' fields plus Twilio's envelope fields,
    which every route accepts (the gate reads Token and FlowSid) and otherwise ignores."""
    # Fields other than the gate's are ignored whatever their type: a JSON body built from
    # Studio's variables may carry `{{trigger.message.NumMedia}}` unquoted, a number.
    envelope: dict[str, Any] = {
        field: (
            str | None if field in GATE_FIELDS else Any,
            Field(default=None, description=GATE_FIELDS.get(field, "Twilio's; ignored")),
        )
        for field in sorted(ENVELOPE_FIELDS)
    }
    return create_model(name, __base__=models, **envelope)


# The event body names its caller with the lookup's fields.
INPUTS = [
    _as_sent("LookupRequest", LookupRequest),
    _as_sent("EventRequest", EventRequest, LookupRequest),
    _as_sent("UnlinkRequest", UnlinkRequest, LookupRequest),
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _either(first: type[BaseModel], second: type[BaseModel], description: str) -> dict[str, Any]:
    schema = {"oneOf": [_ref(first), _ref(second)]}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Bad input",
        401: "No, bad or expired credentials",
        403: "A Flex role the connection does not allow (or, for events, write-back is off)",
        404: "Not found",
        413: "Body over 64 KB",
        415: "A body neither form nor JSON",
        429: "This agent's or flow's lookup limit is reached (Retry-After says when to retry)",
        502: "Segment refused the connector's request",
        503: "Segment, or Twilio's token check, is unavailable; or the admin must fix the "
        "connection: code space_not_found (check space_id) or token_refused (check the token)",
    }
    return {str(s): _json(ErrorBody, reasons[s]) for s in statuses}


# Every route but those documented with `security: []` takes one of these (connector.auth).
SECURITY_SCHEMES = {
    "flexToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The agent's Flex token (also accepted as a Token field in the body, "
        "never in the query string)",
    },
    "studioSignature": {
        "type": "apiKey",
        "in": "header",
        "name": "X-Twilio-Signature",
        "description": "Twilio's signature of a Studio request (bodySHA256 for JSON bodies)",
    },
    "studioBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "Basic auth for Studio, when the connection enables it",
    },
}
# The admin's routes (/admin, /metrics) take these instead (connector.auth.policy's admin).
ADMIN_SCHEMES = {
    "adminBasic": {
        "type": "http",
        "scheme": "basic",
        "description": "The admin's Basic credentials ([auth] admin_basic_auth_env)",
    },
}
# The admin's Basic credentials, or a Flex token with the admin role.
ADMIN_SECURITY: list[dict[str, list[str]]] = [{"adminBasic": []}, {"flexToken": []}]
AUTH_ERRORS = (401, 403, 503)
CARD_PAGE = (
    "Flex frames /cards/view#from=<caller>&Token=<agent's token>. Browsers never send the "
    "fragment (after #): the page's script reads it, removes it from the address bar and "
    "posts it to POST /cards/view, so neither the token nor the caller is in a request line."
)

HISTORY = (
    "The connector's interaction ledger (kept [writeback] ledger_keep_days) merged with the "
    "Profile API's events on the card, each event once; source says which one it came from."
)
UNLINK = (
    "Records a `Flex - Profile Unlinked` track event (through the outbox, when write-back is "
    "on) and a ledger row; later lookups of this caller answer found: false with "
    'lookup.reason "unlinked" for that profile (Studio: status not_found).'
)


def _page(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


ADMIN_FORM = {
    "required": False,
    "content": {
        "application/x-www-form-urlencoded": {
            "schema": {
                "type": "object",
                "properties": {"Token": {"type": "string", "description": "A Flex admin's"}},
            }
        }
    },
}


def _admin_post(summary: str, answer: str) -> dict[str, Any]:
    """A POST of the admin's console's script: an HTML fragment, errors as fragments too."""
    return {
        "post": {
            "summary": summary,
            "description": "Only with the header X-Connector-Admin: 1 and, when an Origin is "
            "sent, this server's own (no cross-site requests).",
            "security": ADMIN_SECURITY,
            "requestBody": ADMIN_FORM,
            "responses": {
                "200": _page(answer),
                "401": _page("No, bad or expired credentials (WWW-Authenticate: Basic)"),
                "403": _page("Not the admin's credentials, or not the console's own request"),
                "413": _page("Body over 64 KB"),
                "429": _page("Too many failed authentications from this address"),
                "503": _page("Twilio's token check is unavailable"),
            },
        }
    }


def _form(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/x-www-form-urlencoded": {"schema": _ref(model)}},
    }


def _body(model: type[BaseModel]) -> dict[str, Any]:
    schema = _ref(model)
    return {
        "required": True,
        "content": {
            "application/json": {"schema": schema},
            "application/x-www-form-urlencoded": {"schema": schema},
        },
    }


LOOKUP_PARAMETERS = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": description,
    }
    for name, description in (
        (
            "from",
            "A channel address as Flex or Studio give it: +14155550123, whatsapp:+..., "
            "sms:..., tel:..., or an email",
        ),
        ("phone", "A phone number, in any national or international format"),
        ("email", "An email address"),
        ("identifier", "A Segment identifier, type:value"),
    )
]


@cache
def openapi_document() -> dict[str, Any]:
    _, definitions = models_json_schema(
        [(m, "serialization") for m in MODELS] + [(m, "validation") for m in INPUTS],
        ref_template=REF,
    )
    card = {
        "200": _json(ProfileCard, "The card (found: false when no profile matches)"),
        **_errors(400, *AUTH_ERRORS, 413, 415, 429, 502),
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Unified Profiles connector for Twilio Flex and Studio",
            "version": __version__,
        },
        "paths": {
            "/v1/cards": {
                "get": {
                    "summary": "The profile card of a caller, for Flex plugins",
                    "parameters": LOOKUP_PARAMETERS,
                    "responses": card,
                },
                "post": {
                    "summary": "The profile card of a caller, for Flex plugins",
                    "requestBody": _body(INPUTS[0]),
                    "responses": card,
                },
            },
            "/v1/cards/history": {
                method: {
                    "summary": "A caller's history past 14 days, and an engagement summary",
                    "description": HISTORY,
                    **inputs,
                    "responses": {
                        "200": _json(CardHistory, "Newest first; the same inputs as /v1/cards"),
                        **_errors(400, *AUTH_ERRORS, 413, 415, 429, 502),
                    },
                }
                for method, inputs in (
                    ("get", {"parameters": LOOKUP_PARAMETERS}),
                    ("post", {"requestBody": _body(INPUTS[0])}),
                )
            },
            "/v1/cards/unlink": {
                "post": {
                    "summary": "Not this customer: unlink the profile shown from this caller",
                    "description": UNLINK,
                    "requestBody": _body(INPUTS[2]),
                    "responses": {
                        "202": _json(Unlinked, "Recorded, and a correction event queued"),
                        "200": _json(Unlinked, "Recorded only: write-back is off"),
                        **_errors(400, *AUTH_ERRORS, 413, 415, 429),
                    },
                }
            },
            "/v1/studio/lookup": {
                "post": {
                    "summary": "A flat lookup for Studio's Make HTTP Request widget",
                    "requestBody": _body(INPUTS[0]),
                    "responses": {
                        "200": _json(StudioLookup, "Always 200 for a well-formed request"),
                        **_errors(400, *AUTH_ERRORS, 413, 415, 429),
                    },
                }
            },
            "/v1/events": {
                "post": {
                    "summary": "Write an interaction event back to Segment",
                    "requestBody": _body(INPUTS[1]),
                    "responses": {
                        "202": _json(EventAccepted, "Committed to the outbox"),
                        **_errors(400, *AUTH_ERRORS, 404, 413, 415, 429, 502),
                    },
                }
            },
            "/cards/view": {
                "get": {
                    "summary": "The card page for Flex's CRM container: a shell with no data",
                    "description": CARD_PAGE,
                    "security": [],
                    "responses": {
                        "200": _page("The shell; its script fetches the card"),
                        "400": _page("A token or a caller in the query string: refused"),
                    },
                },
                "post": {
                    "summary": "The card as an HTML fragment, for the card page's script",
                    "requestBody": _form(LookupRequest),
                    "responses": {
                        "200": _page("The card (or: no profile matches)"),
                        "400": _page("Nothing to look up"),
                        "401": _page("No, bad or expired token"),
                        "403": _page("A Flex role the connection does not allow"),
                        "413": _page("Body over 64 KB"),
                        "415": _page("A body that is not a form"),
                        "429": _page("This agent's lookup limit is reached"),
                        "503": _page("Segment, or Twilio's token check, is unavailable"),
                    },
                },
            },
            "/cards/view.js": {
                "get": {
                    "summary": "The card page's script",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "JavaScript",
                            "content": {"text/javascript": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "The process is alive (answered even when every thread is busy)",
                    "security": [],
                    "responses": {"200": _json(Health, "Alive")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "The connection is valid and Segment answers",
                    "description": "Without credentials (a load balancer's or Kubernetes' "
                    "probe): only `ready`; with them, the details.",
                    # {}: credentials are optional; those given are checked.
                    "security": [{}, *({name: []} for name in SECURITY_SCHEMES)],
                    "responses": {
                        "200": _either(ReadinessSummary, Readiness, "Ready"),
                        "503": _either(ReadinessSummary, Readiness, "Not ready"),
                        **_errors(401, 403),
                    },
                }
            },
            "/admin": {
                "get": {
                    "summary": "The admin's console: a shell with no data",
                    "description": "Open /admin#Token=<a Flex admin's token>, or sign in with "
                    "the admin's Basic credentials when the browser asks.",
                    "security": [],
                    "responses": {"200": _page("The shell; its script fetches the console")},
                },
                **_admin_post(
                    "The console as an HTML fragment: connection, health, outbox",
                    "The console",
                ),
            },
            "/admin.js": {
                "get": {
                    "summary": "The admin's console's script",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "JavaScript",
                            "content": {"text/javascript": {"schema": {"type": "string"}}},
                        }
                    },
                }
            },
            "/admin/test-connection": _admin_post(
                "Run connector check's steps and show each one's result", "The steps"
            ),
            "/admin/outbox/retry-dead": _admin_post(
                "Put every dead letter back in line", "The console, with what was done"
            ),
            "/admin/outbox/purge-dead": _admin_post(
                "Delete every dead letter", "The console, with what was done"
            ),
            "/metrics": {
                "get": {
                    "summary": "The connector's figures in Prometheus' text format",
                    "description": "Summed over gunicorn's workers under `connector serve`.",
                    "security": ADMIN_SECURITY,
                    "responses": {
                        "200": {
                            "description": "Prometheus' text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        **_errors(401, 403, 429, 503),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
        "security": [{name: []} for name in SECURITY_SCHEMES],
        "components": {
            "schemas": definitions["$defs"],
            "securitySchemes": {**SECURITY_SCHEMES, **ADMIN_SCHEMES},
        },
    }
