"""ProfileLookup against httpx.MockTransport: which requests a cold card makes, and when."""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import httpx
import pytest
from pydantic import SecretStr

from connector.cards.addresses import parse_phone
from connector.cards.lookup import ProfileLookup
from connector.config.schema import ConnectionFile
from connector.segment.client import ProfileClient, build_http_client
from connector.segment.deadline import Deadline
from connector.state.pacing import LocalPacer
from tests.unit.connection import PROFILE_API_URL, PROFILE_TOKEN, SPACE, connection_toml

KNOWN = "+14155550123"
SECTIONS = {"traits", "audiences", "computed_traits", "external_ids", "events", "links"}


class Segment:
    """A Profile API that knows one phone; it holds the answer to an E.164 number's traits until
    every section of that identifier has been asked for (or 0.5 s went by), and notes what it
    had seen by then."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []  # (section, identifier)
        self.seen_before_traits: set[str] = set()
        self._lock = threading.Lock()
        self._all_asked = threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        parts = unquote(request.url.path).split("/")
        collection, identifier, path = parts[-4], parts[-2], parts[-1]
        section = {"audience": "audiences", "computed_trait": "computed_traits"}.get(
            request.url.params.get("class", ""), path
        )
        with self._lock:
            self.requests.append((section, identifier))
            if {s for s, i in self.requests if i == identifier} >= SECTIONS:
                self._all_asked.set()
        if section == "traits" and collection == "users" and identifier.startswith("phone:+"):
            self._all_asked.wait(0.5)
            with self._lock:
                self.seen_before_traits = {s for s, _ in self.requests}
        if identifier != f"phone:{KNOWN}":
            return httpx.Response(404, json={"error": {"code": "not_found", "message": "no"}})
        if section == "traits" and collection == "users":
            return httpx.Response(200, json={"traits": {"name": "Ada"}, "cursor": {}})
        if section == "links":
            return httpx.Response(200, json={"data": []})
        return httpx.Response(200, json={"traits": {}, "data": []})


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(8) as pool:
        yield pool


def lookup_with(
    segment: Segment,
    executor: ThreadPoolExecutor,
    pacer: LocalPacer | None = None,
    **lookup: object,
) -> ProfileLookup:
    file = tomllib.loads(connection_toml())
    # all_matches off: these tests count the requests of speculation alone.
    settings = {"phone_formats": ["e164", "national"], "all_matches": False, **lookup}
    file.setdefault("lookup", {}).update(settings)
    config = ConnectionFile.model_validate(file)
    http = build_http_client(httpx.MockTransport(segment))
    pace = pacer or LocalPacer(100)
    client = ProfileClient(http, PROFILE_API_URL, SPACE, SecretStr(PROFILE_TOKEN), pace)
    return ProfileLookup(client, config, executor)


def test_a_known_callers_sections_are_asked_for_with_the_traits(
    executor: ThreadPoolExecutor,
) -> None:
    segment = Segment()
    profile = lookup_with(segment, executor).fetch(parse_phone(KNOWN, "US"), Deadline(4.0))
    assert profile is not None and profile.traits == {"name": "Ada"}
    assert segment.seen_before_traits == SECTIONS  # one round trip for all of them
    assert len(segment.requests) == len(SECTIONS)


def test_without_speculation_the_sections_wait_for_the_traits(
    executor: ThreadPoolExecutor,
) -> None:
    segment = Segment()
    profile = lookup_with(segment, executor, speculate=False).fetch(
        parse_phone(KNOWN, "US"), Deadline(4.0)
    )
    assert profile is not None
    assert segment.seen_before_traits == {"traits"}
    assert len(segment.requests) == len(SECTIONS)


@pytest.mark.parametrize(("speculate", "cost"), [(True, len(SECTIONS) + 1), (False, 2)])
def test_what_an_unknown_caller_costs(
    executor: ThreadPoolExecutor, speculate: bool, cost: int
) -> None:
    """Two candidates (E.164, national): with speculation, the first one's every section, then
    the second one's traits; without, one request per candidate."""
    segment = Segment()
    profile = lookup_with(segment, executor, speculate=speculate).fetch(
        parse_phone("+14155559876", "US"), Deadline(4.0)
    )
    assert profile is None
    assert len(segment.requests) == cost
    assert [s for s, i in segment.requests if "415" in i and "+" not in i] == ["traits"]


def busy_pace() -> LocalPacer:
    """A pace with a queue: every request waits a little for its slot (a storm)."""
    pacer = LocalPacer(100)
    while pacer.reserve(SPACE, 10.0)[0] < 0.1:
        pass
    return pacer


def test_in_a_storm_speculation_costs_an_unknown_caller_nothing(
    executor: ThreadPoolExecutor,
) -> None:
    segment = Segment()
    lookup = lookup_with(segment, executor, busy_pace())
    assert lookup.fetch(parse_phone("+14155559876", "US"), Deadline(4.0)) is None
    assert len(segment.requests) == 2  # each candidate's traits, nothing else


def test_in_a_storm_a_known_callers_sections_follow_the_traits(
    executor: ThreadPoolExecutor,
) -> None:
    segment = Segment()
    profile = lookup_with(segment, executor, busy_pace()).fetch(
        parse_phone(KNOWN, "US"), Deadline(4.0)
    )
    assert profile is not None and profile.missing == ()
    assert sorted(s for s, _ in segment.requests) == sorted(SECTIONS)
