"""Sandboxes served over real HTTP on loopback, built per test (or per module) with given data."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from flask import Flask
from playwright.sync_api import Browser, sync_playwright

from connector.app import AppSettings, close_app, create_app
from connector.sandbox import Sandbox, SandboxConfig, SandboxServer
from connector.sandbox.control_client import SandboxControl
from connector.serving.loopback import LoopbackServer
from connector.tls import tls_context
from connector.writeback.outbox import Outbox, OutboxStore
from connector.writeback.postgres_outbox import PostgresOutbox
from tests.browser import CHROMIUM, launch
from tests.postgres import fresh_schema

# The shared-state tests' own Redis database: they flush it. Never the REDIS_URL a developer may
# have exported for a deployment.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
SPACE = "spa_test"
TOKEN = "test-profile-token"
WRITE_KEY = "test-write-key"
CONFIG = SandboxConfig(space_id=SPACE, token=TOKEN, write_key=WRITE_KEY, rate_limit=0)
TWILIO_AUTH_TOKEN = CONFIG.twilio_auth_token


def connector_env(sandbox_url: str, token: str = TOKEN) -> dict[str, str]:
    """Everything a connector in front of a test sandbox reads from its environment."""
    return {
        "SEGMENT_PROFILE_API_TOKEN": token,
        "SEGMENT_WRITE_KEY": WRITE_KEY,
        **CONFIG.twilio_environment(sandbox_url),
    }


@dataclass
class RunningSandbox:
    server: SandboxServer
    sandbox: Sandbox
    http: httpx.Client = field(init=False)
    control: SandboxControl = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=10, verify=tls_context())
        self.control = SandboxControl(self.url)

    @property
    def url(self) -> str:
        return self.server.url

    def profile(
        self,
        identifier: str,
        section: str,
        collection: str = "users",
        encode: bool = True,
        **params: Any,
    ) -> httpx.Response:
        """GET a Profile API section; `identifier` is percent-encoded unless encode=False."""
        segment = quote(identifier, safe=":") if encode else identifier
        path = f"/v1/spaces/{SPACE}/collections/{collection}/profiles/{segment}/{section}"
        return self.http.get(path, params=params, auth=(TOKEN, ""))

    def send(self, *messages: dict[str, Any]) -> httpx.Response:
        """POST messages to the tracking API as one batch, with the write key."""
        response = self.http.post("/v1/batch", json={"batch": list(messages)}, auth=(WRITE_KEY, ""))
        assert response.status_code == 200, response.text
        return response

    def close(self) -> None:
        self.http.close()
        self.control.close()
        self.server.stop()
        self.sandbox.close()


SandboxFactory = Callable[..., RunningSandbox]


def start_sandbox(
    messages: list[dict[str, Any]] | None = None, data: str | None = None, **config: Any
) -> RunningSandbox:
    sandbox = Sandbox(replace(CONFIG, **config))
    if data:
        sandbox.load(data, rebase_time=True)
    if messages:
        sandbox.ingest(messages)
    return RunningSandbox(SandboxServer(sandbox).start(), sandbox)


@pytest.fixture
def make_sandbox() -> Iterator[SandboxFactory]:
    started: list[RunningSandbox] = []

    def factory(messages: list[dict[str, Any]] | None = None, **kwargs: Any) -> RunningSandbox:
        running = start_sandbox(messages, **kwargs)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.close()


@pytest.fixture(scope="module")
def demo() -> Iterator[RunningSandbox]:
    """The bundled demo data, shared by a module's read-only tests."""
    running = start_sandbox(data="demo")
    yield running
    running.close()


def write_jsonl(path: Path, messages: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(m) + "\n" for m in messages), encoding="utf-8")
    return path


# --- the connector, served on loopback against a sandbox -------------------------------------

ROOT = Path(__file__).resolve().parent.parent
# The demo connection without its [writeback] section: tests that write back add their own.
DEMO_CONFIG = (
    (ROOT / "config" / "demo.toml").read_text(encoding="utf-8").split("\n# Events written back")[0]
)


def connection_toml(sandbox_url: str, extra: str = "", **lookup: Any) -> str:
    """The demo connection file, pointed at a test sandbox, with `lookup` keys overridden."""
    text = DEMO_CONFIG.replace('space_id = "spa_sandbox"', f'space_id = "{SPACE}"')
    text = text.replace(
        'profile_api_url = "http://127.0.0.1:8087"', f'profile_api_url = "{sandbox_url}"'
    )
    added = ""
    for key, value in lookup.items():
        line = f"{key} = {json.dumps(value)}"
        # A key the demo file sets already is replaced (TOML refuses a key set twice).
        text, replaced = re.subn(rf"^{re.escape(key)} = .*$", line, text, count=1, flags=re.M)
        added += "" if replaced else line + "\n"
    return text.replace("[lookup]\n", "[lookup]\n" + added, 1) + extra


@dataclass
class RunningConnector:
    """A connector served on loopback; `http` sends an agent's Flex token with every request."""

    server: LoopbackServer
    app: Flask
    config: Path
    agent_token: str
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.server.url,
            timeout=15,
            headers={"Authorization": f"Bearer {self.agent_token}"},
            verify=tls_context(),
        )

    @property
    def url(self) -> str:
        return self.server.url

    def card(self, **params: str) -> httpx.Response:
        return self.http.get("/v1/cards", params=params)

    def close(self) -> None:
        self.http.close()
        self.server.stop()
        close_app(self.app)


ConnectorFactory = Callable[..., RunningConnector]


def start_connector(
    sandbox: RunningSandbox,
    config: Path,
    extra: str = "",
    token: str = TOKEN,
    env: dict[str, str] | None = None,
    **lookup: Any,
) -> RunningConnector:
    """A connector in front of `sandbox`, its connection file written at `config`."""
    config.write_text(connection_toml(sandbox.url, extra, **lookup), encoding="utf-8")
    environ = {**connector_env(sandbox.url, token), **(env or {})}
    app = create_app(AppSettings(config_path=config, environ=environ, reload_every=0.0, settle=0.0))
    agent = sandbox.control.issue_agent_token()["token"]
    return RunningConnector(LoopbackServer(app).start(), app, config, agent)


@pytest.fixture
def make_connector(tmp_path: Path) -> Iterator[ConnectorFactory]:
    started: list[RunningConnector] = []

    def factory(sandbox: RunningSandbox, *args: Any, **kwargs: Any) -> RunningConnector:
        config = tmp_path / f"connection-{len(started)}.toml"
        running = start_connector(sandbox, config, *args, **kwargs)
        started.append(running)
        return running

    yield factory
    for running in started:
        running.close()


@pytest.fixture
def connector(make_connector: ConnectorFactory, demo: RunningSandbox) -> RunningConnector:
    """A connector in front of the module's shared demo sandbox."""
    return make_connector(demo)


# --- the outbox's two backends -------------------------------------------------------------------

# Opens the test's outbox (each call: another opener of the same one, as another process would).
OpenOutbox = Callable[[Callable[[], float]], OutboxStore]


@pytest.fixture(params=["sqlite", "postgresql"])
def open_outbox(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenOutbox]:
    """Every outbox test runs on SQLite in tmp_path and on PostgreSQL in a schema of its own."""
    opened: list[OutboxStore] = []
    if request.param == "sqlite":

        def sqlite(clock: Callable[[], float]) -> OutboxStore:
            opened.append(Outbox(tmp_path / "state" / "outbox.sqlite", clock=clock))
            return opened[-1]

        yield sqlite
    else:
        with fresh_schema() as url:

            def postgresql(clock: Callable[[], float]) -> OutboxStore:
                opened.append(PostgresOutbox(url, clock=clock))
                return opened[-1]

            yield postgresql
            for box in opened:
                box.close()


@pytest.fixture
def database_url() -> Iterator[str]:
    """A PostgreSQL URL of a schema of this test's own, for connectors (DATABASE_URL)."""
    with fresh_schema() as url:
        yield url


# --- headless Chromium (the card page, the README's browser recipes) -----------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if CHROMIUM is None:
        if os.environ.get("CI"):
            pytest.fail("CI installs Debian's chromium (.ci/run); it is missing")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = launch(playwright, CHROMIUM)
        yield launched
        launched.close()


# --- generated cases, counted for the run's summary ----------------------------------------------

CASES: Counter[str] = Counter()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CASES:
        counted = ", ".join(f"{name} {count}" for name, count in sorted(CASES.items()))
        terminalreporter.write_line(f"generated cases: {counted}")
