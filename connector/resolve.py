"""Caller addresses, as Flex and Studio give them, into the Segment identifiers to try.

`+14155550123`, `(415) 555-0123`, `whatsapp:+44 7700 900123`, `sms:`/`tel:` prefixes,
` Ada@Example.COM ` and `type:value` identifiers all become an ordered list of candidates; the
first one Segment knows wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers

from connector.settings import LookupSection, PhoneFormat

MAX_ADDRESS_LENGTH = 256
# Channel prefixes Twilio puts on phone-based addresses (`From` of calls, SMS, WhatsApp, RCS).
PHONE_CHANNELS = {"tel", "sms", "mms", "whatsapp", "rcs", "voice"}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
IDENTIFIER = re.compile(r"^(?P<type>[a-z0-9_.\-]{1,100}):(?P<value>.+)$")
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
FORMATS = {
    "e164": phonenumbers.PhoneNumberFormat.E164,
    "national": phonenumbers.PhoneNumberFormat.NATIONAL,
    "international": phonenumbers.PhoneNumberFormat.INTERNATIONAL,
}

Kind = Literal["phone", "email", "identifier"]


class InvalidAddress(ValueError):
    """An address that names no one; the message says why, without repeating the address."""


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
class Candidate:
    """One Segment identifier to look up, `type:value` as the Profile API takes it."""

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}:{self.value}"


def parse_from(raw: str, default_country: str) -> Address:
    """A raw `From` as Flex or Studio give it: a phone (maybe with a channel prefix) or an email."""
    text = _clean(_restore_plus(raw))
    prefix, sep, rest = text.partition(":")
    channel = prefix.lower() if sep else None
    if channel in PHONE_CHANNELS:
        return parse_phone(rest, default_country, channel)
    if channel == "mailto":
        return parse_email(rest)
    if channel == "client":
        raise InvalidAddress(
            "a Twilio Client identity is not a customer address; "
            "pass identifier=user_id:... if it is one"
        )
    if "@" in text:
        return parse_email(text)
    if sep and not text.startswith("+") and not rest[:1].isdigit():
        raise InvalidAddress(f"unsupported channel prefix {prefix[:20]!r}")
    return parse_phone(text, default_country, None)


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
        raise InvalidAddress("an identifier must be type:value, with a lowercase type")
    return Address("identifier", f"{match['type']}:{match['value'].lower()}")


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


def _clean(raw: str) -> str:
    if len(raw) > MAX_ADDRESS_LENGTH:
        raise InvalidAddress(f"longer than {MAX_ADDRESS_LENGTH} characters")
    if CONTROL.search(raw):
        raise InvalidAddress("contains control characters")
    text = raw.strip()
    if not text:
        raise InvalidAddress("empty")
    return text
