"""What a platform deploys from a fresh clone: requirements.txt, .python-version, the Procfile."""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from connector.app import EPHEMERAL_OUTBOX, AppSettings, close_app, create_app
from connector.serving.loopback import free_port
from connector.serving.processes import command_process
from tests.conftest import SandboxFactory, connection_toml, connector_env

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads(ROOT.joinpath("pyproject.toml").read_text(encoding="utf-8"))["project"]


def requirement_lines() -> list[str]:
    text = ROOT.joinpath("requirements.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"]


def pins() -> dict[str, str]:
    """requirements.txt's `name==version` lines, by normalised name."""
    found: dict[str, str] = {}
    for line in requirement_lines():
        if line == ".":
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{line}: pin exact versions"
        found[canonicalize_name(requirement.name)] = specifier.version
    return found


def test_requirements_pin_every_dependency_within_pyproject() -> None:
    pinned = pins()
    for line in PROJECT["dependencies"]:
        dependency = Requirement(line)
        name = canonicalize_name(dependency.name)
        assert name in pinned, f"{dependency.name} is not pinned in requirements.txt"
        assert dependency.specifier.contains(pinned[name]), (
            f"requirements.txt pins {dependency.name}=={pinned[name]}, "
            f"outside pyproject.toml's {dependency.specifier}"
        )


def test_requirements_install_the_connector_itself() -> None:
    assert requirement_lines()[-1] == "."


def test_the_python_version_is_pinned_within_requires_python() -> None:
    version = ROOT.joinpath(".python-version").read_text(encoding="utf-8").strip()
    assert re.fullmatch(r"3\.\d+", version), "major version only: security patches keep coming"
    assert SpecifierSet(PROJECT["requires-python"]).contains(f"{version}.0")


def test_the_procfile_web_command_serves_the_connection_file_connector_config_names(
    make_sandbox: SandboxFactory, tmp_path: Path
) -> None:
    sandbox = make_sandbox()
    config = tmp_path / "connection.toml"  # anywhere but config/connection.toml
    config.write_text(connection_toml(sandbox.url), encoding="utf-8")
    procfile = ROOT.joinpath("Procfile").read_text(encoding="utf-8")
    (web,) = re.findall(r"^web:(.+)$", procfile, flags=re.MULTILINE)
    port = free_port()
    command = shlex.split(web.replace("$PORT", str(port)))
    bin_dir = str(Path(sys.executable).parent)  # where `connector` is installed
    env = {
        **connector_env(sandbox.url),
        "CONNECTOR_CONFIG": str(config),
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }
    with command_process(command, env, f"http://127.0.0.1:{port}", cwd=ROOT) as served:
        url = served.url
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        # gunicorn, like cheroot in the other tests, holds a chunked body to the 64 KB limit.
        agent = sandbox.control.issue_agent_token()["token"]
        body = json.dumps({"from": "+14155550123", "pad": "x" * 70_000}).encode()
        chunked = httpx.post(
            f"{url}/v1/cards",
            content=iter([body[:40_000], body[40_000:]]),
            headers={"Authorization": f"Bearer {agent}", "Content-Type": "application/json"},
            timeout=10,
        )
        assert chunked.request.headers["transfer-encoding"] == "chunked"
        assert chunked.status_code == 413, chunked.text


@pytest.mark.parametrize(
    ("dyno", "writeback", "database", "warned"),
    [
        ("web.1", True, None, True),
        ("web.1", False, None, False),
        (None, True, None, False),
        ("web.1", True, "postgres://u:secret@127.0.0.1:9/d", False),  # the outbox is shared
    ],
)
def test_write_back_on_a_heroku_dyno_is_warned_about_at_start(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    dyno: str | None,
    writeback: bool,
    database: str | None,
    warned: bool,
) -> None:
    upstream = "http://127.0.0.1:9"  # never called while the app is built
    extra = f"\n[writeback]\nenabled = {str(writeback).lower()}\n"
    config = tmp_path / "connection.toml"
    config.write_text(connection_toml(upstream, extra), encoding="utf-8")
    environ = {**connector_env(upstream), **({"DYNO": dyno} if dyno else {})}
    if database:
        environ["DATABASE_URL"] = database
    with caplog.at_level(logging.INFO, logger="connector"):
        app = create_app(AppSettings(config_path=config, environ=environ))
    close_app(app)
    assert (EPHEMERAL_OUTBOX in caplog.messages) is warned
    assert "secret" not in caplog.text  # the database's password is never logged
    if database:
        assert "the outbox is in PostgreSQL: postgresql://u:***@127.0.0.1:9/d" in caplog.messages
