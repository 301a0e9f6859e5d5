"""The agent's card page in headless Chromium, every state an agent meets: a card with tabs and
times in their own zone, no profile -> search -> found, stale, partial, unavailable.

With SCREENSHOTS=1 each state is saved under docs/ at 400 and 900 px wide (the README shows them).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Frame, Page, expect

from tests.browser import frame_to
from tests.conftest import SPACE, TOKEN, ConnectorFactory, RunningSandbox, SandboxFactory
from tests.test_pages import (
    ADA,
    ALAN,
    assert_kept_out_of_urls,
    flex_tab,
    fragment_url,
    secret_forms,
)

DOCS = Path(__file__).resolve().parent.parent / "docs"
UNKNOWN = "+14155550100"


def screenshot(page: Page, name: str, width: int) -> None:
    """docs/card-<name>-<width>.png when SCREENSHOTS=1 (the page as the container shows it)."""
    if os.environ.get("SCREENSHOTS") == "1":
        page.locator("#crm").screenshot(path=DOCS / f"card-{name}-{width}.png")


def settled(frame: Frame) -> None:
    expect(frame.locator("#card")).not_to_have_attribute("aria-busy", "true")


@pytest.mark.parametrize("width", [400, 900])
def test_a_found_card_has_its_header_badges_and_tabs(
    browser: Browser, make_connector: ConnectorFactory, demo: RunningSandbox, width: int
) -> None:
    with flex_tab(browser, make_connector, demo, timezone="Asia/Tokyo", width=width) as tab:
        frame = tab.page.frame_locator("#crm")
        inner = _frame(tab.page, fragment_url(tab.connector, ADA))
        expect(frame.locator("#name")).to_have_text("Ada Lovelace")
        expect(frame.locator(".avatar")).to_have_text("AL")
        expect(frame.locator("header .subtitle")).to_have_text("Customer since 2021")
        expect(frame.locator("header .meta")).to_contain_text("matched phone:+14155550123")
        expect(frame.locator("#audiences")).to_contain_text("VIP")
        expect(frame.locator(".account h2")).to_have_text("Account Initech")  # not its group id
        expect(frame.locator("#details")).to_be_visible()
        expect(frame.locator("#history")).to_be_hidden()
        screenshot(tab.page, "found", width)

        # Keyboard only: focus the Details tab, arrow right to History.
        frame.locator("#tab-details").focus()
        tab.page.keyboard.press("ArrowRight")
        expect(frame.locator("#history")).to_be_visible()
        expect(frame.locator("#details")).to_be_hidden()
        expect(frame.locator("#tab-history")).to_have_attribute("aria-selected", "true")
        assert inner.evaluate("document.activeElement.id") == "tab-history"
        first = frame.locator("#events li").first
        # Times in the agent's zone (Tokyo), the UTC one kept for hover.
        when = first.locator("time")
        assert not when.inner_text().endswith("UTC")
        assert when.get_attribute("title", timeout=1000).endswith("UTC")  # type: ignore[union-attr]
        stamp = when.get_attribute("datetime")
        assert stamp is not None
        hour_utc = int(stamp[11:13])
        shown = inner.evaluate(
            "(s) => new Intl.DateTimeFormat(undefined, {hour: 'numeric', hourCycle: 'h23'})"
            ".format(new Date(s))",
            stamp,
        )
        assert int(shown) == (hour_utc + 9) % 24
        tab.page.keyboard.press("Home")
        expect(frame.locator("#details")).to_be_visible()
        tab.page.keyboard.press("End")
        first.locator("summary").click()
        expect(first.locator("details")).to_have_attribute("open", "")
        screenshot(tab.page, "history", width)
        assert inner.evaluate("window.__csp") == []


def test_an_unknown_caller_leads_to_a_search_that_finds_them(
    browser: Browser, make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    with flex_tab(browser, make_connector, demo, width=400) as tab:
        frame = tab.page.frame_locator("#crm")
        inner = _frame(tab.page, fragment_url(tab.connector, UNKNOWN))
        expect(frame.locator("#name")).to_have_text("No profile")
        expect(frame.locator("#search")).to_be_visible()
        # The agent's next step: the search box has the focus already.
        expect(frame.locator("#search-value")).to_be_focused()
        screenshot(tab.page, "not-found", 400)

        # The caller gives an email, typed as people type them.
        frame.locator("#search-value").fill("  Ada@Example.COM ")
        frame.locator("#search-value").press("Enter")
        expect(frame.locator("#name")).to_have_text("Ada Lovelace")
        # ... or an identifier the connection lists, by its label in the connection file.
        frame.locator("#search-by").select_option(label="Customer ID")
        frame.locator("#search-value").fill("u-grace")
        frame.locator("button[type=submit]").click()
        expect(frame.locator("#name")).to_have_text("Grace Hopper")
        # A phone number in a local format the agent hears.
        frame.locator("#search-by").select_option("from")
        frame.locator("#search-value").fill("+44 7700 900123")
        frame.locator("#search-value").press("Enter")
        expect(frame.locator("#name")).to_have_text("Alan Turing")
        assert inner.evaluate("location.href") == f"{tab.connector.url}/cards/view"
        assert tab.wire.posts() == 4
        assert_kept_out_of_urls(
            tab.wire, [*secret_forms(tab.connector.agent_token, ALAN, UNKNOWN), "u-grace", "Ada@"]
        )
        assert inner.evaluate("window.__csp") == []


def test_stale_partial_and_unavailable_cards_each_say_so(
    browser: Browser, make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox(data="demo")
    with flex_tab(
        browser, make_connector, sandbox, width=400, card_ttl_seconds=0, stale_for_seconds=60
    ) as tab:
        frame = tab.page.frame_locator("#crm")
        _frame(tab.page, fragment_url(tab.connector, ADA))
        expect(frame.locator("#name")).to_have_text("Ada Lovelace")
        expect(frame.locator(".notice")).to_have_count(0)

        # Segment's events fail: the card comes without them, and says which part is missing.
        sandbox.control.set_faults(error_rate=1.0, path_contains="/events")
        _frame(tab.page, fragment_url(tab.connector, ALAN))
        expect(frame.locator("#name")).to_have_text("Alan Turing")
        expect(frame.locator("#partial")).to_contain_text("events")
        screenshot(tab.page, "partial", 400)

        # Segment refuses every connection: the cached card, marked as such.
        sandbox.control.set_faults(outage="refuse", seconds=20)
        try:
            _frame(tab.page, fragment_url(tab.connector, ADA))
            expect(frame.locator("#name")).to_have_text("Ada Lovelace")
            expect(frame.locator("#stale")).to_contain_text("cache")
            screenshot(tab.page, "stale", 400)

            # A caller never seen: nothing cached, a clear line, and the search still there.
            _frame(tab.page, fragment_url(tab.connector, "+33612345678"))
            expect(frame.locator("#name")).to_have_text("Profile unavailable")
            expect(frame.locator("#search")).to_be_visible()
            screenshot(tab.page, "unavailable", 400)
        finally:
            sandbox.sandbox.faults.clear()


def test_a_withheld_caller_id_offers_the_search(
    browser: Browser, make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    with flex_tab(browser, make_connector, demo, width=400) as tab:
        frame = tab.page.frame_locator("#crm")
        _frame(tab.page, fragment_url(tab.connector, "anonymous"))
        expect(frame.locator("#name")).to_have_text("Caller ID withheld")
        expect(frame.locator("#search-value")).to_be_focused()
        assert re.search(r"search above", frame.locator("header").inner_text())


def _frame(page: Page, url: str) -> Frame:
    """Point the container at `url` and wait for the lookup to finish."""
    frame = frame_to(page, url)
    settled(frame)
    return frame


# Two people behind one number, stored in two formats (a household, or two sign-ups).
HOUSEHOLD = [
    {"type": "identify", "userId": "u-pat", "traits": {"name": "Pat Doe", "phone": "+14155550199"}},
    {
        "type": "identify",
        "userId": "u-sam",
        "traits": {"name": "Sam Doe", "phone": "(415) 555-0199"},
    },
]
BOTH_FORMATS = {"phone_formats": ["e164", "national"]}


def test_several_profiles_are_listed_with_why_each_matched(
    make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox(HOUSEHOLD)
    connector = make_connector(sandbox, **BOTH_FORMATS)
    card = connector.card(**{"from": "+14155550199"}).json()
    asked = sandbox.control.stats(detail=True)["profile_api"]["by_lookup"]
    assert [key for key in asked if "555-0199" in key] == ["traits phone:%28415%29%20555-0199"]
    assert card["profile"]["name"] == "Pat Doe"
    assert card["lookup"]["identifier"] == "phone:+14155550199"
    (other,) = card["lookup"]["other_matches"]
    assert other["name"] == "Sam Doe" and other["identifier"] == "phone:(415) 555-0199"
    assert other["segment_id"] and other["segment_id"] != card["profile"]["segment_id"]
    # Studio's flat answer is the first's, and says there are two: a flow greets by name at 1
    flat = connector.http.post("/v1/studio/lookup", data={"From": "+14155550199"}).json()
    assert (flat["name"], flat["matches"]) == ("Pat Doe", 2)
    # Asked by the identifier that found one of them, the card is that one's, alone.
    picked = connector.card(identifier=other["identifier"]).json()
    assert picked["profile"]["name"] == "Sam Doe" and picked["lookup"]["other_matches"] == []


def test_one_profile_under_both_formats_is_one_match(
    make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox(
        [
            {
                "type": "identify",
                "userId": "u-kim",
                "traits": {"name": "Kim", "phone": "+14155550188"},
            },
            {"type": "identify", "userId": "u-kim", "traits": {"phone": "(415) 555-0188"}},
        ]
    )
    connector = make_connector(sandbox, **BOTH_FORMATS)
    card = connector.card(**{"from": "+14155550188"}).json()
    assert card["profile"]["name"] == "Kim" and card["lookup"]["other_matches"] == []


def test_the_agent_picks_among_several_profiles(
    browser: Browser, make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox(HOUSEHOLD)
    for width in (400, 900):
        with flex_tab(
            browser, make_connector, sandbox, width=width, phone_formats=["e164", "national"]
        ) as tab:
            frame = tab.page.frame_locator("#crm")
            _frame(tab.page, fragment_url(tab.connector, "+14155550199"))
            expect(frame.locator("#name")).to_have_text("Several profiles match")
            choices = frame.locator("#matches button")
            expect(choices).to_have_count(2)
            expect(choices.nth(0)).to_contain_text("Pat Doe")
            expect(choices.nth(0)).to_contain_text("matched phone:+14155550199")
            expect(choices.nth(1)).to_contain_text("matched phone:(415) 555-0199")
            screenshot(tab.page, "several", width)
            choices.nth(1).click()
            expect(frame.locator("#name")).to_have_text("Sam Doe")
            assert_kept_out_of_urls(tab.wire, secret_forms(tab.connector.agent_token, "4155550199"))


def test_without_all_matches_only_the_first_is_asked(
    make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox(HOUSEHOLD)
    connector = make_connector(sandbox, all_matches=False, **BOTH_FORMATS)
    card = connector.card(**{"from": "+14155550199"}).json()
    assert card["profile"]["name"] == "Pat Doe" and card["lookup"]["other_matches"] == []
    asked = sandbox.control.stats(detail=True)["profile_api"]["by_lookup"]
    assert asked and not [key for key in asked if "555-0199" in key]  # the national format


def test_the_history_tab_shows_the_ledger_and_the_agent_unlinks_a_wrong_match(
    browser: Browser, make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox(data="demo")
    writeback = f'\n[writeback]\nenabled = true\ntracking_api_url = "{sandbox.url}"\n'
    with flex_tab(browser, make_connector, sandbox, width=400, extra=writeback) as tab:
        for task, topic in (("WT1", "billing"), ("WT2", "returns")):
            answer = tab.connector.http.post(
                "/v1/events",
                json={
                    "from": ADA,
                    "event": "Flex - Engagement Completed",
                    "TaskSid": task,
                    "Channel": "voice",
                    "properties": {"codes": {"topic": topic}, "sentiment": "positive"},
                },
            )
            assert answer.status_code == 202, answer.text
        frame = tab.page.frame_locator("#crm")
        _frame(tab.page, fragment_url(tab.connector, ADA) + "&TaskSid=WT-wrong-match")
        frame.locator("#tab-history").click()
        summary = frame.locator("#engagement")
        expect(summary).to_contain_text("Inbound engagements2")
        expect(summary).to_contain_text("returns")  # the last topic
        first = frame.locator("#events li").first
        expect(first).to_contain_text("Flex - Engagement Completed")
        expect(first).to_contain_text("voice")
        screenshot(tab.page, "engagement", 400)

        # The match is wrong: two clicks (the second confirms) record the correction.
        unlink = frame.locator("#unlink")
        unlink.click()
        expect(unlink).to_have_text("Confirm: not this customer")
        unlink.click()
        expect(frame.locator("#name")).to_have_text("Not this customer")
        expect(frame.locator("#search-value")).to_be_visible()
        screenshot(tab.page, "unlinked", 400)
        assert_kept_out_of_urls(tab.wire, secret_forms(tab.connector.agent_token, ADA))
        unlinked = tab.connector.card(**{"from": ADA}).json()  # (a GET with the caller in it)
        assert unlinked["found"] is False and unlinked["lookup"]["reason"] == "unlinked"
        # The correction reached Segment with what matched and the task's id (the fragment's).
        correction = delivered(sandbox, "u-ada", "Flex - Profile Unlinked")
        assert correction["task_sid"] == "WT-wrong-match"
        assert correction["matched_identifier"] == "phone:+14155550123"


def test_a_masked_trait_reads_hidden_on_the_page(
    browser: Browser, make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    # The demo file's City trait, hidden from agents (the demo token is an agent's).
    with flex_tab(browser, make_connector, demo, width=400) as tab:
        text = tab.connector.config.read_text()
        listed = 'key = "city"\nlabel = "City"\n'
        tab.connector.config.write_text(text.replace(listed, listed + 'mask = "hidden"\n'))
        frame = tab.page.frame_locator("#crm")
        inner = _frame(tab.page, fragment_url(tab.connector, ADA))
        expect(frame.locator("#name")).to_have_text("Ada Lovelace")
        traits = frame.locator("#traits")
        expect(traits).to_contain_text("CityHidden")
        assert "San Francisco" not in inner.content()  # nowhere: not in History's details either


def delivered(sandbox: RunningSandbox, user_id: str, event: str) -> dict[str, Any]:
    """The properties of `event` once it is on the profile, as the Profile API returns it."""
    url = f"{sandbox.url}/v1/spaces/{SPACE}/collections/users/profiles/user_id:{user_id}/events"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = httpx.get(url, auth=(TOKEN, ""), params={"include": event}, timeout=10).json()
        if found.get("data"):
            properties: dict[str, Any] = found["data"][0]["properties"]
            return properties
        time.sleep(0.2)
    raise AssertionError(f"{event} never reached {user_id}'s profile")
