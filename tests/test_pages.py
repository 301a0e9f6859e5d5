"""`/cards/view`, the card page for Flex's CRM container: over HTTP, and in headless Chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from urllib.parse import urlencode

import httpx
import pytest
from flask import Flask, request
from markupsafe import escape
from playwright.sync_api import Browser, Frame, Page, sync_playwright

from connector.loopback import LoopbackServer
from tests.conftest import ConnectorFactory, RunningConnector, RunningSandbox, SandboxFactory

ADA = "+14155550123"
FLEX = "https://flex.twilio.com"


def view(connector: RunningConnector, token: str | None, **params: str) -> httpx.Response:
    """As the CRM container's iframe asks: no headers, the token in the URL."""
    query = {**params, **({"Token": token} if token else {})}
    return httpx.get(f"{connector.url}/cards/view", params=query, timeout=15)


def test_the_card_page_for_the_crm_container(connector: RunningConnector) -> None:
    page = view(connector, connector.agent_token, **{"from": ADA})
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert "Ada Lovelace" in html and "$1,850.00" in html and "VIP" in html
    assert "Owl Goods (demo)" in html
    # The URL carries the agent's token: never cached, never sent on as a Referer, no script,
    # framed only by Flex.
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and f"frame-ancestors {FLEX}" in policy
    assert "<script" not in html and connector.agent_token not in html


def test_no_profile_is_a_page_too(connector: RunningConnector) -> None:
    page = view(connector, connector.agent_token, **{"from": "+14155550100"})
    assert page.status_code == 200 and "No profile" in page.text


@pytest.mark.parametrize(
    ("token", "params", "status", "title"),
    [
        (None, {"from": ADA}, 401, "Sign in again"),
        ("forged", {"from": ADA}, 401, "Sign in again"),
        ("agent", {"from": "junk-input-xyz" * 20}, 400, "Nothing to look up"),  # too long
        ("agent", {"phone": "junk-input-xyz"}, 400, "Nothing to look up"),
        ("agent", {}, 400, "Nothing to look up"),
    ],
)
def test_errors_are_pages_for_the_iframe(
    connector: RunningConnector,
    token: str | None,
    params: dict[str, str],
    status: int,
    title: str,
) -> None:
    page = view(connector, connector.agent_token if token == "agent" else token, **params)
    assert page.status_code == status
    assert page.headers["Content-Type"].startswith("text/html") and title in page.text
    assert "junk-input-xyz" not in page.text


@pytest.mark.parametrize(
    ("caller", "line"),
    [
        ("anonymous", "Caller ID withheld"),
        ("+266696687", "Caller ID withheld"),
        ("", "Caller ID withheld"),
        ("client:agent_bob", "Not a customer&#39;s address"),
    ],
)
def test_a_withheld_caller_is_a_page_that_says_so(
    connector: RunningConnector, caller: str, line: str
) -> None:
    page = view(connector, connector.agent_token, **{"from": caller})
    assert page.status_code == 200 and line in page.text
    assert "No profile" not in page.text


def test_a_missing_space_is_a_page_that_tells_the_admin_what_to_fix(
    make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    connector = make_connector(make_sandbox(data="demo"))
    text = connector.config.read_text()
    connector.config.write_text(text.replace('space_id = "spa_test"', 'space_id = "spa_tset"'))
    page = view(connector, connector.agent_token, **{"from": ADA})
    assert page.status_code == 503 and "check space_id in the connection file" in page.text


def test_segment_down_is_a_503_page(
    make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox(data="demo")
    connector = make_connector(sandbox)
    assert view(connector, connector.agent_token, email="nobody@example.com").status_code == 200
    sandbox.control.set_faults(error_rate=1.0)
    page = view(connector, connector.agent_token, **{"from": "+447700900123"})
    assert page.status_code == 503 and "Profile unavailable" in page.text


def test_hostile_trait_values_are_escaped(
    make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    attack = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    sandbox = make_sandbox(
        [
            {
                "type": "identify",
                "userId": "u-mallory",
                "traits": {"phone": ADA, "name": attack, "plan": attack},
            }
        ]
    )
    connector = make_connector(sandbox)
    html = view(connector, connector.agent_token, **{"from": ADA}).text
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html


# --- in a real browser ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs Debian's chromium (.ci/run); it is missing")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield launched
        launched.close()


def parent_page() -> LoopbackServer:
    """A page framing `?src=`, as Flex's CRM container frames the card, on an origin of its own."""
    app = Flask(__name__)

    @app.get("/")
    def index() -> str:
        return f'<iframe id="crm" src="{escape(request.args["src"])}" height="600"></iframe>'

    return LoopbackServer(app).start()


def test_the_card_renders_in_chromium_inside_flex_and_nowhere_else(
    browser: Browser, make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    flex = parent_page()  # its origin stands in for https://flex.twilio.com
    elsewhere = parent_page()
    try:
        connector = make_connector(demo, f'\n[cors]\nallowed_origins = ["{flex.url}"]\n')
        query = urlencode({"from": ADA, "Token": connector.agent_token})
        framing = urlencode({"src": f"{connector.url}/cards/view?{query}"})
        context = browser.new_context()
        page = context.new_page()
        violations: list[str] = []
        page.on("console", lambda message: violations.append(message.text))

        page.goto(f"{flex.url}/?{framing}")
        frame = framed(page)
        assert frame is not None
        frame.wait_for_selector("#name")
        assert frame.inner_text("#name") == "Ada Lovelace"
        assert "$1,850.00" in frame.inner_text("#traits")
        assert "VIP" in frame.inner_text("#audiences")
        assert not [v for v in violations if "Content Security Policy" in v], violations

        page.goto(f"{elsewhere.url}/?{framing}")
        page.wait_for_load_state("load")
        blocked = framed(page)
        assert blocked is None or "Ada Lovelace" not in (blocked.content() or "")
        context.close()
    finally:
        flex.stop()
        elsewhere.stop()


def framed(page: Page) -> Frame | None:
    """The document inside the parent page's iframe."""
    iframe = page.wait_for_selector("#crm")
    assert iframe is not None
    return iframe.content_frame()
