"""`/cards/view`, the card page for Flex's CRM container: over HTTP, and in headless Chromium.

Flex frames `/cards/view#from=...&Token=...`; the page's script posts the fragment's fields to
`POST /cards/view`, which answers HTML fragments. Neither the token nor the caller may appear in
a request line.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Request,
    expect,
)

from tests.browser import CSP_WATCH, frame_to, parent_page
from tests.conftest import ConnectorFactory, RunningConnector, RunningSandbox, SandboxFactory

ADA = "+14155550123"
ALAN = "+447700900123"
FLEX = "https://flex.twilio.com"


def view(connector: RunningConnector, token: str | None, **fields: str) -> httpx.Response:
    """As the page's script asks: the fragment's fields as a form, nothing in the URL."""
    body = {**fields, **({"Token": token} if token else {})}
    return httpx.post(f"{connector.url}/cards/view", data=body, timeout=15)


def test_the_shell_needs_no_credentials_and_holds_no_data(connector: RunningConnector) -> None:
    page = httpx.get(f"{connector.url}/cards/view", timeout=15)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert '<script src="/cards/view.js" defer></script>' in page.text
    assert "Ada" not in page.text and connector.agent_token not in page.text
    policy = page.headers["Content-Security-Policy"]
    for directive in (
        "default-src 'none'",
        "script-src 'self'",
        "connect-src 'self'",
        "form-action 'none'",
        f"frame-ancestors {FLEX}",
    ):
        assert directive in policy
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    script = httpx.get(f"{connector.url}/cards/view.js", timeout=15)
    assert script.status_code == 200 and script.headers["Content-Type"].startswith(
        "text/javascript"
    )
    assert script.headers["X-Content-Type-Options"] == "nosniff"
    assert "no-cache" in script.headers["Cache-Control"] and script.headers["ETag"]
    assert "history.replaceState" in script.text and "hashchange" in script.text


def test_the_card_is_a_fragment_posted_for(connector: RunningConnector) -> None:
    page = view(connector, connector.agent_token, **{"from": ADA})
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    html = page.text
    assert "Ada Lovelace" in html and "$1,850.00" in html and "VIP" in html
    assert "Owl Goods (demo)" in html
    assert html.lstrip().startswith("<article") and "<html" not in html
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script" not in html and connector.agent_token not in html


def test_no_profile_is_a_fragment_too(connector: RunningConnector) -> None:
    page = view(connector, connector.agent_token, **{"from": "+14155550100"})
    assert page.status_code == 200 and "No profile" in page.text


@pytest.mark.parametrize(
    ("token", "fields", "status", "title"),
    [
        (None, {"from": ADA}, 401, "Sign in again"),
        ("forged", {"from": ADA}, 401, "Sign in again"),
        ("agent", {"from": "junk-input-xyz" * 20}, 400, "Nothing to look up"),  # too long
        ("agent", {"phone": "junk-input-xyz"}, 400, "Nothing to look up"),
        ("agent", {}, 400, "Nothing to look up"),
        ("agent", {"from": ADA, "padding": "x" * 70_000}, 413, "Nothing to look up"),
    ],
)
def test_errors_are_fragments_for_the_script(
    connector: RunningConnector,
    token: str | None,
    fields: dict[str, str],
    status: int,
    title: str,
) -> None:
    page = view(connector, connector.agent_token if token == "agent" else token, **fields)
    assert page.status_code == status
    assert page.headers["Content-Type"].startswith("text/html") and title in page.text
    assert page.text.lstrip().startswith("<article")
    assert "junk-input-xyz" not in page.text


@pytest.mark.parametrize("name", ["Token", "token", "from", "From", "phone", "email", "identifier"])
def test_a_token_or_a_caller_in_the_query_string_is_refused(
    connector: RunningConnector, name: str
) -> None:
    secret = connector.agent_token if name.lower() == "token" else ADA
    page = httpx.get(f"{connector.url}/cards/view", params={name: secret}, timeout=15)
    assert page.status_code == 400 and page.headers["Content-Type"].startswith("text/html")
    assert "/cards/view#from=" in page.text  # says how to do it instead
    assert "<script" not in page.text  # and does not go on to look anyone up
    assert secret not in page.text
    # Posting does not make a query string acceptable, and a token there is not read at all.
    body = {"Token": connector.agent_token} if name.lower() != "token" else {"from": ADA}
    posted = httpx.post(f"{connector.url}/cards/view", params={name: secret}, data=body)
    assert posted.status_code == (401 if name.lower() == "token" else 400), posted.text


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


def test_segment_down_is_a_503_fragment(
    make_connector: ConnectorFactory, make_sandbox: SandboxFactory
) -> None:
    sandbox = make_sandbox(data="demo")
    connector = make_connector(sandbox)
    assert view(connector, connector.agent_token, email="nobody@example.com").status_code == 200
    sandbox.control.set_faults(error_rate=1.0)
    page = view(connector, connector.agent_token, **{"from": ALAN})
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


def fragment_url(connector: RunningConnector, caller: str) -> str:
    return f"{connector.url}/cards/view#" + urlencode(
        {"from": caller, "Token": connector.agent_token}, quote_via=quote
    )


@dataclass
class Wire:
    """Request lines as the connector's server received them, beside the browser's own list."""

    request_lines: list[str] = field(default_factory=list)
    browser: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, connector: RunningConnector) -> None:
        inner = connector.app.wsgi_app

        def recording(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            with self.lock:
                self.request_lines.append(f"{environ['REQUEST_METHOD']} {environ['REQUEST_URI']}")
            return inner(environ, start_response)

        connector.app.wsgi_app = recording  # type: ignore[method-assign]

    def watch(self, context: BrowserContext) -> None:
        context.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        self.browser.append(request)

    def posts(self) -> int:
        with self.lock:
            return sum(line == "POST /cards/view" for line in self.request_lines)


def secret_forms(token: str, *phones: str) -> list[str]:
    """What must not show in a URL: the token raw and encoded; the digits of each number."""
    return [token, quote(token, safe=""), *(phone.lstrip("+") for phone in phones)]


def assert_kept_out_of_urls(wire: Wire, secrets: Iterable[str]) -> None:
    """No request line, browser-side (fragments are never sent) or server-side, holds a secret."""
    assert wire.browser and wire.request_lines
    for request in wire.browser:
        sent = urlsplit(request.url)._replace(fragment="").geturl()
        headers = " ".join(request.headers.values())
        for secret in secrets:
            assert secret not in sent, f"{secret!r} in {request.method} {sent}"
            assert secret not in headers, f"{secret!r} in a header of {request.method} {sent}"
    for line in wire.request_lines:
        for secret in secrets:
            assert secret not in line, f"{secret!r} in the request line {line}"


@dataclass
class FlexTab:
    """A browser tab on a stand-in for flex.twilio.com, with the connector it may frame."""

    connector: RunningConnector
    wire: Wire
    page: Page
    console: list[str]


@contextmanager
def flex_tab(
    browser: Browser,
    make_connector: ConnectorFactory,
    demo: RunningSandbox,
    timezone: str | None = None,
    width: int = 900,
    extra: str = "",
    **settings: Any,
) -> Iterator[FlexTab]:
    """`extra` is added to the connection file, `settings` go to its [lookup]
    (tests.conftest.start_connector)."""
    flex = parent_page()  # its origin stands in for https://flex.twilio.com
    try:
        cors = f'\n[cors]\nallowed_origins = ["{flex.url}"]\n'
        connector = make_connector(demo, cors + extra, **settings)
        wire = Wire()
        wire.record(connector)
        context = browser.new_context(
            timezone_id=timezone, viewport={"width": width, "height": 900}
        )
        context.add_init_script(CSP_WATCH)
        wire.watch(context)
        page = context.new_page()
        console: list[str] = []
        page.on("console", lambda message: console.append(message.text))
        page.goto(f"{flex.url}/")
        yield FlexTab(connector, wire, page, console)
        context.close()
    finally:
        flex.stop()


def test_the_card_renders_in_chromium_from_the_fragment_alone(
    browser: Browser, make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    with flex_tab(browser, make_connector, demo) as tab:
        connector, wire, page, console = tab.connector, tab.wire, tab.page, tab.console
        frame = frame_to(page, fragment_url(connector, ADA))
        expect(frame.locator("#name")).to_have_text("Ada Lovelace")
        assert "$1,850.00" in frame.inner_text("#traits")
        assert "VIP" in frame.inner_text("#audiences")
        assert frame.evaluate("document.title") == "Ada Lovelace · Owl Goods (demo)"
        # The fragment left the address bar (replaced in place: the history keeps no copy).
        assert frame.evaluate("location.href") == f"{connector.url}/cards/view"
        assert frame.evaluate("window.__csp") == []
        assert not [line for line in console if "Content Security Policy" in line], console
        assert wire.posts() == 1
        assert_kept_out_of_urls(wire, secret_forms(connector.agent_token, ADA))


def test_switching_the_fragment_switches_the_card_without_a_reload(
    browser: Browser, make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    with flex_tab(browser, make_connector, demo) as tab:
        connector, wire, page = tab.connector, tab.wire, tab.page
        frame = frame_to(page, fragment_url(connector, ADA))
        expect(frame.locator("#name")).to_have_text("Ada Lovelace")
        frame.evaluate("window.sameDocument = true")
        frame.locator("#search-value").fill("u-grace")  # typed, never sent

        # The agent takes another task: Flex changes the iframe's fragment only.
        frame = frame_to(page, fragment_url(connector, ALAN))
        expect(frame.locator("#name")).to_have_text("Alan Turing")
        expect(frame.locator("#search-value")).to_have_value("")  # the last task's search
        assert frame.evaluate("window.sameDocument") is True  # no reload
        assert frame.evaluate("location.hash") == ""
        # ... and back to the first one (the same fragment as before is a change again).
        frame = frame_to(page, fragment_url(connector, ADA))
        expect(frame.locator("#name")).to_have_text("Ada Lovelace")
        assert frame.evaluate("window.sameDocument") is True
        assert frame.evaluate("window.__csp") == []

        assert wire.request_lines.count("GET /cards/view") == 1 and wire.posts() == 3
        assert_kept_out_of_urls(wire, secret_forms(connector.agent_token, ADA, ALAN))


def test_the_card_page_is_framed_by_allowed_origins_only(
    browser: Browser, make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    flex, elsewhere = parent_page(), parent_page()
    try:
        connector = make_connector(demo, f'\n[cors]\nallowed_origins = ["{flex.url}"]\n')
        wire = Wire()
        wire.record(connector)
        context = browser.new_context()
        page = context.new_page()
        page.goto(f"{elsewhere.url}/")
        with page.expect_event("console", lambda message: "frame-ancestors" in message.text):
            blocked = frame_to(page, fragment_url(connector, ADA))
        page.wait_for_load_state("load")
        assert "Ada Lovelace" not in (blocked.content() or "")
        assert wire.posts() == 0  # the shell never ran, so it never asked for the card
        context.close()
    finally:
        flex.stop()
        elsewhere.stop()
