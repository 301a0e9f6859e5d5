"""Segment's Profile API, as `reference/004_*.txt` documents it, over the sandbox's store."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import unquote_to_bytes, urlencode

from flask import Blueprint, Response, current_app, jsonify, request

from connector.sandbox.core import Sandbox
from connector.sandbox.ingest import micros, utc_now
from connector.sandbox.rules import COLLECTIONS, Identifier
from connector.sandbox.store import Profile, external_ids_of
from connector.sandbox.wsgi import SegmentError, basic_user, raw_path
from connector.timestamps import parse_timestamp

ROUTE = re.compile(
    r"^/v1/spaces/(?P<space>[^/]*)/collections/(?P<collection>[^/]*)"
    r"/profiles/(?P<id>[^/]*)/(?P<section>[^/]*)$"
)
NOT_COLLECTION_CHARS = re.compile(r"[^a-z0-9_]")
NOT_TYPE_CHARS = re.compile(r"[^a-z0-9_.\-]")
MAX_ID_LENGTH = 1024
# (default, maximum) of `limit` per list; traits are documented as 10 by default and up to 200.
LIMITS = {"traits": (10, 200), "external_ids": (25, 100), "events": (10, 100), "links": (20, 20)}
TRAIT_CLASSES = {
    None: ("trait", "audience", "computed_trait"),
    "audience": ("audience",),
    "computed_trait": ("computed_trait",),
}

profile_api = Blueprint("profile", __name__)

Section = Callable[[Sandbox, Profile], dict[str, Any]]


@profile_api.get("/v1/spaces/<path:_rest>")
def profile_route(_rest: str) -> Response:
    sandbox: Sandbox = current_app.extensions["sandbox"]
    return jsonify(_answer(sandbox, ROUTE.match(raw_path())))


@profile_api.after_request
def count(response: Response) -> Response:
    """Count every request that reached the Profile API, faulted ones included."""
    sandbox: Sandbox = current_app.extensions["sandbox"]
    match = ROUTE.match(raw_path())
    section = match["section"] if match and match["section"] in SECTIONS else "unknown"
    # by section, and by the identifier exactly as the client sent it
    sandbox.stats.profile_request(section, response.status_code, match["id"] if match else None)
    return response


def _answer(sandbox: Sandbox, match: re.Match[str] | None) -> dict[str, Any]:
    if basic_user() != (sandbox.config.token, ""):
        raise SegmentError(
            401, "authentication_error", "Failure to properly authenticate yourself in the request."
        )
    if match is None or match["section"] not in SECTIONS:
        raise SegmentError(404, "not_found", "The requested route was not found.")
    if _decode(match["space"], "space_id") != sandbox.config.space_id:
        raise SegmentError(404, "not_found", "Space was not found.")
    sandbox.stats.judged()
    if not sandbox.limiter.allow(sandbox.config.space_id):
        raise SegmentError(429, "rate_limit_error", "Too many requests hit the API too quickly.")
    collection = _collection(_decode(match["collection"], "collection"))
    profile = sandbox.store.find(collection, _identifier(match["id"], collection))
    if profile is None:
        raise SegmentError(404, "not_found", "Profile was not found.")
    return SECTIONS[match["section"]](sandbox, profile)


def _decode(raw: str, name: str) -> str:
    """Percent-decode one path segment; a raw `+` reads as a space, as it does at Segment."""
    try:
        return unquote_to_bytes(raw.replace("+", " ")).decode("utf-8")
    except UnicodeDecodeError:
        raise SegmentError(
            400, "validation_error", f"The parameter `{name}` is not valid UTF-8."
        ) from None


def _collection(name: str) -> str:
    bad = "".join(dict.fromkeys(NOT_COLLECTION_CHARS.findall(name)))
    if bad or not name:
        raise SegmentError(
            400, "validation_error", f"The parameter `collection` has invalid character(s) `{bad}`"
        )
    if name not in COLLECTIONS:
        raise SegmentError(404, "not_found", "Collection was not found.")
    return name


def _identifier(raw: str, collection: str) -> Identifier | str:
    """`type:value` (value matched lowercase) or a segment id such as `use_...`."""
    text = _decode(raw, "id")
    if len(text) > MAX_ID_LENGTH:
        raise SegmentError(
            400,
            "validation_error",
            f"The parameter `id` must be at most {MAX_ID_LENGTH} characters.",
        )
    if ":" not in text:
        if not text:
            raise SegmentError(400, "validation_error", "The parameter `id` must not be empty.")
        return text
    type_, value = text.split(":", 1)
    type_ = type_.lower()
    bad = "".join(dict.fromkeys(NOT_TYPE_CHARS.findall(type_)))
    if bad or not type_:
        raise SegmentError(
            400, "validation_error", f"The parameter `id_type` has invalid character(s) `{bad}`"
        )
    if not value:
        raise SegmentError(
            400, "validation_error", "The parameter `id` must have a value after `type:`."
        )
    return Identifier(collection, type_, value.lower())


# --- query parameters ----------------------------------------------------------------------


def _limit(section: str) -> int:
    default, maximum = LIMITS[section]
    raw = request.args.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise SegmentError(
            400,
            "validation_error",
            f"The parameter `limit` must be an integer between 1 and {maximum}.",
        )
    return int(raw)


def _verbose() -> bool:
    raw = request.args.get("verbose", "false").lower()
    if raw not in ("true", "false"):
        raise SegmentError(
            400, "validation_error", "The parameter `verbose` must be true or false."
        )
    return raw == "true"


def _names(name: str) -> list[str] | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    names = [part.strip() for part in raw.split(",") if part.strip()]
    return names or None


def _time(name: str) -> datetime | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    moment = parse_timestamp(raw)
    if moment is None:
        raise SegmentError(
            400, "validation_error", f"The parameter `{name}` must be an ISO 8601 date or time."
        )
    return moment


def _bad_cursor() -> SegmentError:
    return SegmentError(400, "invalid_request_error", "The parameter `next` is not a valid cursor.")


def _cursor(
    profile: Profile, rows: list[Any], limit: int, encode: Callable[[Any], str]
) -> dict[str, Any]:
    """Segment's cursor: `next` indexes the first item of the next page; `url` names the
    profile by its segment id, as in Segment's own examples."""
    has_more = len(rows) > limit
    next_value = encode(rows[limit]) if has_more else ""
    query = {k: v for k, v in request.args.items() if k != "next"}
    profiles, _, section = raw_path().rsplit("/", 2)
    url = f"{profiles}/{profile.id}/{section}"
    if has_more:
        url += "?" + urlencode({**query, "next": next_value})
    return {"url": url, "has_more": has_more, "next": next_value, "limit": limit}


# --- sections ------------------------------------------------------------------------------


def traits(sandbox: Sandbox, profile: Profile) -> dict[str, Any]:
    limit, verbose = _limit("traits"), _verbose()
    trait_class = request.args.get("class")
    if trait_class not in TRAIT_CLASSES:
        raise SegmentError(
            400, "validation_error", "The parameter `class` must be audience or computed_trait."
        )
    rows = sandbox.store.traits(
        profile.id,
        TRAIT_CLASSES[trait_class],
        _names("include"),
        request.args.get("next"),
        limit + 1,
    )
    page = {
        key: ({"value": value, "source_id": source, "updated_at": updated} if verbose else value)
        for key, value, source, updated in rows[:limit]
    }
    return {"traits": page, "cursor": _cursor(profile, rows, limit, lambda row: row[0])}


def external_ids(sandbox: Sandbox, profile: Profile) -> dict[str, Any]:
    limit = _limit("external_ids")
    _verbose()
    start = _decode_map_cursor(request.args.get("next"))
    rows = sandbox.store.external_ids(profile.id, _names("include"), start, limit + 1)
    return {
        "data": [entry for _, entry in rows[:limit]],
        "cursor": _cursor(profile, rows, limit, lambda row: f"map_{row[0]}"),
    }


def _decode_map_cursor(raw: str | None) -> int:
    if raw is None:
        return 0
    number = raw.removeprefix("map_")
    if not raw.startswith("map_") or not number.isdigit():
        raise _bad_cursor()
    return int(number)


def events(sandbox: Sandbox, profile: Profile) -> dict[str, Any]:
    limit = _limit("events")
    sort = request.args.get("sort", "desc").lower()
    if sort not in ("asc", "desc"):
        raise SegmentError(400, "validation_error", "The parameter `sort` must be asc or desc.")
    window_start = utc_now() - sandbox.config.event_window
    start, end = _time("start"), _time("end")
    since = max(window_start, start) if start else window_start
    rows = sandbox.store.events(
        profile.id,
        since=micros(since),
        until=micros(end) if end else None,
        names_in=_names("include"),
        names_out=_names("exclude"),
        start=_decode_event_cursor(request.args.get("next")),
        descending=sort == "desc",
        limit=limit + 1,
    )
    data = [{**body, "related": {profile.collection: profile.id}} for _, _, body in rows[:limit]]
    return {"data": data, "cursor": _cursor(profile, rows, limit, _encode_event_cursor)}


def _encode_event_cursor(row: tuple[int, str, Any]) -> str:
    return base64.urlsafe_b64encode(f"{row[0]}::{row[1]}".encode()).decode()


def _decode_event_cursor(raw: str | None) -> tuple[int, str] | None:
    if raw is None:
        return None
    try:
        ts, sep, message_id = base64.urlsafe_b64decode(raw.encode()).decode().partition("::")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _bad_cursor() from None
    if not sep or not ts.isdigit():
        raise _bad_cursor()
    return int(ts), message_id


def metadata(sandbox: Sandbox, profile: Profile) -> dict[str, Any]:
    _verbose()
    return {"metadata": sandbox.store.metadata(profile.id)}


def links(sandbox: Sandbox, profile: Profile) -> dict[str, Any]:
    limit = _limit("links")
    other = "accounts" if profile.collection == "users" else "users"
    ids = sandbox.store.links(profile, request.args.get("next"), limit + 1)
    data = [
        {"to_collection": other, "external_ids": external_ids_of(sandbox.store, linked)}
        for linked in ids[:limit]
    ]
    return {"data": data, "cursor": _cursor(profile, ids, limit, str)}


SECTIONS: dict[str, Section] = {
    "traits": traits,
    "external_ids": external_ids,
    "events": events,
    "metadata": metadata,
    "links": links,
}
