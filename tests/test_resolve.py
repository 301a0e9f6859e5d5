"""Caller addresses as Flex and Studio give them, into candidate Segment identifiers."""

from __future__ import annotations

import pytest

from connector.cards.addresses import (
    WITHHELD_NUMBERS,
    WITHHELD_WORDS,
    Address,
    InvalidAddress,
    NoCustomer,
    candidates,
    parse_email,
    parse_from,
    parse_identifier,
    profile_addresses,
    read_caller,
)
from connector.config.schema import LookupSection


def address(raw: str, country: str = "US") -> Address:
    """A `From` that must name a customer."""
    parsed = parse_from(raw, country)
    assert isinstance(parsed, Address), parsed
    return parsed


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
    parsed = address(raw, country)
    assert (parsed.kind, parsed.value, parsed.channel) == ("phone", e164, channel)


def test_phones_cover_at_least_ten_countries() -> None:
    countries = {
        address(raw, country).number.country_code  # type: ignore[union-attr]
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
    parsed = address(raw)
    assert (parsed.kind, parsed.value) == ("email", email)
    assert parse_email(raw.removeprefix("mailto:")).value == email


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "anonymous",
        "Anonymous",
        "Restricted",
        "UNKNOWN",
        "private",
        "+266696687",  # Twilio's number for ANONYMOUS
        " 266696687",  # its "+" decoded as a space in a query string
        "+7378742833",  # RESTRICTED
        "+2562533",  # BLOCKED
        "+86282452253",  # UNAVAILABLE, a possible number in China
        "+8656696",  # UNKNOWN
        "tel:anonymous",
        "whatsapp:",
        "sip:anonymous@anonymous.invalid",  # RFC 3323
    ],
)
def test_withheld_caller_ids_are_no_customer(raw: str) -> None:
    assert parse_from(raw, "US") == NoCustomer("withheld")


@pytest.mark.parametrize(
    "raw",
    [
        "client:agent_bob",
        "client:alice",
        "sip:ada@example.com",  # not an email, though it reads like one
        "sips:+14155550123@trunk.example.com",
        "hello",
        "OwlGoods",  # an alphanumeric sender id
        "+1",
        "12",
        "86753",  # a short code
        "sms:hello",
        "messenger:12345",
        "ada@",
        "@example.com",
        "ada@example",
        "mailto:ada",
        "<script>alert(1)</script>",
        "../../etc/passwd",
        "tel:+999 1234",
        "user_id:u-ada",  # an identifier is given as identifier=, not as a channel address
        "\u202e+14155550123",
    ],
)
def test_addresses_that_are_no_customers_are_no_customer(raw: str) -> None:
    assert parse_from(raw, "US") == NoCustomer("not_a_customer_address")


@pytest.mark.parametrize(
    "raw", ["+1 415 555 0123\n", "\x00+1415", "+" + "1" * 300, "ada\x85@example.com", "\t"]
)
def test_malformed_input_is_refused_with_a_reason(raw: str) -> None:
    with pytest.raises(InvalidAddress) as caught:
        parse_from(raw, "US")
    assert str(caught.value)
    assert raw.strip() == "" or raw.strip() not in str(caught.value)  # no echo of the input


@pytest.mark.parametrize(
    ("field", "raw"),
    [
        ("phone", "anonymous"),
        ("phone", ""),
        ("phone", "client:alice"),
        ("email", "anonymous"),
        ("email", ""),
        ("identifier", "anonymous"),
        ("identifier", ""),
    ],
)
def test_explicit_fields_that_do_not_parse_are_refused(field: str, raw: str) -> None:
    with pytest.raises(InvalidAddress):
        read_caller(field, raw, "US")  # type: ignore[arg-type]


def test_an_explicit_phone_that_is_twilios_withheld_number_is_no_customer() -> None:
    assert read_caller("phone", "+86282452253", "US") == NoCustomer("withheld")
    assert read_caller("phone", "+14155550123", "US") == address("+14155550123")


KEYPAD = {**dict.fromkeys("abc", "2"), **dict.fromkeys("def", "3"), **dict.fromkeys("ghi", "4")}
KEYPAD |= {**dict.fromkeys("jkl", "5"), **dict.fromkeys("mno", "6"), **dict.fromkeys("pqrs", "7")}
KEYPAD |= {**dict.fromkeys("tuv", "8"), **dict.fromkeys("wxyz", "9")}


def test_withheld_numbers_are_withheld_words_spelt_on_a_keypad() -> None:
    spelt = {"".join(KEYPAD[c] for c in word) for word in WITHHELD_WORDS}
    assert spelt >= WITHHELD_NUMBERS
    assert "266696687" in WITHHELD_NUMBERS  # ANONYMOUS, as Twilio writes it


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
    phone = candidates(address("whatsapp:+14155550123"), lookup)
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
    email = candidates(address("Ada@Example.com"), lookup)
    assert [str(c) for c in email] == ["email:ada@example.com", "user_id:ada@example.com"]
    assert [str(c) for c in candidates(parse_identifier("user_id:u1"), lookup)] == ["user_id:u1"]


def test_a_profiles_addresses_are_the_keys_its_callers_are_cached_under() -> None:
    """Each external id as the caller address a lookup by it would have: phones in E.164 from
    any format, emails lowercased, other ids as `type:value`; ids no caller gives are skipped."""
    lookup = LookupSection(phone_identifiers=["phone"], email_identifiers=["email"])
    external_ids: list[dict[str, str | None]] = [
        {"type": "user_id", "id": "U-Ada"},
        {"type": "phone", "id": "(415) 555-0123"},
        {"type": "email", "id": "Ada@Example.com"},
        {"type": "anonymous_id", "id": "7f3c"},
        {"type": "phone", "id": "not a number"},
        {"type": "email", "id": None},
    ]
    keys = profile_addresses(external_ids, lookup)
    assert keys == (
        "identifier:user_id:u-ada",
        "phone:+14155550123",
        "email:ada@example.com",
        "identifier:anonymous_id:7f3c",
    )
    # what lookups of those callers are cached under, and what write-back notes as delivered
    assert address("+14155550123").cache_key in keys
    assert address("ADA@example.com").cache_key in keys
    assert parse_identifier("user_id:U-Ada").cache_key in keys
