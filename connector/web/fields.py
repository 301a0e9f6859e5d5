"""What a request says about its caller, read the same way by every route.

The caller fields (`from` or Twilio's `From`, `phone`, `email`, `identifier`) come from the query
string and from the body (a form, Studio's default, or a JSON object). A field given more than
once must say the same thing each time: conflicting copies are a 400, never "last one wins".
Twilio's and Flex's envelope fields (ENVELOPE_FIELDS) are accepted and ignored by every route,
so a Studio widget can send one set of parameters to the lookup and to the events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import request
from werkzeug.datastructures import MultiDict

from connector.cards.addresses import Address, Caller, CallerField, InvalidAddress, read_caller
from connector.errors import BadRequest, UnsupportedMediaType
from connector.logs import caller_hash
from connector.web.registry import connection

ARRIVED = "connector.arrived"  # environ key: time.monotonic() when its headers were in
MAX_BODY_BYTES = 64 * 1024  # any framing (connector.web.body_limit); Studio's own limit too
FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# Events carry properties and traits; Segment's own payloads rarely nest past a handful of levels.
MAX_JSON_DEPTH = 32
# The names each caller field is accepted under; Studio flows pass Twilio's own `From`.
CALLER_ALIASES: dict[CallerField, tuple[str, ...]] = {
    "from": ("from", "From"),
    "phone": ("phone",),
    "email": ("email",),
    "identifier": ("identifier",),
}
CALLER_NAMES = frozenset(alias for aliases in CALLER_ALIASES.values() for alias in aliases)
# Fields of Twilio's webhooks, Studio's flow and execution, and Flex, that integrators copy from
# one widget to the next: the gate reads `Token` and `FlowSid`; the rest is ignored everywhere.
ENVELOPE_FIELDS = frozenset(
    {
        "Token",
        "FlowSid",
        "ExecutionSid",
        "StepSid",
        "AccountSid",
        "ApiVersion",
        "Channel",
        "Direction",
        "To",
        "Caller",
        "Called",
        "CallerName",
        "ForwardedFrom",
        "CallSid",
        "ParentCallSid",
        "CallToken",
        "CallStatus",
        "MessageSid",
        "SmsSid",
        "SmsMessageSid",
        "SmsStatus",
        "MessagingServiceSid",
        "NumMedia",
        "NumSegments",
        "ProfileName",
        "WaId",
        "ChannelSid",
        "ConversationSid",
        "InteractionSid",
        "TaskSid",
        "WorkerSid",
        "WorkspaceSid",
        *(
            f"{party}{place}"
            for party in ("From", "To", "Caller", "Called")
            for place in ("City", "State", "Zip", "Country")
        ),
    }
)
NAME_ONE = "Give exactly one of from, phone, email or identifier."


@dataclass(frozen=True)
class CallerFields:
    """The caller fields a request gave, one value each (conflicting copies already refused)."""

    given: Mapping[CallerField, str]

    def one(self) -> tuple[CallerField, str]:
        if len(self.given) != 1:
            raise BadRequest(NAME_ONE)
        ((field, raw),) = self.given.items()
        return field, raw

    def for_event(self, subscriptions: bool) -> tuple[CallerField, str]:
        """An event's caller. In a subscriptions call `phone` and `email` are also the channels
        to subscribe (the Segment Profiles destination's fields), so beside them the caller
        may be named by `from` or `identifier`."""
        if subscriptions:
            named: dict[CallerField, str] = {
                f: v for f, v in self.given.items() if f in ("from", "identifier")
            }
            if named:
                return CallerFields(named).one()
            if len(self.given) > 1:
                raise BadRequest(
                    "A subscriptions call that gives both email and phone names its caller "
                    "with from or identifier."
                )
        return self.one()


def caller_fields() -> CallerFields:
    """The caller fields of the query string and, for a POST, of the body."""
    sources: list[Mapping[str, Any]] = [request.args]
    if request.method == "POST":
        sources.append(body_fields())
    given: dict[CallerField, str] = {}
    for field, aliases in CALLER_ALIASES.items():
        values = {v for source in sources for alias in aliases for v in _values(source, alias)}
        if len(values) > 1:
            raise BadRequest(
                f"The caller field {field} is given more than once with different values "
                f"({' or '.join(aliases)}, in the query string or the body); give it once."
            )
        if values:
            given[field] = values.pop()
    return CallerFields(given)


def _values(source: Mapping[str, Any], name: str) -> list[str]:
    """Every value of a field: a query string or a form may repeat one."""
    if isinstance(source, MultiDict):
        return list(source.getlist(name))
    value = source.get(name)
    if value is None:
        return []
    if not isinstance(value, str):
        raise BadRequest(f"The field {name} must be a string.")
    return [value]


def arrival() -> float | None:
    """When the request arrived (monotonic), if the server in front recorded it
    (connector.serving.bridge): a request that waited for a thread has that much less time."""
    arrived = request.environ.get(ARRIVED)
    return arrived if isinstance(arrived, float) else None


def lookup_caller(default_country: str) -> tuple[Caller, str]:
    """The one caller a lookup names, with the text the request gave for it."""
    field, raw = caller_fields().one()
    return parse_caller(field, raw, default_country), raw


def parse_caller(field: CallerField, raw: str, default_country: str) -> Caller:
    """One caller field, parsed; a 400 for malformed input."""
    try:
        return read_caller(field, raw, default_country)
    except InvalidAddress as error:
        raise BadRequest(f"The {field} given is {error}.") from None


def hashed_caller(caller: Caller, raw: str) -> str:
    """The caller as the audit trail and the logs name them: a keyed hash (connector.logs)."""
    key = caller.cache_key if isinstance(caller, Address) else caller.key(raw)
    return caller_hash(key, connection().token)


def other_fields() -> dict[str, Any]:
    """A POST body's fields but the caller's and the envelope's, one value each."""
    fields = body_fields()
    if isinstance(fields, MultiDict):
        repeated = [name for name, values in fields.lists() if len(set(values)) > 1]
        if repeated:
            raise BadRequest("A form field is given more than once with different values.")
    return {
        name: value
        for name, value in fields.items()
        if name not in CALLER_NAMES and name not in ENVELOPE_FIELDS
    }


def body_fields() -> Mapping[str, Any]:
    """A POST body's fields: a JSON object, or a form (Studio's default)."""
    if request.is_json:
        return json_object()
    if request.mimetype in FORM_TYPES or not (request.mimetype or request.content_length):
        return request.form
    raise UnsupportedMediaType(
        "Send the body as a form (application/x-www-form-urlencoded) or as JSON (application/json)."
    )


def tolerant_body() -> Mapping[str, Any]:
    """A POST body's fields as far as they can be read, else none: what the gate looks in for
    credentials before the route refuses a malformed body with a clear 400 or 415."""
    if request.method != "POST":
        return {}
    if request.is_json:
        body = _parsed_json()
        return body if isinstance(body, dict) else {}
    return request.form


def json_object() -> dict[str, Any]:
    body = _parsed_json()
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    if nesting_depth(body) > MAX_JSON_DEPTH:
        raise BadRequest(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
    return body


def _parsed_json() -> object:
    """The JSON body, parsed once per request (Flask caches it); None when it is not JSON."""
    try:
        return request.get_json(silent=True)
    except RecursionError:  # nested past the interpreter's limit
        return None


def nesting_depth(value: Any) -> int:
    """How deeply objects and arrays nest in a parsed JSON value (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            deepest = max(deepest, depth)
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return deepest
