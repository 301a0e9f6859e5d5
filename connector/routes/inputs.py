"""Who to look up, from a query string, a form (Studio's default) or a JSON object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import request

from connector.audit import note_caller
from connector.bridge import ARRIVED
from connector.errors import BadRequest, UnsupportedMediaType
from connector.logs import caller_hash
from connector.resolve import Address, InvalidAddress, parse_email, parse_from, parse_identifier
from connector.resolve import parse_phone as _parse_phone
from connector.service import current_service

FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data"})
# Events carry properties and traits; Segment's own payloads rarely nest past a handful of levels.
MAX_JSON_DEPTH = 32
# Accepted names of each input; Studio flows often pass Twilio's own `From`.
FIELDS = {
    "from": ("from", "From"),
    "phone": ("phone",),
    "email": ("email",),
    "identifier": ("identifier",),
}


def arrival() -> float | None:
    """When the request arrived (monotonic), if the server in front recorded it
    (connector.bridge): a request that waited for a thread has that much less time."""
    arrived = request.environ.get(ARRIVED)
    return arrived if isinstance(arrived, float) else None


def lookup_address(default_country: str) -> tuple[Address, str]:
    """The one address a request names, with the text the caller gave for it."""
    given = _fields()
    if len(given) != 1:
        raise BadRequest("Give exactly one of from, phone, email or identifier.")
    ((name, raw),) = given.items()
    return parse_address(name, raw, default_country), raw


def parse_address(name: str, raw: str, default_country: str) -> Address:
    """One caller field (`from`, `phone`, `email` or `identifier`); a 400 when it names no one."""
    parsers = {
        "from": lambda text: parse_from(text, default_country),
        "phone": lambda text: _parse_phone(text, default_country),
        "email": parse_email,
        "identifier": parse_identifier,
    }
    try:
        address = parsers[name](raw)
    except InvalidAddress as error:
        raise BadRequest(f"The {name} given is {error}.") from None
    note_caller(caller_hash(address.cache_key, current_service().holder.current().token))
    return address


def _fields() -> dict[str, str]:
    sources: list[Any] = [request.args]
    if request.method == "POST":
        sources.append(body_fields())
    found: dict[str, str] = {}
    for name, aliases in FIELDS.items():
        for source in sources:
            for alias in aliases:
                value = source.get(alias)
                if value is None:
                    continue
                if not isinstance(value, str):
                    raise BadRequest(f"The field {name} must be a string.")
                found[name] = value
    return found


def body_fields() -> Mapping[str, Any]:
    """A POST body's fields: a JSON object, or a form (Studio's default)."""
    if request.is_json:
        return json_object()
    if request.mimetype in FORM_TYPES or not (request.mimetype or request.content_length):
        return request.form
    raise UnsupportedMediaType(
        "Send the body as a form (application/x-www-form-urlencoded) or as JSON (application/json)."
    )


def json_object() -> dict[str, Any]:
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # nested past the interpreter's limit
        body = None
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.")
    if nesting_depth(body) > MAX_JSON_DEPTH:
        raise BadRequest(f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.")
    return body


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
