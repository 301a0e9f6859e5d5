"""`/openapi.json`: the connector's HTTP interface, generated from the pydantic models it serves."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from connector import __version__
from connector.models import (
    ErrorBody,
    EventAccepted,
    Health,
    LookupRequest,
    ProfileCard,
    Readiness,
    StudioLookup,
)
from connector.writeback import EventRequest

REF = "#/components/schemas/{model}"
MODELS: list[type[BaseModel]] = [
    ProfileCard,
    StudioLookup,
    EventAccepted,
    Health,
    Readiness,
    ErrorBody,
]
INPUTS: list[type[BaseModel]] = [LookupRequest, EventRequest]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*statuses: int) -> dict[str, Any]:
    reasons = {
        400: "Bad input",
        403: "Forbidden",
        404: "Not found",
        413: "Body over 64 KB",
        502: "Segment refused the connector",
        503: "Segment is unavailable",
    }
    return {str(s): _json(ErrorBody, reasons[s]) for s in statuses}


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
        **_errors(400, 413, 502, 503),
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
                    "requestBody": _body(LookupRequest),
                    "responses": card,
                },
            },
            "/v1/studio/lookup": {
                "post": {
                    "summary": "A flat lookup for Studio's Make HTTP Request widget",
                    "requestBody": _body(LookupRequest),
                    "responses": {
                        "200": _json(StudioLookup, "Always 200 for a well-formed request"),
                        **_errors(400, 413),
                    },
                }
            },
            "/v1/events": {
                "post": {
                    "summary": "Write an interaction event back to Segment",
                    "requestBody": _body(EventRequest),
                    "responses": {
                        "202": _json(EventAccepted, "Committed to the outbox"),
                        **_errors(400, 403, 404, 413, 503),
                    },
                }
            },
            "/healthz": {
                "get": {
                    "summary": "The process is alive",
                    "responses": {"200": _json(Health, "Alive")},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "The connection is valid and Segment answers",
                    "responses": {
                        "200": _json(Readiness, "Ready"),
                        "503": _json(Readiness, "Not ready"),
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "responses": {"200": {"description": "OpenAPI 3.1"}},
                }
            },
        },
        "components": {"schemas": definitions["$defs"]},
    }
