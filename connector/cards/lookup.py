"""One caller's profile from the Profile API: find it, then fetch its sections in parallel.

The first candidate identifier Segment knows wins. The match is the traits request itself, so a
cold lookup costs one round trip per candidate tried, then one for the other sections (and one
more for linked accounts' traits, started as soon as the links arrive).
"""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace
from typing import Any

from connector.cards.addresses import Address, Candidate, candidates
from connector.cards.profile import AccountData, OtherMatch, ProfileData
from connector.config.schema import NAME_TRAITS, ConnectionFile
from connector.errors import NoSlot, ProfileApiError, ProfileNotFound
from connector.segment.client import (
    OPENING_PATIENCE,
    PATIENT,
    SPECULATIVE,
    ProfileClient,
    encode_identifier,
)
from connector.segment.deadline import Deadline

SEGMENT_ID = re.compile(r"/profiles/((?:use|acc)_[A-Za-z0-9]+)/")
MAX_ACCOUNTS = 5
ACCOUNT_TRAITS_LIMIT = "20"


class ProfileLookup:
    def __init__(
        self, client: ProfileClient, config: ConnectionFile, executor: ThreadPoolExecutor
    ) -> None:
        self._client = client
        self._config = config
        self._executor = executor

    def fetch(self, address: Address, deadline: Deadline) -> ProfileData | None:
        """The profile for an address, or None when no candidate identifier is known.

        With `speculate` on (the default), the first candidate's sections are asked for with its
        traits whenever the space's pace has a free slot for each, so that a known caller's card
        takes two round trips (everything, then linked accounts' traits) instead of three; an
        unknown caller then costs a request per section. A section that found no free slot is
        asked for once the traits say the caller is known: speculation never waits for a slot,
        so in a storm it adds nothing to the queue. Later candidates are asked for their traits
        first.
        """
        speculate = self._config.lookup.speculate
        remaining = candidates(address, self._config.lookup)
        for n, candidate in enumerate(remaining):
            identifier = encode_identifier(candidate.type, candidate.value)
            first = n == 0
            ahead = (
                self._ask_sections(identifier, deadline, SPECULATIVE) if speculate and first else {}
            )
            found = False
            try:
                traits = self._client.get(
                    "users",
                    identifier,
                    "traits",
                    deadline,
                    self._trait_params(),
                    patience=OPENING_PATIENCE if first else PATIENT,
                )
                found = True
            except ProfileNotFound:
                continue
            finally:
                if not found:
                    _cancel(ahead)
            # The later candidates too, beside the sections: an address can lead to different
            # profiles (a number stored in two formats, on two people), and the agent must
            # choose rather than see the first. One request each; none with one candidate.
            later = remaining[n + 1 :] if self._config.lookup.all_matches else []
            others = self._ask_others(later, deadline)
            if ahead:
                self._ask_what_found_no_slot(ahead, identifier, deadline)
            sections = ahead or self._ask_sections(identifier, deadline, PATIENT)
            data = self._complete(candidate, traits, sections, deadline)
            return replace(data, other_matches=_other_matches(others, data.segment_id, deadline))
        return None

    def _ask_others(
        self, others: list[Candidate], deadline: Deadline
    ) -> dict[Candidate, Future[dict[str, Any]]]:
        names = {"include": ",".join(NAME_TRAITS), "limit": "10"}
        return {
            candidate: self._executor.submit(
                self._client.get,
                "users",
                encode_identifier(candidate.type, candidate.value),
                "traits",
                deadline,
                names,
            )
            for candidate in others
        }

    def fingerprint(self, base_url: str, space_id: str) -> str:
        """What the fetched data depends on: where it comes from, the identifiers tried and the
        parameters of every section. Cards are cached under it, so an edit of labels, formats or
        order (rendered on the way out) keeps every cached card, and an edit of what is fetched
        leaves the old entries unused."""
        lookup = self._config.lookup
        depends_on = {
            "source": [base_url, space_id],
            "candidates": [
                lookup.phone_identifiers,
                lookup.phone_formats,
                lookup.email_identifiers,
            ],
            "traits": self._trait_params(),
            "sections": self._sections(),
            "all_matches": lookup.all_matches,
        }
        text = json.dumps(depends_on, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def _trait_params(self) -> dict[str, str]:
        keys = [t.key for t in self._config.traits]
        if not keys:
            return {"limit": "200"}
        wanted = dict.fromkeys([*keys, *NAME_TRAITS, *self._config.card.since_traits])
        return {"include": ",".join(wanted), "limit": "200"}

    def _ask_sections(
        self, identifier: str, deadline: Deadline, patience: float
    ) -> dict[str, Future[dict[str, Any]]]:
        """Every section's request, on the executor."""
        return {
            name: self._executor.submit(self._section, identifier, path, params, deadline, patience)
            for name, (path, params) in self._sections().items()
        }

    def _section(
        self,
        identifier: str,
        path: str,
        params: dict[str, str],
        deadline: Deadline,
        patience: float,
    ) -> dict[str, Any]:
        try:
            return self._client.get("users", identifier, path, deadline, params, patience)
        except NoSlot:
            if patience != SPECULATIVE:
                raise
            return NOT_ASKED

    def _ask_what_found_no_slot(
        self, speculative: dict[str, Future[dict[str, Any]]], identifier: str, deadline: Deadline
    ) -> None:
        """The speculative sections that found no free slot, asked for now that the caller is
        known (in a storm: as if there were no speculation)."""
        sections = self._sections()
        for name, future in speculative.items():
            try:
                body = future.result(timeout=deadline.remaining())
            except (ProfileApiError, FutureTimeout):
                continue  # its own error, reported when the card is put together
            if body is NOT_ASKED:
                path, params = sections[name]
                speculative[name] = self._executor.submit(
                    self._section, identifier, path, params, deadline, PATIENT
                )

    def _complete(
        self,
        candidate: Candidate,
        traits: dict[str, Any],
        futures: dict[str, Future[dict[str, Any]]],
        deadline: Deadline,
    ) -> ProfileData:
        missing: list[str] = []
        # Links first: the accounts' traits can be on their way while the rest arrives.
        links = _result(futures.pop("links"), deadline, "links", missing)
        account_futures = self._request_accounts(links, deadline)
        results = {
            name: _result(future, deadline, name, missing) for name, future in futures.items()
        }
        accounts = self._collect_accounts(account_futures, deadline, missing)
        return ProfileData(
            matched=str(candidate),
            segment_id=_segment_id(traits),
            traits=_dict(traits.get("traits")),
            audiences=_dict((results.get("audiences") or {}).get("traits")),
            computed_traits=_dict((results.get("computed_traits") or {}).get("traits")),
            external_ids=_list((results.get("external_ids") or {}).get("data")),
            events=_list((results.get("events") or {}).get("data")),
            accounts=accounts,
            missing=tuple(missing),
        )

    def _sections(self) -> dict[str, tuple[str, dict[str, str]]]:
        config = self._config
        audiences = {"class": "audience", "limit": "200"}
        computed = {"class": "computed_trait", "limit": "200"}
        if config.audiences:
            audiences["include"] = ",".join(a.key for a in config.audiences)
        if config.computed_traits:
            computed["include"] = ",".join(c.key for c in config.computed_traits)
        sections = {
            "audiences": ("traits", audiences),
            "computed_traits": ("traits", computed),
            "external_ids": ("external_ids", {"limit": "100"}),
            "links": ("links", {}),
        }
        if config.identifiers:
            sections["external_ids"][1]["include"] = ",".join(i.type for i in config.identifiers)
        if config.lookup.events_limit:
            sections["events"] = ("events", {"limit": str(config.lookup.events_limit)})
        return sections

    def _request_accounts(
        self, links: dict[str, Any] | None, deadline: Deadline
    ) -> dict[str, Future[dict[str, Any]]]:
        group_ids = [
            e["id"]
            for link in _list((links or {}).get("data"))
            if link.get("to_collection") == "accounts"
            for e in _list(link.get("external_ids"))
            if e.get("type") == "group_id" and isinstance(e.get("id"), str)
        ]
        return {
            g: self._executor.submit(
                self._client.get,
                "accounts",
                encode_identifier("group_id", g),
                "traits",
                deadline,
                {"limit": ACCOUNT_TRAITS_LIMIT},
            )
            for g in group_ids[:MAX_ACCOUNTS]
        }

    @staticmethod
    def _collect_accounts(
        futures: dict[str, Future[dict[str, Any]]], deadline: Deadline, missing: list[str]
    ) -> list[AccountData]:
        accounts = []
        for group_id, future in futures.items():
            body = _result(future, deadline, "accounts", missing)
            if body is not None:
                accounts.append(AccountData(group_id, _dict(body.get("traits"))))
        return accounts


# A speculative section that found no free slot (compared by identity).
NOT_ASKED: dict[str, Any] = {}


def _cancel(futures: dict[str, Future[dict[str, Any]]]) -> None:
    """Requests not yet started are not sent; those under way finish unread."""
    for future in futures.values():
        future.cancel()


def _result(
    future: Future[dict[str, Any]], deadline: Deadline, name: str, missing: list[str]
) -> dict[str, Any] | None:
    """A section's body; a section Segment could not give is left empty and named as missing."""
    try:
        return future.result(timeout=deadline.remaining())
    except ProfileNotFound:
        return None  # merged away between requests: nothing to show, nothing wrong
    except (ProfileApiError, FutureTimeout):
        future.cancel()
        if name not in missing:
            missing.append(name)
        return None


def _other_matches(
    futures: dict[Candidate, Future[dict[str, Any]]], first: str | None, deadline: Deadline
) -> tuple[OtherMatch, ...]:
    """Profiles other than the first that later candidates found (one each), in their order.
    A candidate Segment could not answer for in time is left out: the card still shows."""
    found: dict[str | None, OtherMatch] = {}
    for candidate, future in futures.items():
        try:
            body = future.result(timeout=deadline.remaining())
        except (ProfileApiError, FutureTimeout):
            future.cancel()
            continue
        segment_id = _segment_id(body)
        if segment_id != first and segment_id not in found:
            found[segment_id] = OtherMatch(str(candidate), segment_id, _dict(body.get("traits")))
    return tuple(found.values())


def _segment_id(traits_body: dict[str, Any]) -> str | None:
    url = (traits_body.get("cursor") or {}).get("url")
    match = SEGMENT_ID.search(url) if isinstance(url, str) else None
    return match[1] if match else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []
