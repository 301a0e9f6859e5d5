"""The README's promises: two commands on its first screen, the test command is what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def first_screen_commands() -> list[str]:
    first_screen = ROOT.joinpath("README.md").read_text(encoding="utf-8").split("\n---\n")[0]
    return re.findall(r"```sh\n(.+?)\n```", first_screen, flags=re.DOTALL)


def test_readme_first_screen_has_exactly_two_commands() -> None:
    commands = first_screen_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)
    assert "connector" in commands[0] and "pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    ci = ROOT.joinpath(".ci", "run").read_text(encoding="utf-8")
    assert first_screen_commands()[1] in ci.splitlines()
