"""Masked traits end to end (issue 13): the connector over real HTTP against the sandbox, read by
an agent, a supervisor and a Studio flow, through the card JSON, Studio's flat JSON and the card
page."""

from __future__ import annotations

import httpx
import pytest
from twilio.request_validator import RequestValidator

from tests.conftest import (
    TWILIO_AUTH_TOKEN,
    ConnectorFactory,
    RunningConnector,
    RunningSandbox,
    SandboxFactory,
)

GRACE = "+14155550777"
EMAIL = "grace.hopper@example.com"
CARD_NUMBER = "4111111111119876"
SSN = "078-05-1120"
CHURN_SCORE = 0.4321
MASKS = """
[[traits]]
key = "card_number"
label = "Card on file"
mask = "last4"

[[traits]]
key = "ssn"
label = "SSN"
visible_to_roles = ["supervisor"]

[[traits]]
key = "churn_score"
label = "Churn score"
format = "percent"
mask = "hidden"
visible_to_roles = ["admin"]
"""
# Every form the raw values could take in a response: as sent, and as the card formats them.
RAW = [CARD_NUMBER, SSN, str(CHURN_SCORE), "43%", EMAIL]


@pytest.fixture
def sandbox(make_sandbox: SandboxFactory) -> RunningSandbox:
    return make_sandbox(
        [
            {
                "type": "identify",
                "userId": "u-grace",
                "traits": {
                    "name": "Grace Hopper",
                    "phone": GRACE,
                    "email": EMAIL,
                    "plan": "gold",
                    "card_number": CARD_NUMBER,
                    "ssn": SSN,
                    "churn_score": CHURN_SCORE,
                },
            }
        ]
    )


@pytest.fixture
def masked(sandbox: RunningSandbox, make_connector: ConnectorFactory) -> RunningConnector:
    connector = make_connector(sandbox, MASKS)
    # The email identifier too: the demo file lists it, so it is masked in place.
    listed = 'type = "email"\nlabel = "Email"\n'
    text = connector.config.read_text()
    connector.config.write_text(text.replace(listed, listed + 'mask = "last4"\n'))
    return connector


def token_with(sandbox: RunningSandbox, *roles: str) -> str:
    return str(sandbox.control.issue_agent_token(roles=list(roles))["token"])


def card_as(connector: RunningConnector, token: str) -> httpx.Response:
    return httpx.post(
        f"{connector.url}/v1/cards",
        data={"From": GRACE},
        headers={"Authorization": f"Bearer {token}"},
        timeout=15,
    )


def traits_of(card: dict[str, object]) -> dict[str, tuple[object, object]]:
    items = card["traits"]
    assert isinstance(items, list)
    return {t["key"]: (t["value"], t["display"]) for t in items}


def assert_no_raw_value(text: str) -> None:
    for raw in RAW:
        assert raw not in text, raw


def test_an_agent_sees_last4_and_hidden_and_no_raw_value(masked: RunningConnector) -> None:
    response = card_as(masked, masked.agent_token)
    assert response.status_code == 200
    card = response.json()
    assert card["profile"]["name"] == "Grace Hopper"
    traits = traits_of(card)
    assert traits["plan"] == ("gold", "gold")  # unmasked traits as ever
    assert traits["card_number"] == ("•••• 9876", "•••• 9876")
    assert traits["ssn"] == (None, "Hidden")
    assert traits["churn_score"] == (None, "Hidden")
    email = next(i for i in card["identifiers"] if i["type"] == "email")
    assert email["values"] == ["•••• .com"]
    assert_no_raw_value(response.text)


def test_a_listed_role_sees_the_value(masked: RunningConnector, sandbox: RunningSandbox) -> None:
    supervisor = traits_of(card_as(masked, token_with(sandbox, "supervisor")).json())
    assert supervisor["ssn"] == (SSN, SSN)
    assert supervisor["churn_score"] == (None, "Hidden")  # admins only
    assert supervisor["card_number"] == ("•••• 9876", "•••• 9876")  # masked for everyone
    admin = traits_of(card_as(masked, token_with(sandbox, "admin")).json())
    assert admin["churn_score"] == (CHURN_SCORE, "43%")
    assert admin["ssn"] == (None, "Hidden")


def test_studio_gets_masked_values_for_an_agent_and_for_a_flow(masked: RunningConnector) -> None:
    as_agent = masked.http.post("/v1/studio/lookup", data={"From": GRACE})
    assert as_agent.json()["trait_card_number"] == "•••• 9876"
    assert as_agent.json()["trait_ssn"] is None
    assert as_agent.json()["identifier_email"] == "•••• .com"
    assert_no_raw_value(as_agent.text)
    # A signed Studio request has no Flex role: masked always, even for what supervisors see.
    url = f"{masked.url}/v1/studio/lookup"
    form = {"From": GRACE}
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, form)
    as_flow = httpx.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=15)
    assert as_flow.status_code == 200 and as_flow.json()["name"] == "Grace Hopper"
    assert as_flow.json()["trait_ssn"] is None and as_flow.json()["trait_plan"] == "gold"
    assert_no_raw_value(as_flow.text)


def test_the_card_page_shows_no_raw_value_to_an_agent(
    masked: RunningConnector, sandbox: RunningSandbox
) -> None:
    page = httpx.post(
        f"{masked.url}/cards/view",
        data={"from": GRACE, "Token": masked.agent_token},
        timeout=15,
    )
    assert page.status_code == 200 and "Grace Hopper" in page.text
    assert "•••• 9876" in page.text and "<dd>Hidden</dd>" in page.text
    assert_no_raw_value(page.text)
    supervisor = httpx.post(
        f"{masked.url}/cards/view",
        data={"from": GRACE, "Token": token_with(sandbox, "supervisor")},
        timeout=15,
    )
    assert SSN in supervisor.text


@pytest.mark.parametrize("first", ["supervisor", "agent"])
def test_a_cached_card_is_masked_per_reader_whoever_fetched_it(
    masked: RunningConnector, sandbox: RunningSandbox, first: str
) -> None:
    supervisor = token_with(sandbox, "supervisor")
    tokens = [supervisor, masked.agent_token]
    if first == "agent":
        tokens.reverse()
    sandbox.control.reset_stats()
    cards = {token: card_as(masked, token) for token in tokens}
    fetched = sandbox.control.stats()["profile_api"]["requests"]
    second = card_as(masked, tokens[1])  # once more: the body cached for its view
    assert sandbox.control.stats()["profile_api"]["requests"] == fetched  # no fetch since
    assert (
        fetched > 0
        and cards[tokens[0]].json()["freshness"]["fetched_at"]
        == (cards[tokens[1]].json()["freshness"]["fetched_at"])
    )  # one fetch, served from the cache to the second reader
    assert second.json()["traits"] == cards[tokens[1]].json()["traits"]
    assert traits_of(cards[supervisor].json())["ssn"] == (SSN, SSN)
    assert traits_of(cards[masked.agent_token].json())["ssn"] == (None, "Hidden")
    assert_no_raw_value(cards[masked.agent_token].text)


def test_a_bad_mask_is_refused_and_the_last_good_file_keeps_serving(
    masked: RunningConnector,
) -> None:
    good = masked.config.read_text()
    masked.config.write_text(good.replace('mask = "hidden"', 'mask = "redacted"'))
    card = card_as(masked, masked.agent_token)
    assert traits_of(card.json())["churn_score"] == (None, "Hidden")  # the last good masks
    config = masked.http.get("/readyz").json()["config"]
    assert config["valid"] is False
    assert "traits[8].mask" in config["error"] and "'last4' or 'hidden'" in config["error"]


def test_a_mask_added_by_an_edit_masks_cards_already_cached(masked: RunningConnector) -> None:
    masked_text = masked.config.read_text()
    masked.config.write_text(masked_text.replace('visible_to_roles = ["supervisor"]\n', ""))
    before = card_as(masked, masked.agent_token).json()
    assert traits_of(before)["ssn"] == (SSN, SSN)  # no mask on it in this version
    masked.config.write_text(masked_text)
    after = card_as(masked, masked.agent_token)
    assert after.json()["freshness"]["fetched_at"] == before["freshness"]["fetched_at"]  # cached
    assert traits_of(after.json())["ssn"] == (None, "Hidden")
    assert_no_raw_value(after.text)


def test_the_history_masks_an_identify_calls_traits(
    masked: RunningConnector, sandbox: RunningSandbox
) -> None:
    def history_as(token: str) -> httpx.Response:
        return httpx.post(
            f"{masked.url}/v1/cards/history",
            data={"From": GRACE},
            headers={"Authorization": f"Bearer {token}"},
            timeout=15,
        )

    agent = history_as(masked.agent_token)
    assert agent.status_code == 200
    identify = [i for i in agent.json()["history"] if i["kind"] == "identify"]
    assert identify and identify[0]["details"]["card_number"] == "•••• 9876"
    assert identify[0]["details"]["plan"] == "gold"
    assert_no_raw_value(agent.text)
    supervisor = history_as(token_with(sandbox, "supervisor")).json()
    shown = next(i for i in supervisor["history"] if i["kind"] == "identify")["details"]
    assert shown["ssn"] == SSN and shown["churn_score"] == "Hidden"  # admin only
