"""A caller's history as an agent reads it: the interaction ledger merged with the card's
Profile API events, newest first, each event once; and an engagement summary from the ledger.

Pure but for `card_history`, which reads the ledger: the page (`/cards/view`) and
`/v1/cards/history` both call it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args

from connector.cards.addresses import Candidate
from connector.cards.event_titles import event_details, event_kind, event_title
from connector.cards.models import _Model
from connector.cards.profile import ProfileData
from connector.cards.service import CardAnswer
from connector.timestamps import parse_timestamp
from connector.writeback.events import anonymous_id
from connector.writeback.ledger import LedgerEntry, LedgerKeys, LedgerStore

HistoryKind = Literal[
    "track", "identify", "subscription_change", "group", "page", "screen", "alias", "unlinked"
]
HISTORY_KINDS = frozenset(get_args(HistoryKind))
HISTORY_ITEMS = 100  # what a page shows; the Profile API's part is the card's events already
SUMMARY_ROWS = 1000  # ledger rows the engagement summary counts over (newest first)
ENGAGEMENT_PREFIX = "Flex - Engagement"  # Flex's own events: Initiated, Completed, ...
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MS = timedelta(milliseconds=1)


class HistoryItem(_Model):
    kind: HistoryKind
    title: str  # as an agent reads it: "Subscription changed: email -> unsubscribed"
    timestamp: str  # ISO 8601 UTC, milliseconds
    source: Literal["segment", "connector"]
    details: dict[str, Any]  # properties; traits; {"subscriptions": [...]}
    agent: str | None = None  # the ledger's: who recorded it
    channel: str | None = None


class Engagement(_Model):
    """From the ledger: what the connector recorded of this customer's contacts."""

    total_inbound: int  # distinct inbound engagements (by task/interaction id)
    last_contact_at: str | None
    last_agent: str | None
    last_topic: str | None
    last_sentiment: str | None
    most_used_channel: str | None


class CardHistory(_Model):
    history: list[HistoryItem]
    engagement: Engagement


def card_history(
    answer: CardAnswer,
    subject: str | None,
    ledger: LedgerStore | None,
    masked: Callable[[Mapping[str, Any]], dict[str, Any]] = dict,
) -> CardHistory:
    """The history of the caller a card answered for. `ledger` None: none exists yet.
    `masked` takes an identify call's traits to what this reader may read of them (the card's
    masks: connector.cards.masking)."""
    keys = ledger_keys(subject, answer.data)
    rows = ledger.interactions(keys, SUMMARY_ROWS) if ledger is not None and keys else []
    events = answer.data.events if answer.data is not None else []
    items = [
        item.model_copy(update={"details": masked(item.details)})
        if item.kind == "identify"
        else item
        for item in merged(rows, events)
    ]
    return CardHistory(history=items, engagement=engagement(rows))


def ledger_keys(subject: str | None, data: ProfileData | None) -> LedgerKeys:
    """What finds a profile's ledger rows: the caller's cache key, the profile's user_ids, and
    the anonymousIds events about it were sent with (one per identifier it has)."""
    if data is None:
        return LedgerKeys(subjects=(subject,) if subject else ())
    ids = [(e.get("type"), e.get("id")) for e in data.external_ids]
    found = [(t, v) for t, v in ids if isinstance(t, str) and isinstance(v, str)]
    kind, _, value = data.matched.partition(":")
    candidates = {Candidate(t, v) for t, v in [*found, (kind, value)]}
    return LedgerKeys(
        subjects=(subject,) if subject else (),
        user_ids=tuple(sorted({v for t, v in found if t == "user_id"})),
        anonymous_ids=tuple(sorted(anonymous_id(c) for c in candidates)),
    )


# --- the history ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dated:
    moment: datetime
    item: HistoryItem


def merged(
    rows: Sequence[LedgerEntry],
    profile_events: Iterable[Mapping[str, Any]],
    limit: int = HISTORY_ITEMS,
) -> list[HistoryItem]:
    """Ledger rows and Profile API events, newest first. An event the connector wrote shows up
    in the Profile API too: it is listed once, as the ledger's (it knows the agent and channel),
    matched on messageId, else on type, event name and time to the millisecond."""
    items = [_Dated(_moment(r.occurred_at), _from_ledger(r)) for r in rows]
    ids = {r.message_id for r in rows}
    seen = {_same_event(_wire_type(r.kind), _name(r), _moment(r.occurred_at)) for r in rows}
    for raw in profile_events:
        moment = parse_timestamp(raw.get("timestamp"))
        if moment is None:  # an event without a time has no place in a timeline
            continue
        kind = str(raw.get("type") or "track")
        name = raw.get("event") if kind == "track" else None
        if raw.get("message_id") in ids or _same_event(kind, name, moment) in seen:
            continue
        items.append(_Dated(moment, _from_profile_api(raw, moment)))
    items.sort(key=lambda dated: dated.moment, reverse=True)
    return [dated.item for dated in items[:limit]]


def _same_event(kind: str, name: Any, moment: datetime) -> tuple[str, Any, int]:
    return kind, name, (moment - EPOCH) // MS


def _wire_type(kind: str) -> str:
    """The Spec type a ledger row's message was sent as."""
    return {"subscriptions": "identify", "unlinked": "track"}.get(kind, kind)


def _name(row: LedgerEntry) -> str | None:
    return row.event if _wire_type(row.kind) == "track" else None


def _from_ledger(row: LedgerEntry) -> HistoryItem:
    item = _from_message(_as_message(row), _moment(row.occurred_at), "connector")
    return item.model_copy(update={"agent": row.agent, "channel": row.channel})


def _from_profile_api(raw: Mapping[str, Any], moment: datetime) -> HistoryItem:
    return _from_message(raw, moment, "segment")


def _from_message(
    raw: Mapping[str, Any], moment: datetime, source: Literal["segment", "connector"]
) -> HistoryItem:
    """Titled and detailed as the card titles its events (connector.cards.event_titles)."""
    kind = event_kind(raw)
    return HistoryItem(
        kind=kind if kind in HISTORY_KINDS else "track",  # type: ignore[arg-type]  # checked
        title=event_title(raw),
        timestamp=_iso(moment),
        source=source,
        details=event_details(raw),
    )


def _as_message(row: LedgerEntry) -> dict[str, Any]:
    """A ledger row in the shape of the message it was sent as (and the Profile API returns)."""
    details = row.details
    if row.kind == "subscriptions":
        subscriptions = details.get("subscriptions")
        return {"type": "identify", "context": {"messaging_subscriptions": subscriptions}}
    if row.kind == "identify":
        return {"type": "identify", "traits": details}
    if row.kind == "group":
        traits = {k: v for k, v in details.items() if k != "groupId"}
        return {"type": "group", "group_id": details.get("groupId"), "traits": traits}
    return {"type": "track", "event": row.event, "properties": details}


# --- the engagement summary ----------------------------------------------------------------


def engagement(rows: Sequence[LedgerEntry]) -> Engagement:
    """Figures from the ledger rows (newest first; at most SUMMARY_ROWS of them).

    An engagement is one of Flex's `Flex - Engagement ...` events; the several events of one
    task (initiated, completed) count once, by task (or interaction, call, conversation) id.
    Inbound: any but those whose `direction` property says outbound.
    """
    contacts = [r for r in rows if r.kind != "unlinked"]
    engagements = [
        r
        for r in contacts
        if r.kind == "track"
        and (r.event or "").startswith(ENGAGEMENT_PREFIX)
        and str(r.details.get("direction", "inbound")).lower() != "outbound"
    ]
    # One per engagement, its newest event's: a task's two events are one contact on a channel.
    distinct: dict[str, LedgerEntry] = {}
    for r in engagements:
        distinct.setdefault(_engagement_key(r), r)
    channels = Counter(r.channel for r in distinct.values() or contacts if r.channel)
    return Engagement(
        total_inbound=len(distinct),
        last_contact_at=_iso(_moment(contacts[0].occurred_at)) if contacts else None,
        last_agent=next((r.agent for r in contacts if r.agent), None),
        last_topic=next((t for r in contacts if (t := _topic(r.details))), None),
        last_sentiment=next((s for r in contacts if (s := _sentiment(r.details))), None),
        # Counter keeps first-seen order among equals: a tie goes to the most recent channel.
        most_used_channel=channels.most_common(1)[0][0] if channels else None,
    )


def _engagement_key(row: LedgerEntry) -> str:
    for name in ("task_sid", "interaction_sid", "call_sid", "conversation_sid"):
        if row.task_ids.get(name):
            return f"{name}:{row.task_ids[name]}"
    return f"message:{row.message_id}"


def _topic(details: Mapping[str, Any]) -> str | None:
    codes = _object(details.get("codes"))
    for given in (details.get("topic"), codes.get("topic"), details.get("topics")):
        value = ", ".join(str(v) for v in given if v) if isinstance(given, list) else given
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _sentiment(details: Mapping[str, Any]) -> str | None:
    codes = _object(details.get("codes"))
    for given in (details.get("sentiment"), codes.get("sentiment")):
        value = given.get("label") if isinstance(given, dict) else given
        if isinstance(value, str | int | float) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _moment(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)


def _iso(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
