"""The README's integration recipes, extracted from README.md and run as written.

Each recipe sits between `<!-- recipe:NAME -->` and `<!-- /recipe -->`. Browser recipes run in
Chromium on a page served from an allowed origin (real CORS), with Flex's `manager`, `flex` and
`task` stubbed as plain objects; Studio recipes are sent as Twilio sends them: the widget's
parameters, signed with the account's auth token.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Error, Page, Request, expect
from twilio.request_validator import RequestValidator

from connector.serving.loopback import LoopbackServer
from tests.browser import CSP_WATCH, frame_to, parent_page
from tests.conftest import (
    TWILIO_AUTH_TOKEN,
    ConnectorFactory,
    RunningConnector,
    RunningSandbox,
    SandboxFactory,
)
from tests.test_card_page import BOTH_FORMATS, HOUSEHOLD

README = Path(__file__).resolve().parent.parent / "README.md"
PLACEHOLDER = "https://connector.example.com"
ADA = "+14155550123"
ALAN = "+447700900123"
FLOW_SID = "FW" + "0123456789abcdef" * 2


def recipe(name: str) -> str:
    """The code between a recipe's markers in README.md."""
    text = README.read_text(encoding="utf-8")
    pattern = rf"<!-- recipe:{re.escape(name)} -->\n```\w+\n(.*?)\n```\n<!-- /recipe -->"
    found = re.findall(pattern, text, flags=re.DOTALL)
    assert len(found) == 1, f"README.md has {len(found)} recipes named {name}"
    code: str = found[0]
    assert PLACEHOLDER in code
    return code


# --- Flex plugins, in Chromium -------------------------------------------------------------------


@pytest.fixture
def flex() -> Iterator[LoopbackServer]:
    """A page on an origin of its own, which the connector's connection file allows."""
    server = parent_page()
    yield server
    server.stop()


def allowing(origin: str, extra: str = "") -> str:
    return f'\n[cors]\nallowed_origins = ["{origin}"]\n{extra}'


def plugin_page(browser: Browser, origin: str, code: str, token: str) -> tuple[Page, list[str]]:
    """A page at `origin` running a recipe, with Flex's manager stubbed; the URLs it requests."""
    page = browser.new_context().new_page()
    urls: list[str] = []

    def seen(request: Request) -> None:
        urls.append(urlsplit(request.url)._replace(fragment="").geturl())

    page.context.on("request", seen)
    page.context.add_init_script(CSP_WATCH)
    page.goto(f"{origin}/")
    stubs = (
        f"var manager = {{user: {{token: {json.dumps(token)}}}}};\n"
        "var listeners = {};\n"
        "var flex = {CRMContainer: {defaultProps: {}}, "
        "Actions: {addListener: (name, handler) => { listeners[name] = handler; }}};\n"
    )
    page.add_script_tag(content=stubs)
    page.add_script_tag(content=code)
    return page, urls


def assert_no_secret_in(urls: list[str], *secrets: str) -> None:
    assert urls
    for url in urls:
        for secret in secrets:
            assert secret not in url, f"{secret!r} in a request to {url}"


def test_flex_plugin_fetch_recipe(
    browser: Browser, make_connector: ConnectorFactory, demo: RunningSandbox, flex: LoopbackServer
) -> None:
    connector = make_connector(demo, allowing(flex.url))
    code = recipe("flex-fetch").replace(PLACEHOLDER, connector.url)
    page, urls = plugin_page(browser, flex.url, code, connector.agent_token)
    card = page.evaluate("(from) => fetchProfileCard({attributes: {from}}, manager)", ADA)
    assert card["found"] is True and card["profile"]["name"] == "Ada Lovelace"
    assert_no_secret_in(urls, connector.agent_token, ADA.lstrip("+"))
    page.context.close()


def test_the_recipe_is_refused_by_cors_elsewhere(
    browser: Browser, make_connector: ConnectorFactory, demo: RunningSandbox, flex: LoopbackServer
) -> None:
    elsewhere = parent_page()
    try:
        connector = make_connector(demo, allowing(flex.url))
        code = recipe("flex-fetch").replace(PLACEHOLDER, connector.url)
        page, _ = plugin_page(browser, elsewhere.url, code, connector.agent_token)
        with pytest.raises(Error, match="Failed to fetch"):
            page.evaluate("(from) => fetchProfileCard({attributes: {from}}, manager)", ADA)
        page.context.close()
    finally:
        elsewhere.stop()


def test_a_plugin_can_read_retry_after(
    browser: Browser, make_connector: ConnectorFactory, demo: RunningSandbox, flex: LoopbackServer
) -> None:
    """Access-Control-Expose-Headers lists Retry-After, so the recipe can say when to retry."""
    limit = "\n[auth]\nagent_lookups_per_minute = 1\n"
    connector = make_connector(demo, allowing(flex.url, limit))
    # This lookup spends the agent's one lookup a minute: the recipe's is a 429.
    exposed = connector.http.get("/v1/cards", params={"phone": ADA}, headers={"Origin": flex.url})
    assert "Retry-After" in exposed.headers["Access-Control-Expose-Headers"].split(", ")
    code = recipe("flex-fetch").replace(PLACEHOLDER, connector.url)
    page, _ = plugin_page(browser, flex.url, code, connector.agent_token)
    with pytest.raises(Error, match=r"Too many lookups by this agent.*\(retry in \d+ s\)"):
        page.evaluate("(from) => fetchProfileCard({attributes: {from}}, manager)", ADA)
    page.context.close()


def test_crm_container_uri_callback_recipe(
    browser: Browser, make_connector: ConnectorFactory, demo: RunningSandbox, flex: LoopbackServer
) -> None:
    connector = make_connector(demo, allowing(flex.url))
    code = recipe("crm-uri-callback").replace(PLACEHOLDER, connector.url)
    page, urls = plugin_page(browser, flex.url, code, connector.agent_token)
    uri = "(from) => flex.CRMContainer.defaultProps.uriCallback(from && {attributes: {from}})"

    frame = frame_to(page, page.evaluate(uri, None))  # no task: the page waits for one
    expect(frame.locator("#name")).to_have_text("Waiting for a caller")
    frame = frame_to(page, page.evaluate(uri, ADA))
    expect(frame.locator("#name")).to_have_text("Ada Lovelace")
    frame = frame_to(page, page.evaluate(uri, f"whatsapp:{ALAN}"))  # the agent switched task
    expect(frame.locator("#name")).to_have_text("Alan Turing")
    assert frame.evaluate("location.hash") == ""
    assert frame.evaluate("window.__csp") == []
    assert_no_secret_in(urls, connector.agent_token, ADA.lstrip("+"), ALAN.lstrip("+"))
    page.context.close()


def test_flex_plugin_event_recipe(
    browser: Browser,
    make_connector: ConnectorFactory,
    make_sandbox: SandboxFactory,
    flex: LoopbackServer,
) -> None:
    sandbox = make_sandbox(data="demo")
    connector = make_connector(sandbox, allowing(flex.url, writeback(sandbox)))
    code = recipe("flex-event").replace(PLACEHOLDER, connector.url)
    page, urls = plugin_page(browser, flex.url, code, connector.agent_token)
    accepted = page.evaluate(
        "(from) => listeners.afterCompleteTask("
        "{task: {attributes: {from}, taskChannelUniqueName: 'voice'}})",
        ADA,
    )
    assert accepted["queued"] is True and accepted["identified"] is True
    event = delivered(sandbox, "Flex - Engagement Completed")
    assert event["properties"] == {"channel": "voice"}
    assert_no_secret_in(urls, connector.agent_token, ADA.lstrip("+"))
    page.context.close()


# --- Studio, signed as Twilio signs ------------------------------------------------------------

LIQUID = re.compile(r"\{\{\s*([\w.]+)\s*\}\}")


def render(template: str, variables: dict[str, Any]) -> str:
    """Studio's Liquid, as far as the recipes use it: `{{ name }}` replaced by its value."""

    def value(match: re.Match[str]) -> str:
        assert match[1] in variables, f"the recipe uses {match[1]}, which this test cannot fill"
        return str(variables[match[1]])

    return LIQUID.sub(value, template)


def send_widget(
    widget: dict[str, Any], connector: RunningConnector, variables: dict[str, Any]
) -> httpx.Response:
    """What Studio sends for a Make HTTP Request widget: its parameters, signed."""
    properties = widget["properties"]
    assert widget["type"] == "make-http-request" and properties["method"] == "POST"
    assert properties["content_type"].startswith("application/x-www-form-urlencoded")
    assert properties["add_twilio_auth"] is False  # never Twilio's credentials to a third party
    url = properties["url"].replace(PLACEHOLDER, connector.url)
    form = {p["key"]: render(p["value"], variables) for p in properties["parameters"]}
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(url, form)
    return httpx.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=15)


def split(state: dict[str, Any], variables: dict[str, Any]) -> str:
    """The state a Split Based On... widget goes to."""
    value = render(state["properties"]["input"], variables)
    for transition in state["transitions"]:
        for condition in transition.get("conditions", []):
            assert condition["type"] == "equal_to"
            assert [render(a, variables) for a in condition["arguments"]] == [value]
            if condition["value"] == value:
                return str(transition["next"])
    return str(next(t["next"] for t in state["transitions"] if t["event"] == "noMatch"))


def run_lookup_flow(connector: RunningConnector, caller: str) -> tuple[str, dict[str, Any]]:
    """The imported flow for one incoming call: the state it greets from, and what it says."""
    flow = json.loads(recipe("studio-lookup"))
    states = {state["name"]: state for state in flow["states"]}
    trigger = states[flow["initial_state"]]
    name = next(t["next"] for t in trigger["transitions"] if t["event"] == "incomingCall")
    widget = states[name]
    call = {"trigger.call.From": caller, "flow.flow_sid": FLOW_SID}
    response = send_widget(widget, connector, call)
    assert response.status_code == 200, response.text  # Studio's success transition
    parsed = response.json()
    success = next(t["next"] for t in widget["transitions"] if t["event"] == "success")
    variables = {**call, **{f"widgets.{name}.parsed.{k}": v for k, v in parsed.items()}}
    state = states[split(states[success], variables)]
    while state["type"] == "split-based-on":
        state = states[split(state, variables)]
    greeting = state
    assert greeting["type"] == "say-play"
    return greeting["name"], {**parsed, "said": render(greeting["properties"]["say"], variables)}


def test_studio_lookup_recipe(connector: RunningConnector) -> None:
    state, found = run_lookup_flow(connector, ADA)
    assert (found["status"], state) == ("found", "greet_customer")
    assert found["said"] == "Hello Ada Lovelace, thank you for calling."
    state, unknown = run_lookup_flow(connector, "+14155550100")
    assert (unknown["status"], state) == ("not_found", "greet_new_caller")


def test_studio_lookup_recipe_greets_a_shared_number_like_anyone(
    make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox(HOUSEHOLD)  # +14155550199 on Pat, (415) 555-0199 on Sam
    connector = make_connector(sandbox, **BOTH_FORMATS)
    state, answer = run_lookup_flow(connector, "+14155550199")
    assert (answer["status"], answer["name"], answer["matches"]) == ("found", "Pat Doe", 2)
    assert state == "greet_anyone" and "Pat" not in answer["said"]


def test_studio_lookup_recipe_when_segment_is_down(
    make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox(data="demo")
    connector = make_connector(sandbox)
    sandbox.control.set_faults(error_rate=1.0)
    state, answer = run_lookup_flow(connector, ALAN)
    assert (answer["status"], state) == ("unavailable", "greet_anyone")


def test_studio_event_recipe(
    make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox(data="demo")
    connector = make_connector(sandbox, writeback(sandbox))
    widget = json.loads(recipe("studio-event"))
    variables = {
        "trigger.call.From": ADA,
        "flow.flow_sid": FLOW_SID,
        "widgets.main_menu.Digits": "2",
    }
    response = send_widget(widget, connector, variables)
    assert response.status_code == 202, response.text
    event = delivered(sandbox, "Studio - Menu Choice")
    assert event["properties"] == {"choice": "2"}


# --- helpers -----------------------------------------------------------------------------------


def writeback(sandbox: RunningSandbox) -> str:
    return f'\n[writeback]\nenabled = true\ntracking_api_url = "{sandbox.url}"\n'


def delivered(sandbox: RunningSandbox, name: str, within: float = 20.0) -> dict[str, Any]:
    """The event once the connector's drainer has delivered it to Segment (the sandbox)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        events = sandbox.profile("user_id:u-ada", "events").json()["data"]
        found = [event for event in events if event["event"] == name]
        if found:
            event: dict[str, Any] = found[0]
            return event
        time.sleep(0.2)
    raise AssertionError(f"{name!r} never reached Segment")
