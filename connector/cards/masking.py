"""Masking values agents must not read in full (issue 13). Pure: a card and a reader in, a card
out.

The connection file marks identifiers, traits and computed traits with `mask` ("last4",
"hidden") and/or `visible_to_roles`. Card bodies are cached and shared by every reader, so the
mask is applied per request, after the cache, from the reader's Flex roles; a Studio flow or a
Basic-auth user has no role, so it always gets the masked value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from connector.cards.models import CardEvent, CardIdentifier, CardItem, ProfileCard
from connector.config.schema import ConnectionFile, Mask, Maskable

DOTS = "••••"
HIDDEN = "Hidden"
# Showing four characters of a shorter value would give most of it away: below this length
# the value is masked whole.
LAST4_MIN_LENGTH = 8

# Which of the roles that unmask something a reader holds: two readers with the same view see
# the same card, so it is the cache key of a masked card (not the reader's whole role set).
View = frozenset[str]


def last4(value: Any) -> str:
    """`4111111111111234` -> "•••• 1234"; values under LAST4_MIN_LENGTH -> "••••"."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return f"{DOTS} {text[-4:]}" if len(text) >= LAST4_MIN_LENGTH else DOTS


def masked_item(item: CardItem, mask: Mask) -> CardItem:
    """The item as a reader who may not see its value gets it: nothing of the raw value but,
    for last4, its last four characters (in `value` too, for Studio, which reads values)."""
    if mask == "last4":
        shown = last4(item.value)
        return item.model_copy(update={"value": shown, "display": shown})
    return item.model_copy(update={"value": None, "display": HIDDEN})


def masked_identifier(identifier: CardIdentifier, mask: Mask) -> CardIdentifier:
    """Each value to its last four characters, or none at all (the page then says Hidden)."""
    values = [last4(v) for v in identifier.values] if mask == "last4" else []
    return identifier.model_copy(update={"values": values})


@dataclass(frozen=True)
class MaskRules:
    """The masks one version of the connection file configures."""

    identifiers: Mapping[str, Maskable]  # by identifier type
    traits: Mapping[str, Maskable]  # by key
    computed_traits: Mapping[str, Maskable]  # by key
    unmasking_roles: frozenset[str]  # every role some visible_to_roles lists

    @classmethod
    def of(cls, file: ConnectionFile) -> MaskRules:
        def masked(entries: Iterable[tuple[str, Maskable]]) -> dict[str, Maskable]:
            return {name: entry for name, entry in entries if entry.effective_mask is not None}

        identifiers = masked((i.type, i) for i in file.identifiers)
        traits = masked((t.key, t) for t in file.traits)
        computed = masked((c.key, c) for c in file.computed_traits)
        roles = {
            role
            for entries in (identifiers, traits, computed)
            for entry in entries.values()
            for role in entry.visible_to_roles or ()
        }
        return cls(identifiers, traits, computed, frozenset(roles))

    @property
    def any(self) -> bool:
        return bool(self.identifiers or self.traits or self.computed_traits)

    def view(self, roles: Iterable[str]) -> View:
        return self.unmasking_roles.intersection(roles)

    def apply(self, card: ProfileCard, view: View) -> ProfileCard:
        """The card as a reader with this view may read it."""
        if not self.any or not card.found:
            return card
        return card.model_copy(
            update={
                "identifiers": [
                    masked_identifier(i, mask)
                    if (mask := self._mask(self.identifiers, i.type, view))
                    else i
                    for i in card.identifiers
                ],
                "traits": self._items(self.traits, card.traits, view),
                "computed_traits": self._items(self.computed_traits, card.computed_traits, view),
                "events": [self._event(event, view) for event in card.events],
            }
        )

    def _event(self, event: CardEvent, view: View) -> CardEvent:
        if event.kind != "identify":
            return event
        details = self.masked_traits(event.details, view)
        return event if details == event.details else event.model_copy(update={"details": details})

    def masked_traits(self, traits: Mapping[str, Any], view: View) -> dict[str, Any]:
        """An identify call's traits (a history item's details) with the card's masks applied:
        a trait, a computed trait, or an identifier, which is a trait of the same name there
        (`email`, `phone`)."""
        shown = dict(traits)
        for key, value in traits.items():
            mask = next(
                (
                    found
                    for rules in (self.traits, self.computed_traits, self.identifiers)
                    if (found := self._mask(rules, key, view))
                ),
                None,
            )
            if mask is not None:
                shown[key] = last4(value) if mask == "last4" else HIDDEN
        return shown

    def _items(
        self, rules: Mapping[str, Maskable], items: list[CardItem], view: View
    ) -> list[CardItem]:
        return [
            masked_item(item, mask) if (mask := self._mask(rules, item.key, view)) else item
            for item in items
        ]

    @staticmethod
    def _mask(rules: Mapping[str, Maskable], name: str, view: View) -> Mask | None:
        """The mask this reader gets for the entry `name` (None: they see the value)."""
        entry = rules.get(name)
        if entry is None or view.intersection(entry.visible_to_roles or ()):
            return None
        return entry.effective_mask
