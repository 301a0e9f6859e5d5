"""Caller addresses as Flex and Studio give them, into candidate Segment identifiers."""

from __future__ import annotations

import pytest

from connector.resolve import (
    InvalidAddress,
    candidates,
    parse_email,
    parse_from,
    parse_identifier,
)
from connector.settings import LookupSection

# (raw From, default country, expected E.164, expected channel)
PHONES = [
    ("+14155550123", "US", "+14155550123", None),
    ("(415) 555-0123", "US", "+14155550123", None),
    ("415.555.0123", "US", "+14155550123", None),
    ("1 415 555 0123", "US", "+14155550123", None),
    ("tel:+14155550123", "US", "+14155550123", "tel"),
    ("sms:+14155550123", "US", "+14155550123", "sms"),
    ("SMS:+1 (415) 555-0123", "US", "+14155550123", "sms"),
    ("mms:+14155550123", "US", "+14155550123", "mms"),
    ("whatsapp:+447700900123", "US", "+447700900123", "whatsapp"),
    ("rcs:+447700900123", "US", "+447700900123", "rcs"),
    (" 14155550123", "GB", "+14155550123", None),  # "+" lost to form decoding
    ("whatsapp: 447700900123", "US", "+447700900123", "whatsapp"),
    ("07700 900123", "GB", "+447700900123", None),
    ("+44 7700 900123", "US", "+447700900123", None),
    ("030 901820", "DE", "+4930901820", None),
    ("+49 151 23456789", "US", "+4915123456789", None),
    ("06 12 34 56 78", "FR", "+33612345678", None),
    ("+34 612 34 56 78", "US", "+34612345678", None),
    ("(11) 91234-5678", "BR", "+5511912345678", None),
    ("whatsapp:+5511912345678", "US", "+5511912345678", "whatsapp"),
    ("098765 43210", "IN", "+919876543210", None),
    ("+52 55 1234 5678", "US", "+525512345678", None),
    ("090-1234-5678", "JP", "+819012345678", None),
    ("0803 123 4567", "NG", "+2348031234567", None),
    ("8123 4567", "SG", "+6581234567", None),
    ("0491 570 156", "AU", "+61491570156", None),
    ("082 123 4567", "ZA", "+27821234567", None),
    ("(416) 555-0142", "CA", "+14165550142", None),
    ("010-1234-5678", "KR", "+821012345678", None),
]


@pytest.mark.parametrize(("raw", "country", "e164", "channel"), PHONES)
def test_phones(raw: str, country: str, e164: str, channel: str | None) -> None:
    address = parse_from(raw, country)
    assert (address.kind, address.value, address.channel) == ("phone", e164, channel)


def test_phones_cover_at_least_ten_countries() -> None:
    countries = {
        parse_from(raw, country).number.country_code  # type: ignore[union-attr]
        for raw, country, _, _ in PHONES
    }
    assert len(countries) >= 10


@pytest.mark.parametrize(
    ("raw", "email"),
    [
        ("ada@example.com", "ada@example.com"),
        ("  Ada.Lovelace@Example.COM ", "ada.lovelace@example.com"),
        ("mailto:Ada@Example.com", "ada@example.com"),
        ("ada @ example.com", "ada@example.com"),
        ("o'brien+flex@example.co.uk", "o'brien+flex@example.co.uk"),
    ],
)
def test_emails(raw: str, email: str) -> None:
    address = parse_from(raw, "US")
    assert (address.kind, address.value) == ("email", email)
    assert parse_email(raw.removeprefix("mailto:")).value == email


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "hello",
        "+1",
        "12",
        "whatsapp:",
        "sms:hello",
        "messenger:12345",
        "client:alice",
        "ada@",
        "@example.com",
        "ada@example",
        "+1 415 555 0123\n",
        "\x00+1415",
        "+" + "1" * 300,
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "tel:+999 1234",
    ],
)
def test_junk_is_refused_with_a_reason(raw: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_from(raw, "US")
    assert str(caught.value)
    assert raw.strip() == "" or raw.strip() not in str(caught.value)  # no echo of the input


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("user_id:U-Ada", "user_id:u-ada"),
        ("anonymous_id:abc:def", "anonymous_id:abc:def"),
        ("crm_id:a/b", "crm_id:a/b"),
    ],
)
def test_identifiers(raw: str, value: str) -> None:
    assert parse_identifier(raw).value == value


@pytest.mark.parametrize("raw", ["user_id", ":x", "User_ID:x", "user id:x", "user_id:"])
def test_bad_identifiers(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        parse_identifier(raw)


def test_candidates_follow_the_configured_order() -> None:
    lookup = LookupSection(
        phone_identifiers=["phone", "user_id"],
        phone_formats=["e164", "national", "e164_digits", "international"],
        email_identifiers=["email", "user_id"],
    )
    phone = candidates(parse_from("whatsapp:+14155550123", "US"), lookup)
    assert [str(c) for c in phone] == [
        "phone:+14155550123",
        "phone:(415) 555-0123",
        "phone:14155550123",
        "phone:+1 415-555-0123",
        "user_id:+14155550123",
        "user_id:(415) 555-0123",
        "user_id:14155550123",
        "user_id:+1 415-555-0123",
    ]
    email = candidates(parse_from("Ada@Example.com", "US"), lookup)
    assert [str(c) for c in email] == ["email:ada@example.com", "user_id:ada@example.com"]
    assert [str(c) for c in candidates(parse_identifier("user_id:u1"), lookup)] == ["user_id:u1"]
