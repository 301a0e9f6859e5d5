"""Headless Chromium for the page and recipe tests: Debian's chromium, driven by Playwright."""

from __future__ import annotations

import shutil

from flask import Flask
from playwright.sync_api import Browser, Frame, Page, Playwright

from connector.serving.loopback import LoopbackServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Every frame (the card page's included) reports Content-Security-Policy violations here.
CSP_WATCH = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__csp.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


def launch(playwright: Playwright, executable: str) -> Browser:
    return playwright.chromium.launch(
        executable_path=executable,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )


def parent_page() -> LoopbackServer:
    """An empty page with an iframe, on an origin of its own: Flex, or a site that is not Flex.

    Tests set the iframe's `src` from script, as Flex's CRM container does, so the card's URL
    (and its fragment) never rides this page's own URL.
    """
    app = Flask(__name__)

    @app.get("/")
    def index() -> str:
        # The container as wide as the window: a test's viewport is the card's width.
        return (
            '<!doctype html><title>Flex</title><body style="margin:0">'
            '<iframe id="crm" style="border:0;width:100%;height:100vh;display:block"></iframe>'
        )

    return LoopbackServer(app).start()


def frame_to(page: Page, url: str) -> Frame:
    """Point the parent page's iframe at `url` and return the document inside it."""
    page.evaluate("(url) => { document.getElementById('crm').src = url; }", url)
    iframe = page.wait_for_selector("#crm")
    assert iframe is not None
    frame = iframe.content_frame()
    assert frame is not None
    return frame
