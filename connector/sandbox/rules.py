"""Identity resolution rules: the identifiers a message carries, their limits and priorities."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

COLLECTIONS = ("users", "accounts")


@dataclass(frozen=True, order=True)
class Identifier:
    """One external id of a profile, as the Profile API names it (`type:value`)."""

    collection: str
    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


@dataclass(frozen=True)
class TypeRule:
    type: str
    collection: str
    priority: int
    limit: int
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class IdentityRules:
    types: dict[str, TypeRule]
    blocked: re.Pattern[str] | None
    default_limit: int = 5
    default_priority: int = 100

    def limit(self, type_: str) -> int:
        rule = self.types.get(type_)
        return rule.limit if rule else self.default_limit

    def priority(self, type_: str) -> int:
        rule = self.types.get(type_)
        return rule.priority if rule else self.default_priority

    def is_blocked(self, value: str) -> bool:
        return self.blocked is not None and self.blocked.search(value) is not None

    def identifiers_in(self, message: dict[str, Any]) -> list[Identifier]:
        """Every usable identifier on a Spec message, lowercased, blocked values left out."""
        found: list[Identifier] = []
        for rule in self.types.values():
            for source in rule.sources:
                if source.startswith("traits.") and message.get("type") != "identify":
                    continue
                self._add(found, rule.collection, rule.type, _dig(message, source))
        context = message.get("context")
        external = context.get("externalIds") if isinstance(context, dict) else None
        for entry in external if isinstance(external, list) else ():
            if isinstance(entry, dict) and isinstance(entry.get("type"), str):
                collection = str(entry.get("collection") or "users").lower()
                if collection in COLLECTIONS:
                    self._add(found, collection, entry["type"].lower(), entry.get("id"))
        return list(dict.fromkeys(found))

    def _add(self, found: list[Identifier], collection: str, type_: str, raw: Any) -> None:
        if isinstance(raw, bool) or not isinstance(raw, str | int | float):
            return
        value = str(raw).strip().lower()
        if value and not self.is_blocked(value):
            found.append(Identifier(collection, type_, value))


def _one_pattern(patterns: list[str]) -> re.Pattern[str] | None:
    """The blocked-value patterns as one regex: one search per value instead of one per pattern."""
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


def _dig(message: dict[str, Any], dotted: str) -> Any:
    node: Any = message
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


DEFAULT_RULES_FILE = "rules.toml"


def load_rules(path: Path | None = None) -> IdentityRules:
    """Read a rules file (the packaged defaults when no path is given)."""
    if path is None:
        text = resources.files("connector.sandbox").joinpath(DEFAULT_RULES_FILE).read_text("utf-8")
    else:
        text = path.read_text("utf-8")
    return rules_from_dict(tomllib.loads(text))


def rules_from_dict(data: dict[str, Any]) -> IdentityRules:
    types = {
        entry["type"]: TypeRule(
            type=entry["type"],
            collection=entry.get("collection", "users"),
            priority=int(entry["priority"]),
            limit=int(entry["limit"]),
            sources=tuple(entry.get("sources", ())),
        )
        for entry in data.get("identifier", [])
    }
    return IdentityRules(
        types=types,
        blocked=_one_pattern(data.get("blocked_values", [])),
        default_limit=int(data.get("default_limit", 5)),
        default_priority=int(data.get("default_priority", 100)),
    )
