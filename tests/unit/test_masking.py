"""Masking is pure: a card, the connection's masks and a reader's roles in, a card out."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connector.cards.build import card_body, studio_payload
from connector.cards.masking import HIDDEN, MaskRules, last4
from connector.cards.models import ProfileCard
from connector.cards.profile import ProfileData
from connector.config.schema import ConnectionFile

CARD_NUMBER = "4111111111111234"
SSN = "078-05-1120"
TAX_ID = "DE-998877665"
CONFIG = ConnectionFile.model_validate(
    {
        "connection": {"friendly_name": "Owl Goods", "space_id": "spa_1"},
        "identifiers": [
            {"type": "user_id", "label": "ID"},
            {"type": "tax_id", "label": "Tax ID", "mask": "last4"},
        ],
        "traits": [
            {"key": "plan", "label": "Plan"},
            {"key": "card_number", "label": "Card", "mask": "last4"},
            {"key": "ssn", "label": "SSN", "visible_to_roles": ["supervisor"]},
            {
                "key": "balance",
                "label": "Balance",
                "format": "currency",
                "mask": "last4",
                "visible_to_roles": ["admin"],
            },
        ],
        "computed_traits": [{"key": "risk_score", "label": "Risk", "mask": "hidden"}],
    }
)
DATA = ProfileData(
    matched="phone:+14155550123",
    segment_id="use_1",
    traits={
        "name": "Ada Lovelace",
        "plan": "gold",
        "card_number": CARD_NUMBER,
        "ssn": SSN,
        "balance": 123456.78,
    },
    audiences={},
    computed_traits={"risk_score": 0.87},
    external_ids=[{"type": "user_id", "id": "u1"}, {"type": "tax_id", "id": TAX_ID}],
    events=[],
    accounts=[],
)
RULES = MaskRules.of(CONFIG)
BODY = card_body(CONFIG, DATA)


def masked(*roles: str) -> ProfileCard:
    return RULES.apply(BODY, RULES.view(roles))


def items(card: ProfileCard) -> dict[str, tuple[Any, str]]:
    return {i.key: (i.value, i.display) for i in [*card.traits, *card.computed_traits]}


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (CARD_NUMBER, "•••• 1234"),
        ("12345678", "•••• 5678"),
        ("1234567", "••••"),  # under 8 characters: four would give most of it away
        ("", "••••"),
        (123456.78, "•••• 6.78"),  # its string form
        (["a", "bcdefgh"], '•••• gh"]'),  # JSON, as for any value that is not a string
    ],
)
def test_last4(value: Any, shown: str) -> None:
    assert last4(value) == shown


def test_an_agent_gets_last4_and_hidden_and_nothing_of_the_raw_values() -> None:
    card = masked("agent")
    assert items(card) == {
        "plan": ("gold", "gold"),
        "card_number": ("•••• 1234", "•••• 1234"),
        "ssn": (None, HIDDEN),
        "balance": ("•••• 6.78", "•••• 6.78"),
        "risk_score": (None, HIDDEN),
    }
    assert [(i.type, i.values) for i in card.identifiers] == [
        ("user_id", ["u1"]),
        ("tax_id", ["•••• 7665"]),
    ]
    text = card.model_dump_json() + json.dumps(studio_payload(card, "found"), ensure_ascii=False)
    for raw in (CARD_NUMBER, SSN, TAX_ID, "123456.78", "123,456.78", "0.87"):
        assert raw not in text


def test_a_listed_role_sees_the_value_and_only_that_one() -> None:
    supervisor = items(masked("agent", "supervisor"))
    assert supervisor["ssn"] == (SSN, SSN)
    assert supervisor["balance"] == ("•••• 6.78", "•••• 6.78")  # only admins see it
    assert supervisor["card_number"] == ("•••• 1234", "•••• 1234")  # masked for everyone
    admin = items(masked("admin"))
    assert admin["balance"] == (123456.78, "$123,456.78")
    assert admin["ssn"] == (None, HIDDEN)


def test_the_view_is_only_the_roles_that_unmask_something() -> None:
    assert RULES.view(["agent", "wfo.team_leader"]) == frozenset()
    assert RULES.view(["agent", "supervisor"]) == {"supervisor"}
    assert RULES.view([]) == frozenset()  # Studio: no roles, every mask applies


def test_no_masks_leave_the_card_as_it_is() -> None:
    bare = ConnectionFile.model_validate(
        {
            "connection": {"friendly_name": "Owl", "space_id": "spa_1"},
            "traits": [{"key": "plan", "label": "Plan"}, {"key": "ssn", "label": "SSN"}],
        }
    )
    body = card_body(bare, DATA)
    rules = MaskRules.of(bare)
    assert rules.apply(body, rules.view(["agent"])) is body


def test_a_hidden_identifier_has_no_value_for_studio() -> None:
    config = CONFIG.model_copy(
        update={"identifiers": [CONFIG.identifiers[1].model_copy(update={"mask": "hidden"})]}
    )
    rules = MaskRules.of(config)
    card = rules.apply(card_body(config, DATA), frozenset())
    assert [(i.type, i.values) for i in card.identifiers] == [("tax_id", [])]
    assert studio_payload(card, "found")["identifier_tax_id"] is None
