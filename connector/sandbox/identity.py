"""Unify's matching algorithm over an identity graph: create, add to, or merge profiles."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from connector.sandbox.rules import Identifier, IdentityRules


class IdentityGraph(Protocol):
    """What resolution needs to read from the store."""

    def profiles_holding(self, identifiers: Sequence[Identifier]) -> list[str]:
        """Ids of the profiles holding any of these identifiers, oldest profile first."""
        ...

    def identifiers_of(self, profile_id: str) -> list[Identifier]: ...


@dataclass(frozen=True)
class Resolution:
    """The outcome for one message.

    `profiles` empty means create a new profile; one means add to it; several means merge them
    into the first (the oldest). `identifiers` are the message's identifiers to attach, and
    `dropped` the ones left out to keep every type within its limit.
    """

    profiles: list[str]
    identifiers: list[Identifier]
    dropped: list[Identifier]


def resolve(
    candidates: Sequence[Identifier], graph: IdentityGraph, rules: IdentityRules
) -> Resolution:
    """Match a message's identifiers against the graph, dropping low-priority ones to fit limits."""
    kept = list(candidates)
    dropped: list[Identifier] = []
    while kept:
        matched = graph.profiles_holding(kept)
        existing = [i for profile in matched for i in graph.identifiers_of(profile)]
        if _within_limits([*existing, *kept], rules):
            return Resolution(matched, kept, dropped)
        lowest = max(rules.priority(i.type) for i in kept)
        dropped += [i for i in kept if rules.priority(i.type) == lowest]
        kept = [i for i in kept if rules.priority(i.type) != lowest]
    return Resolution([], [], dropped)


def _within_limits(identifiers: Iterable[Identifier], rules: IdentityRules) -> bool:
    per_type = Counter(i.type for i in set(identifiers))
    return all(count <= rules.limit(type_) for type_, count in per_type.items())
