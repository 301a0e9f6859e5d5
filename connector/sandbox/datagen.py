"""Deterministic data for the sandbox: the demo data set and N synthetic profiles for benchmarks.

Both are JSON Lines of Segment Spec messages, as sent to the tracking API, so they go through the
same identity resolution as live traffic. Times are relative to a fixed anchor; the sandbox
rebases them to "now" at load (`--rebase-time`, implied for the demo data). The demo's people,
accounts and audiences are data (data/people.toml); this module turns them into messages.
"""

from __future__ import annotations

import json
import random
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any, TextIO

ANCHOR = datetime(2026, 11, 20, 17, 0, tzinfo=UTC)
Message = dict[str, Any]


@dataclass(frozen=True)
class Person:
    user_id: str
    first: str
    last: str
    email: str | None
    phone: str | None
    country: str
    city: str
    plan: str
    since: int
    channel: str = "voice"


PEOPLE_FILE = "data/people.toml"  # the demo's people, accounts and audiences


def _read_people_file() -> dict[str, Any]:
    text = resources.files("connector.sandbox").joinpath(PEOPLE_FILE).read_text("utf-8")
    return tomllib.loads(text)


def _people(section: str) -> list[Person]:
    """A list of people; a key left out is None (email, phone) or Person's default (channel)."""
    return [Person(**{"email": None, "phone": None, **row}) for row in _DATA[section]]


_DATA = _read_people_file()
PEOPLE = _people("people")
PARKERS = _people("parkers")  # a family inbox: one email, two people not to merge
LATER_IDENTIFIED = _people("later_identified")  # anonymous first, identified later
TWO_DEVICES = _people("two_devices")  # two anonymous devices, merged by identifying on both
ACCOUNTS: dict[str, tuple[dict[str, Any], list[str]]] = {
    group_id: (account["traits"], account["members"])
    for group_id, account in _DATA["accounts"].items()
}
AUDIENCES: dict[str, set[str]] = {name: set(ids) for name, ids in _DATA["audiences"].items()}
SUBSCRIBED = ("u-joao", "u-priya")  # with messaging subscriptions (WhatsApp on, email off)

PRODUCTS = [
    ("sku-kettle", "Owl Kettle", 49.0, "kitchen"),
    ("sku-mug", "Night Owl Mug", 14.5, "kitchen"),
    ("sku-lamp", "Barn Lamp", 89.0, "home"),
    ("sku-throw", "Feather Throw", 65.0, "home"),
    ("sku-boots", "Trail Boots", 129.0, "outdoor"),
    ("sku-tent", "Two-Owl Tent", 240.0, "outdoor"),
]
TOPICS = ["billing", "delivery", "returns", "product question", "account access"]
LTV_BY_PLAN = {"trial": 0.0, "bronze": 180.0, "silver": 640.0, "gold": 1850.0, "platinum": 5200.0}


class _Clock:
    """Message times going back from the anchor, with a counter for unique message ids."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.count = 0

    def at(self, days_ago: float) -> str:
        moment = ANCHOR - timedelta(days=days_ago, seconds=self.rng.randint(0, 3600))
        return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def message_id(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}-{self.count:07d}"


def _traits(p: Person, rng: random.Random) -> dict[str, Any]:
    traits: dict[str, Any] = {
        "first_name": p.first,
        "last_name": p.last,
        "name": f"{p.first} {p.last}",
        "email": p.email,
        "phone": p.phone,
        "city": p.city,
        "country": p.country,
        "plan": p.plan,
        "customer_since": f"{p.since}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        "preferred_channel": p.channel,
        "lifetime_value": LTV_BY_PLAN[p.plan],
        "language": {
            "US": "en",
            "GB": "en",
            "CA": "en",
            "AU": "en",
            "IE": "en",
            "FR": "fr",
            "DE": "de",
            "ES": "es",
            "MX": "es",
            "BR": "pt",
            "JP": "ja",
        }.get(p.country, "en"),
    }
    if p.channel == "whatsapp":
        traits["whatsapp_opt_in"] = True
    return {k: v for k, v in traits.items() if v is not None}


def _identify(
    p: Person, clock: _Clock, days_ago: float, traits: dict[str, Any], **extra: Any
) -> Message:
    return {
        "type": "identify",
        "userId": p.user_id,
        "traits": traits,
        "timestamp": clock.at(days_ago),
        "messageId": clock.message_id("demo-identify"),
        **extra,
    }


def _track(
    ids: dict[str, str],
    event: str,
    properties: dict[str, Any],
    clock: _Clock,
    days_ago: float,
    **context: Any,
) -> Message:
    message: Message = {
        "type": "track",
        **ids,
        "event": event,
        "properties": properties,
        "timestamp": clock.at(days_ago),
        "messageId": clock.message_id("demo-track"),
    }
    if context:
        message["context"] = context
    return message


def _computation(p: Person, clock: _Clock, kind: str, key: str, traits: dict[str, Any]) -> Message:
    """What Engage sends when a computed trait or an audience changes for a profile."""
    return {
        "type": "identify",
        "userId": p.user_id,
        "traits": traits,
        "timestamp": clock.at(0.2),
        "messageId": clock.message_id(f"demo-{kind}"),
        "context": {
            "personas": {
                "computation_class": kind,
                "computation_key": key,
                "computation_id": f"{kind[:3]}_{key}",
                "space_id": "demo",
            }
        },
    }


def _activity(
    p: Person, ids: dict[str, str], clock: _Clock, rng: random.Random
) -> Iterator[Message]:
    """Two weeks of a customer's events: browsing, orders, support, messaging."""
    orders = 0
    for _ in range(rng.randint(3, 7)):
        days_ago = rng.uniform(0.3, 13.5)
        sku, name, price, category = rng.choice(PRODUCTS)
        yield _track(
            ids,
            "Product Viewed",
            {"product_id": sku, "name": name, "price": price, "category": category},
            clock,
            days_ago,
        )
        if rng.random() < 0.45:
            orders += 1
            quantity = rng.randint(1, 3)
            yield _track(
                ids,
                "Order Completed",
                {
                    "order_id": f"ord-{p.user_id[2:]}-{orders}",
                    "revenue": price * quantity,
                    "currency": "USD",
                    "products": [
                        {"product_id": sku, "name": name, "quantity": quantity, "price": price}
                    ],
                },
                clock,
                days_ago - 0.01,
            )
    if rng.random() < 0.5:
        yield _track(
            ids,
            "Support Ticket Opened",
            {"topic": rng.choice(TOPICS), "ticket_id": f"tk-{clock.count}"},
            clock,
            rng.uniform(1, 10),
        )
    if p.channel == "whatsapp":
        yield _track(
            ids,
            "WhatsApp Message Received",
            {"body_length": rng.randint(10, 200)},
            clock,
            rng.uniform(0.5, 5),
        )
    if rng.random() < 0.4:
        yield _track(
            ids,
            "Flex - Engagement Completed",
            {
                "channelSid": f"CH{clock.count:032x}",
                "interactionSid": f"KD{clock.count:032x}",
                "codes": {"dispositionCode": "resolved", "topic": rng.choice(TOPICS)},
                "sentiment": rng.choice(["positive", "neutral", "negative"]),
            },
            clock,
            rng.uniform(2, 12),
        )


def _engage(p: Person, clock: _Clock, rng: random.Random) -> Iterator[Message]:
    yield _computation(p, clock, "computed_trait", "orders_90d", {"orders_90d": rng.randint(0, 12)})
    yield _computation(
        p,
        clock,
        "computed_trait",
        "favorite_category",
        {"favorite_category": rng.choice(["kitchen", "home", "outdoor"])},
    )
    for audience, members in AUDIENCES.items():
        if p.user_id in members:
            yield _computation(p, clock, "audience", audience, {audience: True})


def demo_messages() -> Iterator[Message]:
    rng = random.Random(20261120)
    clock = _Clock(rng)
    for p in [*PEOPLE, *PARKERS]:
        traits = _traits(p, rng)
        if p.user_id == "u-ada":  # a profile with more traits than one default page of 10
            traits |= {f"preference_{n:02d}": n % 3 == 0 for n in range(1, 16)}
        yield _identify(p, clock, 13.9, traits)
        yield from _activity(p, {"userId": p.user_id}, clock, rng)
        yield from _engage(p, clock, rng)
    yield from _later_identified(clock, rng)
    yield from _two_devices(clock, rng)
    yield from _anonymous_only(clock)
    yield from _accounts(clock)
    yield from _subscriptions(clock)


def _later_identified(clock: _Clock, rng: random.Random) -> Iterator[Message]:
    for n, p in enumerate(LATER_IDENTIFIED):
        anonymous = {"anonymousId": f"anon-visitor-{n + 1}"}
        for path in ("/", "/pricing", "/products/owl-kettle"):
            yield {
                "type": "page",
                **anonymous,
                "name": path,
                "properties": {"path": path},
                "timestamp": clock.at(rng.uniform(6, 12)),
                "messageId": clock.message_id("demo-page"),
            }
        yield _identify(p, clock, 5.0, _traits(p, rng), **anonymous)
        yield from _activity(p, {"userId": p.user_id}, clock, rng)


def _two_devices(clock: _Clock, rng: random.Random) -> Iterator[Message]:
    for p in TWO_DEVICES:
        phone, laptop = f"anon-{p.user_id[2:]}-phone", f"anon-{p.user_id[2:]}-laptop"
        yield from _activity(p, {"anonymousId": phone}, clock, rng)
        yield from _activity(p, {"anonymousId": laptop}, clock, rng)
        yield _identify(p, clock, 4.0, _traits(p, rng), anonymousId=phone)
        # Logging in on the laptop links it too: two profiles match, so they merge.
        yield _track(
            {"userId": p.user_id, "anonymousId": laptop},
            "Signed In",
            {"method": "password"},
            clock,
            3.0,
        )


def _anonymous_only(clock: _Clock) -> Iterator[Message]:
    for n in range(2):
        for path in ("/", "/blog/owls-at-night"):
            yield {
                "type": "page",
                "anonymousId": f"anon-never-known-{n}",
                "name": path,
                "properties": {"path": path},
                "timestamp": clock.at(2.0 + n),
                "messageId": clock.message_id("demo-page"),
            }
    # A blocked value: "anonymous" never becomes an identifier, so this joins only u-ada.
    yield _track({"userId": "u-ada", "anonymousId": "anonymous"}, "App Opened", {}, clock, 0.5)


def _accounts(clock: _Clock) -> Iterator[Message]:
    for group_id, (traits, members) in ACCOUNTS.items():
        for user_id in members:
            yield {
                "type": "group",
                "userId": user_id,
                "groupId": group_id,
                "traits": traits,
                "timestamp": clock.at(13.0),
                "messageId": clock.message_id("demo-group"),
            }


def _subscriptions(clock: _Clock) -> Iterator[Message]:
    for p in [person for person in PEOPLE if person.user_id in SUBSCRIBED]:
        yield _identify(
            p,
            clock,
            1.0,
            {},
            context={
                "messaging_subscriptions": [
                    {"key": p.phone, "type": "WHATSAPP", "status": "SUBSCRIBED"},
                    {"key": p.email, "type": "EMAIL", "status": "UNSUBSCRIBED"},
                ]
            },
        )


# --- synthetic profiles for benchmarks --------------------------------------------------------

AREA_CODES = ["201", "212", "303", "312", "404", "415", "503", "512", "617", "702", "808", "917"]
FIRST_NAMES = [
    "Alex",
    "Blair",
    "Casey",
    "Devon",
    "Eden",
    "Finley",
    "Gray",
    "Harper",
    "Indy",
    "Jordan",
    "Kai",
    "Logan",
    "Morgan",
    "Noel",
    "Parker",
    "Quinn",
    "Reese",
    "Sage",
]
LAST_NAMES = [
    "Adams",
    "Baker",
    "Chen",
    "Diaz",
    "Evans",
    "Flores",
    "Garcia",
    "Hughes",
    "Ito",
    "Jones",
    "Khan",
    "Lopez",
    "Moore",
    "Nguyen",
    "Ortiz",
    "Patel",
    "Reyes",
    "Smith",
]


def synthetic_phone(n: int) -> str:
    """A unique, well-formed US number for synthetic profile n (n < 8,000,000)."""
    area = AREA_CODES[n % len(AREA_CODES)]
    return f"+1{area}{2 + (n // 1_000_000) % 8}{n % 1_000_000:06d}"


def synthetic_messages(count: int, seed: int = 1) -> Iterator[Message]:
    """About 4 messages per profile: identify, events, sometimes an audience and an account."""
    rng = random.Random(seed)
    clock = _Clock(rng)
    accounts = max(1, count // 50)
    for n in range(count):
        user_id = f"syn-{seed}-{n:07d}"
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        yield {
            "type": "identify",
            "userId": user_id,
            "timestamp": clock.at(rng.uniform(0, 13)),
            "messageId": f"syn-{seed}-{n}-identify",
            "traits": {
                "first_name": first,
                "last_name": last,
                "name": f"{first} {last}",
                "email": f"{first}.{last}.{n}@example.com".lower(),
                "phone": synthetic_phone(n),
                "plan": rng.choice(list(LTV_BY_PLAN)),
                "lifetime_value": round(rng.uniform(0, 5000), 2),
                "city": rng.choice(["Austin", "Boston", "Chicago", "Denver", "Seattle"]),
                "customer_since": f"20{rng.randint(15, 26)}-0{rng.randint(1, 9)}-15",
            },
        }
        for e in range(rng.randint(1, 3)):
            sku, name, price, _ = rng.choice(PRODUCTS)
            yield {
                "type": "track",
                "userId": user_id,
                "event": rng.choice(["Product Viewed", "Order Completed", "Support Ticket Opened"]),
                "properties": {"product_id": sku, "name": name, "price": price},
                "timestamp": clock.at(rng.uniform(0, 13.5)),
                "messageId": f"syn-{seed}-{n}-track-{e}",
            }
        if rng.random() < 0.2:
            yield {
                "type": "identify",
                "userId": user_id,
                "traits": {"vip": True},
                "timestamp": clock.at(0.1),
                "messageId": f"syn-{seed}-{n}-audience",
                "context": {
                    "personas": {"computation_class": "audience", "computation_key": "vip"}
                },
            }
        if n % 10 == 0:
            group = n // 10 % accounts
            yield {
                "type": "group",
                "userId": user_id,
                "groupId": f"syn-acct-{group}",
                "traits": {"name": f"Account {group}", "plan": "business"},
                "timestamp": clock.at(13),
                "messageId": f"syn-{seed}-{n}-group",
            }


def _write(file: TextIO, messages: Iterator[Message]) -> int:
    count = 0
    for message in messages:
        file.write(json.dumps(message, ensure_ascii=False, separators=(",", ":")) + "\n")
        count += 1
    return count


def write_demo(file: TextIO) -> int:
    return _write(file, demo_messages())


def write_synthetic(file: TextIO, count: int, seed: int = 1) -> int:
    return _write(file, synthetic_messages(count, seed))
