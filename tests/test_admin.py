"""`/metrics` and `/admin`: the admin's figures and console, over real HTTP against the sandbox,
under `connector serve` with 2 workers, and in headless Chromium."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser
from prometheus_client.parser import text_string_to_metric_families

from connector.serving.gunicorn import STATE_PREFIX
from connector.serving.processes import served_process
from connector.tls import tls_context
from connector.web.registry import services_of
from connector.writeback.outbox import Outbox
from tests.browser import CSP_WATCH
from tests.conftest import (
    TOKEN,
    WRITE_KEY,
    ConnectorFactory,
    RunningConnector,
    RunningSandbox,
    SandboxFactory,
    connection_toml,
    connector_env,
)

ADA = "+14155550123"
ADMIN = ("admin", "admin-basic-s3cret")
ADMIN_AUTH = '\n[auth]\nadmin_basic_auth_env = "ADMIN_BASIC_AUTH"\n'
ADMIN_ENV = {"ADMIN_BASIC_AUTH": ":".join(ADMIN)}
SAME_SITE = {"X-Connector-Admin": "1"}
DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture
def admin_connector(make_connector: ConnectorFactory, demo: RunningSandbox) -> RunningConnector:
    return make_connector(demo, ADMIN_AUTH, env=ADMIN_ENV)


def admin_token(sandbox: RunningSandbox) -> str:
    token: str = sandbox.control.issue_agent_token(roles=["admin"])["token"]
    return token


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str, **kwargs: object) -> Samples:
    response = httpx.get(f"{url}/metrics", timeout=15, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def figure(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= set(ls))


def console(connector: RunningConnector, path: str = "/admin", **kwargs: object) -> httpx.Response:
    """As the console's script asks: a POST with its header, from the page's own origin."""
    headers = {**SAME_SITE, "Origin": connector.url, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    return httpx.post(f"{connector.url}{path}", headers=headers, timeout=30, **kwargs)  # type: ignore[arg-type]


# --- /metrics ---------------------------------------------------------------------------------


def test_metrics_need_the_admins_credentials(
    admin_connector: RunningConnector, demo: RunningSandbox
) -> None:
    url = admin_connector.url
    assert httpx.get(f"{url}/metrics", timeout=15).status_code == 401
    agent = {"Authorization": f"Bearer {admin_connector.agent_token}"}
    assert httpx.get(f"{url}/metrics", headers=agent, timeout=15).status_code == 403
    wrong = httpx.get(f"{url}/metrics", auth=(ADMIN[0], "not-it"), timeout=15)
    assert wrong.status_code == 401
    studio = httpx.get(f"{url}/metrics", auth=("studio", "x"), timeout=15)
    assert studio.status_code == 401
    as_admin = {"Authorization": f"Bearer {admin_token(demo)}"}
    assert figure(scrape(url, headers=as_admin), "connector_auth_refusals_total") >= 4
    scrape(url, auth=ADMIN)


def test_figures_move_after_lookups(admin_connector: RunningConnector) -> None:
    before = scrape(admin_connector.url, auth=ADMIN)
    for _ in range(3):
        assert admin_connector.card(**{"from": ADA}).status_code == 200
    after = scrape(admin_connector.url, auth=ADMIN)

    def moved(name: str, **labels: str) -> float:
        return figure(after, name, **labels) - figure(before, name, **labels)

    assert moved("connector_requests_total", route="/v1/cards", status="200") == 3
    assert moved("connector_card_cache_lookups_total", result="hit") >= 2
    assert moved("connector_upstream_request_seconds_count") >= 1
    assert moved("connector_upstream_request_seconds_count", section="users/traits") >= 1
    assert moved("connector_flex_token_checks_total", result="valid") >= 1
    time.sleep(1.2)  # the sampler's next reading of the live gauges
    assert figure(scrape(admin_connector.url, auth=ADMIN), "connector_card_cache_entries") >= 1
    text = httpx.get(f"{admin_connector.url}/metrics", auth=ADMIN, timeout=15).text
    for secret in (ADA, "14155550123", admin_connector.agent_token, TOKEN, ADMIN[1]):
        assert secret not in text


def test_under_gunicorn_the_counters_sum_every_workers(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox(data="demo")
    config = tmp_path / "connection.toml"
    auth = ADMIN_AUTH + "agent_lookups_per_minute = 1000000\n"
    config.write_text(connection_toml(sandbox.url, auth), encoding="utf-8")
    token = sandbox.control.issue_agent_token()["token"]
    env = {**connector_env(sandbox.url), **ADMIN_ENV}
    made = 120
    with served_process(config, env, workers=2, threads=8) as served:
        for _ in range(made):  # a connection each, so gunicorn spreads them over its workers
            response = httpx.get(
                f"{served.url}/v1/cards",
                verify=tls_context(),
                params={"from": ADA},
                headers={"Authorization": f"Bearer {token}", "Connection": "close"},
                timeout=15,
            )
            assert response.status_code == 200
        samples = scrape(served.url, auth=ADMIN)
        assert figure(samples, "connector_requests_total", route="/v1/cards", status="200") == made
        state = f"{STATE_PREFIX}{served.process.pid}-*/metrics"
        folders = list(Path(tempfile.gettempdir()).glob(state))
        assert len(folders) == 1
        writers = {f.name for f in folders[0].glob("counter_*.db")}
        assert len(writers) >= 2, writers  # both workers counted some of them
        # the sum holds on every worker's scrape
        again = [scrape(served.url, auth=ADMIN) for _ in range(4)]
        assert {
            figure(s, "connector_requests_total", route="/v1/cards", status="200") for s in again
        } == {made}
        # A worker killed: its live gauges leave the sums (child_exit), its counts stay.
        victim = served.worker_pids()[0]
        assert (folders[0] / f"gauge_livesum_{victim}.db").exists()
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while victim in served.worker_pids() or len(served.worker_pids()) < 2:
            assert time.monotonic() < deadline, "gunicorn did not replace the worker"
            time.sleep(0.1)
        time.sleep(0.5)
        assert not (folders[0] / f"gauge_livesum_{victim}.db").exists()
        samples = scrape(served.url, auth=ADMIN)
        assert figure(samples, "connector_requests_total", route="/v1/cards", status="200") == made


# --- /admin -----------------------------------------------------------------------------------


def test_the_shell_needs_no_credentials_and_holds_no_data(
    admin_connector: RunningConnector,
) -> None:
    page = httpx.get(f"{admin_connector.url}/admin", timeout=15)
    assert page.status_code == 200 and '<script src="/admin.js" defer></script>' in page.text
    assert "Owl Goods" not in page.text
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "form-action 'none'" in policy
    assert "frame-ancestors none" in policy
    assert "<form" not in page.text
    script = httpx.get(f"{admin_connector.url}/admin.js", timeout=15)
    assert script.status_code == 200 and "X-Connector-Admin" in script.text


def test_the_console_is_the_admins_only(
    admin_connector: RunningConnector, demo: RunningSandbox
) -> None:
    nobody = console(admin_connector)
    assert nobody.status_code == 401
    assert nobody.headers["WWW-Authenticate"].startswith("Basic ")  # the browser's own prompt
    agent = console(admin_connector, data={"Token": admin_connector.agent_token})
    assert agent.status_code == 403 and "WWW-Authenticate" not in agent.headers
    for allowed in (
        console(admin_connector, data={"Token": admin_token(demo)}),
        console(admin_connector, auth=ADMIN),
    ):
        assert allowed.status_code == 200, allowed.text
        html = allowed.text
        assert "Owl Goods (demo)" in html and "spa_test" in html
        assert "Test connection" in html
        assert "Profile API token (SEGMENT_PROFILE_API_TOKEN)</dt><dd>set" in html
        for secret in (TOKEN, WRITE_KEY, ADMIN[1], admin_connector.agent_token):
            assert secret not in html


def test_the_console_shows_a_refused_edit(admin_connector: RunningConnector) -> None:
    config = admin_connector.config
    config.write_text(config.read_text() + "\n[lookup2]\n", encoding="utf-8")
    html = console(admin_connector, auth=ADMIN).text
    assert 'id="refused-edit"' in html
    assert str(config) in html and "lookup2" in html and "unknown key" in html


def test_test_connection_runs_connector_checks_steps(
    admin_connector: RunningConnector,
) -> None:
    answer = console(admin_connector, "/admin/test-connection", auth=ADMIN)
    assert answer.status_code == 200
    html = answer.text
    assert html.count('class="step ok"') == 3 and 'data-ok="true"' in html
    assert "accepted the token from SEGMENT_PROFILE_API_TOKEN" in html


def test_test_connection_names_a_refused_token(
    make_connector: ConnectorFactory, demo: RunningSandbox
) -> None:
    connector = make_connector(demo, ADMIN_AUTH, token="not-the-token", env=ADMIN_ENV)
    html = console(connector, "/admin/test-connection", auth=ADMIN).text
    assert 'data-ok="false"' in html
    assert 'class="step failed" data-step="Segment"' in html and "token_refused" in html
    assert html.count('class="step ok"') == 2  # the file and Twilio still pass
    assert "not-the-token" not in html


@pytest.fixture
def writing_connector(make_connector: ConnectorFactory, demo: RunningSandbox) -> RunningConnector:
    extra = ADMIN_AUTH + f'\n[writeback]\nenabled = true\ntracking_api_url = "{demo.url}"\n'
    return make_connector(demo, extra, env=ADMIN_ENV)


def park_a_dead_letter(connector: RunningConnector, message_id: str) -> None:
    """A row Segment refused. Written an hour ahead, so the drainer cannot take it before it is
    parked; once retried it is due at once."""
    box = services_of(connector.app).outbox.get()
    assert isinstance(box, Outbox)
    ahead = Outbox(box.path, clock=lambda: time.time() + 3600)
    message = {"type": "track", "userId": "u-ada", "event": "Refused", "messageId": message_id}
    assert ahead.add(message)
    rows = ahead.claim(10, 500_000, 15)
    assert [row.message_id for row in rows] == [message_id]
    ahead.park(rows, "Segment refused it: invalid event name")
    ahead.close()


def test_dead_letters_show_and_retry_and_purge(
    writing_connector: RunningConnector, demo: RunningSandbox
) -> None:
    park_a_dead_letter(writing_connector, "dead-1")
    html = console(writing_connector, auth=ADMIN).text
    assert "dead-1" in html and "invalid event name" in html
    assert '<dd id="dead">1</dd>' in html
    samples = scrape(writing_connector.url, auth=ADMIN)
    assert figure(samples, "connector_outbox_dead_letters") == 1

    retried = console(writing_connector, "/admin/outbox/retry-dead", auth=ADMIN)
    assert retried.status_code == 200 and "1 dead letter(s) back in line" in retried.text
    deadline = time.monotonic() + 20
    receipts: dict[str, int] = {}
    while "dead-1" not in receipts and time.monotonic() < deadline:
        time.sleep(0.2)
        receipts = demo.control.stats(detail=True)["tracking"]["receipts"]
    assert receipts.get("dead-1") == 1  # delivered once put back in line

    park_a_dead_letter(writing_connector, "dead-2")
    purged = console(writing_connector, "/admin/outbox/purge-dead", auth=ADMIN)
    assert "1 dead letter(s) deleted" in purged.text and '<dd id="dead">0</dd>' in purged.text
    assert figure(scrape(writing_connector.url, auth=ADMIN), "connector_outbox_dead_letters") == 0


def test_a_cross_site_post_is_refused(writing_connector: RunningConnector) -> None:
    park_a_dead_letter(writing_connector, "dead-3")
    url = f"{writing_connector.url}/admin/outbox/purge-dead"
    # A form on another site: the browser attaches the remembered Basic credentials, but it can
    # neither add the console's header nor hide its own Origin.
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "https://evil.example", **SAME_SITE},
        {"Origin": "https://flex.twilio.com", **SAME_SITE},  # an allowed CORS origin, even
        {},  # no header: not the console's script
    ):
        refused = httpx.post(url, auth=ADMIN, headers=headers, timeout=15)
        assert refused.status_code == 403, headers
    box = services_of(writing_connector.app).outbox.get()
    assert box.depth().dead == 1


def test_the_outbox_figures_come_from_postgresql_too(
    make_connector: ConnectorFactory, demo: RunningSandbox, database_url: str
) -> None:
    extra = ADMIN_AUTH + f'\n[writeback]\nenabled = true\ntracking_api_url = "{demo.url}"\n'
    connector = make_connector(demo, extra, env={**ADMIN_ENV, "DATABASE_URL": database_url})
    samples = scrape(connector.url, auth=ADMIN)
    assert figure(samples, "connector_outbox_pending") == 0
    assert figure(samples, "connector_outbox_dead_letters") == 0
    assert "Outbox (postgresql, write-back on)" in console(connector, auth=ADMIN).text


# --- in Chromium ------------------------------------------------------------------------------


@pytest.fixture
def chromium(browser: Browser) -> Iterator[Browser]:
    yield browser


def test_the_console_in_chromium(
    chromium: Browser, admin_connector: RunningConnector, demo: RunningSandbox
) -> None:
    token = admin_token(demo)
    for caller in (ADA, ADA, "+447700900123", "nobody@example.com"):  # figures to show
        admin_connector.card(**{"from": caller})
    context = chromium.new_context(viewport={"width": 900, "height": 900})
    context.add_init_script(CSP_WATCH)
    requests: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    try:
        page.goto(f"{admin_connector.url}/admin#Token={token}")
        page.wait_for_selector("#title:has-text('Owl Goods (demo)')", timeout=15_000)
        assert "#" not in page.url and token not in page.url  # out of the address bar
        page.click("#test-connection")
        page.wait_for_selector("#check-result", timeout=15_000)
        steps = page.locator("li.step")
        assert steps.count() == 3
        assert page.locator("li.step.ok").count() == 3
        assert page.evaluate("window.__csp") == []
        assert all(token not in url for url in requests)
        # docs/ is written only when asked (SCREENSHOTS=1), as the card page's tests do.
        shots = DOCS if os.environ.get("SCREENSHOTS") == "1" else None
        if shots:
            page.screenshot(path=str(shots / "admin-900.png"), full_page=True)
        page.set_viewport_size({"width": 400, "height": 900})
        if shots:
            page.screenshot(path=str(shots / "admin-400.png"), full_page=True)
        # nothing wider than the narrow screen but the tables, which scroll inside themselves
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 400
    finally:
        context.close()


def test_the_browsers_own_prompt_signs_the_admin_in(
    chromium: Browser, admin_connector: RunningConnector
) -> None:
    """No token: the script's POST gets a 401 with WWW-Authenticate, the browser's prompt
    (answered here by Playwright) supplies the admin's Basic credentials."""
    username, password = ADMIN
    context = chromium.new_context(http_credentials={"username": username, "password": password})
    page = context.new_page()
    try:
        page.goto(f"{admin_connector.url}/admin")
        page.wait_for_selector("#title:has-text('Owl Goods (demo)')", timeout=15_000)
        page.click("#test-connection")
        page.wait_for_selector("#check-result[data-ok='true']", timeout=15_000)
    finally:
        context.close()


def test_a_dead_letter_is_retried_from_the_console_in_chromium(
    chromium: Browser, writing_connector: RunningConnector, demo: RunningSandbox
) -> None:
    park_a_dead_letter(writing_connector, "dead-chromium")
    username, password = ADMIN
    context = chromium.new_context(http_credentials={"username": username, "password": password})
    context.add_init_script(CSP_WATCH)
    page = context.new_page()
    try:
        page.goto(f"{writing_connector.url}/admin")
        page.wait_for_selector("#dead:has-text('1')", timeout=15_000)
        assert "invalid event name" in page.inner_text("body")  # the reason Segment gave
        page.click("button[data-action='outbox/retry-dead']")
        page.wait_for_selector("text=1 dead letter(s) back in line", timeout=15_000)
        assert page.inner_text("#dead") == "0"
        assert page.evaluate("window.__csp") == []
    finally:
        context.close()
