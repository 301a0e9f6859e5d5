"""Caller addresses, as Flex and Studio give them, into the Segment identifiers to try.

`+14155550123`, `(415) 555-0123`, `whatsapp:+44 7700 900123`, `sms:`/`tel:` prefixes,
` Ada@Example.COM ` and `type:value` identifiers all become an ordered list of candidates; the
first one Segment knows wins. A withheld number (`anonymous`, `+266696687`, empty) and addresses
that are no customer's (`client:agent_bob`, `sip:...`) become a NoCustomer, without asking Segment.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import phonenumbers

from connector.config.schema import LookupSection, PhoneFormat

MAX_ADDRESS_LENGTH = 256
# Channel prefixes Twilio puts on phone-based addresses (`From` of calls, SMS, WhatsApp, RCS).
PHONE_CHANNELS = {"tel", "sms", "mms", "whatsapp", "rcs", "voice"}
# Addresses of people and devices that are not customers' phones or emails: an agent's Twilio
# Client identity, SIP endpoints.
OTHER_CHANNELS = {"client", "sip", "sips"}
# What carriers and Twilio put in `From` when the caller withholds their number: the words,
# and the same words spelt on a phone keypad, which is how Twilio writes them as a number
# (ANONYMOUS is +266696687; Twilio's changelog of 2022-11-16 on withheld caller IDs).
WITHHELD_WORDS = frozenset(
    {"anonymous", "restricted", "unknown", "blocked", "unavailable", "private", "withheld"}
)
WITHHELD_NUMBERS = frozenset(
    {
        "266696687",  # ANONYMOUS
        "7378742833",  # RESTRICTED
        "2562533",  # BLOCKED
        "86282452253",  # UNAVAILABLE
        "8656696",  # UNKNOWN
    }
)
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
IDENTIFIER = re.compile(r"^(?P<type>[a-z0-9_.\-]{1,100}):(?P<value>.+)$")
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
PUNCTUATION = re.compile(r"[\s().\-/]")
FORMATS = {
    "e164": phonenumbers.PhoneNumberFormat.E164,
    "national": phonenumbers.PhoneNumberFormat.NATIONAL,
    "international": phonenumbers.PhoneNumberFormat.INTERNATIONAL,
}

Kind = Literal["phone", "email", "identifier"]
# The fields a request names its caller with (`from` is also read as Twilio's `From`).
CallerField = Literal["from", "phone", "email", "identifier"]
NoCustomerReason = Literal["withheld", "not_a_customer_address"]


class InvalidAddress(ValueError):
    """An address that names no one; the message says why, without repeating the address.

    Messages complete "The from given is ...": `not a phone number`, `empty`."""


@dataclass(frozen=True)
class Address:
    """A parsed caller address: `value` is E.164 for phones, lowercase for emails."""

    kind: Kind
    value: str
    channel: str | None = None
    number: phonenumbers.PhoneNumber | None = None

    @property
    def cache_key(self) -> str:
        return f"{self.kind}:{self.value}"


@dataclass(frozen=True)
class NoCustomer:
    """A caller that no customer profile can stand behind: a withheld number, or an address
    that is not a customer's (an agent's `client:`, a SIP URI, a short code, a sender name).

    Normal in a contact centre, so not an error: the answer is "not found" without asking
    Segment.
    """

    reason: NoCustomerReason

    def key(self, raw: str) -> str:
        """What logs hash for it: repeated calls from one SIP endpoint still line up."""
        return f"none:{raw.strip().lower()}"


Caller = Address | NoCustomer


@dataclass(frozen=True)
class Candidate:
    """One Segment identifier to look up, `type:value` as the Profile API takes it."""

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


def read_caller(field: CallerField, raw: str, default_country: str) -> Caller:
    """The caller one request field names.

    `from` is a raw channel address, so anything well-formed that is not a phone or an email
    is a NoCustomer; an explicit `phone`, `email` or `identifier` that does not parse is the
    integrator's mistake and raises InvalidAddress, as does malformed input in any field.

    Remembered for the last 4,096 addresses: a caller is looked up again and again during a
    call (Studio, the plugin, the CRM container), and parsing a number was a fifth of a warm
    lookup's CPU. What it returns is frozen.
    """
    return _read_caller(field, raw, default_country)


@functools.lru_cache(maxsize=4096)
def _read_caller(field: CallerField, raw: str, default_country: str) -> Caller:
    if field == "from":
        return parse_from(raw, default_country)
    if field == "phone":
        return _withheld_number(raw) or parse_phone(raw, default_country)
    if field == "email":
        return parse_email(raw)
    return parse_identifier(raw)


def parse_from(raw: str, default_country: str) -> Caller:
    """A raw `From` as Flex or Studio give it: a phone (maybe with a channel prefix), an email,
    or no customer; InvalidAddress only for malformed input (control characters, too long)."""
    text = _checked(_restore_plus(raw))
    if _is_withheld(text):
        return NoCustomer("withheld")
    try:
        return _customer_address(text, default_country)
    except InvalidAddress:
        return NoCustomer("not_a_customer_address")


def _customer_address(text: str, default_country: str) -> Address:
    prefix, sep, rest = text.partition(":")
    channel = prefix.lower() if sep else None
    if channel in PHONE_CHANNELS:
        return parse_phone(rest, default_country, channel)
    if channel == "mailto":
        return parse_email(rest)
    if channel in OTHER_CHANNELS:  # `sip:ada@example.com` would otherwise read as an email
        raise InvalidAddress("not a customer's address")
    if "@" in text:
        return parse_email(text)
    return parse_phone(text, default_country, None)


def _is_withheld(text: str) -> bool:
    """Empty, a withheld word or Twilio's number for one, also behind a channel prefix
    (`tel:anonymous`) or as a SIP user (`sip:anonymous@anonymous.invalid`, RFC 3323)."""
    prefix, sep, rest = text.partition(":")
    channel = prefix.lower() if sep else None
    if channel in PHONE_CHANNELS:
        text = rest
    elif channel in ("sip", "sips"):
        text = rest.partition("@")[0]
    word = text.strip().lower()
    return not word or word in WITHHELD_WORDS or _is_withheld_number(word)


def _is_withheld_number(text: str) -> bool:
    return PUNCTUATION.sub("", text).removeprefix("+") in WITHHELD_NUMBERS


def _withheld_number(raw: str) -> NoCustomer | None:
    """Twilio's numbers for a withheld caller parse as phone numbers, yet name no one."""
    return NoCustomer("withheld") if _is_withheld_number(_checked(_restore_plus(raw))) else None


def parse_phone(raw: str, default_country: str, channel: str | None = None) -> Address:
    text = _clean(_restore_plus(raw))
    if not re.fullmatch(r"[+\d\s().\-/]{3,}", text):
        raise InvalidAddress("not a phone number")
    try:
        number = phonenumbers.parse(text, default_country)
    except phonenumbers.NumberParseException:
        raise InvalidAddress("not a phone number") from None
    if not phonenumbers.is_possible_number(number):
        raise InvalidAddress("not a possible phone number for its country")
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return Address("phone", e164, channel, number)


def parse_email(raw: str) -> Address:
    text = _clean(raw).replace(" ", "").lower()
    if not EMAIL.match(text):
        raise InvalidAddress("not an email address")
    return Address("email", text)


def parse_identifier(raw: str) -> Address:
    """`type:value`, for callers who already know a Segment identifier."""
    match = IDENTIFIER.match(_clean(raw))
    if not match:
        raise InvalidAddress("not an identifier: give type:value, with a lowercase type")
    return Address("identifier", f"{match['type']}:{match['value'].lower()}")


def profile_addresses(
    external_ids: Iterable[Mapping[str, Any]], lookup: LookupSection
) -> tuple[str, ...]:
    """The cache keys of the addresses a profile's callers give, from its external ids
    (`{"type", "id"}`): its phones and emails of the types the connection lists, and its other
    ids as `type:value` (a user_id, say). An event written back through one of them concerns a
    card cached under any. (A phone or email given as an identifier, `phone:(415) 555-0123`, is
    left out: every key costs the check on each cache hit, and no one writes back that way.)"""
    keys: list[str] = []
    for entry in external_ids:
        type_, value = entry.get("type"), entry.get("id")
        if not isinstance(type_, str) or not isinstance(value, str):
            continue
        try:
            if type_ in lookup.phone_identifiers:
                keys.append(parse_phone(value, lookup.default_country).cache_key)
            elif type_ in lookup.email_identifiers:
                keys.append(parse_email(value).cache_key)
            else:
                keys.append(parse_identifier(f"{type_}:{value}").cache_key)
        except InvalidAddress:
            continue  # an id no caller could give: nothing is cached under it
    return tuple(dict.fromkeys(keys))


def candidates(address: Address, lookup: LookupSection) -> list[Candidate]:
    """The identifiers to try for an address, in the connection's configured order."""
    if address.kind == "identifier":
        type_, _, value = address.value.partition(":")
        return [Candidate(type_, value)]
    if address.kind == "email":
        return [Candidate(type_, address.value) for type_ in lookup.email_identifiers]
    assert address.number is not None  # noqa: S101 - phones are always parsed with their number
    values = list(dict.fromkeys(_format(address.number, f) for f in lookup.phone_formats))
    return [Candidate(type_, value) for type_ in lookup.phone_identifiers for value in values]


def _format(number: phonenumbers.PhoneNumber, phone_format: PhoneFormat) -> str:
    if phone_format == "e164_digits":
        return phonenumbers.format_number(number, FORMATS["e164"]).lstrip("+")
    return phonenumbers.format_number(number, FORMATS[phone_format])


def _restore_plus(raw: str) -> str:
    """An unencoded "+" in a query string (`?from=+1415...`) arrives decoded as a space."""
    return "+" + raw[1:] if re.match(r" \d", raw) else raw


def _checked(raw: str) -> str:
    """The text without surrounding spaces; InvalidAddress when it is malformed."""
    if len(raw) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(f"longer than {MAX_ADDRESS_LENGTH} characters")
    if CONTROL.search(raw):
        raise InvalidAddress("not plain text: it has control characters")
    return raw.strip()


def _clean(raw: str) -> str:
    text = _checked(raw)
    if not text:
        raise InvalidAddress("empty")
    return text
