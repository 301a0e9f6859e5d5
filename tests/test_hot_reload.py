"""Hot reload: settled files only, never bad ones, one version per instance, boot from last good."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from connector.config.errors import ConfigError
from connector.config.holder import ConnectionHolder
from connector.config.last_good import GoodCopy, LastGood
from tests.test_settings import ENV, GOOD, bump, write


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def error_of(holder: ConnectionHolder) -> ConfigError | None:
    return holder.error  # a call, so that mypy does not narrow it between reloads


def renamed(name: str) -> str:
    return GOOD.replace('"Owl Goods"', f'"{name}"')


def test_reload_applies_a_good_edit_and_keeps_the_last_good_on_a_bad_one(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    holder = ConnectionHolder(path, ENV, check_every=0)
    first = holder.current()
    bump(path, renamed("Owl Goods (renamed)"))
    edited = holder.current()
    assert edited.file.connection.friendly_name == "Owl Goods (renamed)"
    assert edited.version != first.version and error_of(holder) is None

    bump(path, GOOD.replace("friendly_name", "frendly_name"))
    assert holder.current() is edited
    error = error_of(holder)
    assert error is not None and error.key == "connection.frendly_name"

    path.unlink()
    assert holder.current() is edited and "cannot read" in str(error_of(holder))

    write(tmp_path, GOOD)
    assert holder.current().file.connection.friendly_name == "Owl Goods"
    assert error_of(holder) is None


def test_putting_back_what_is_served_after_a_refusal_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The admin fixes a refused edit by restoring the file: the log's last word is not left
    at the refusal."""
    path = write(tmp_path, GOOD)
    holder = ConnectionHolder(path, ENV, check_every=0)
    served = holder.current()
    bump(path, GOOD.replace("friendly_name", "frendly_name"))
    assert holder.current() is served and error_of(holder) is not None
    bump(path, GOOD)
    with caplog.at_level("INFO", logger="connector.config.holder"):
        assert holder.current().version == served.version and error_of(holder) is None
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("connection file refused")
    assert messages[1:] == [f"connection file valid again (version {served.version}, as served)"]


def test_without_a_watcher_nothing_is_reloaded_until_checked(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    holder = ConnectionHolder(path, ENV, check_every=3600)
    bump(path, renamed("Later"))
    assert holder.current().file.connection.friendly_name == "Owl Goods"
    holder.reload_if_changed()
    assert holder.current().file.connection.friendly_name == "Later"


def test_an_invalid_file_at_first_start_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        ConnectionHolder(write(tmp_path, "[connection]\n"), ENV)


def test_a_file_still_being_written_is_not_applied(tmp_path: Path) -> None:
    """An editor writing in place shows half-written files, some of them valid TOML (here: the
    traits not written yet); only the file that stopped changing is applied."""
    clock = Clock()
    path = write(tmp_path, GOOD)
    holder = ConnectionHolder(path, ENV, check_every=3600, settle=0.5, clock=clock)
    half = renamed("Half").split("[[traits]]")[0]
    bump(path, half)
    holder.reload_if_changed()
    clock.now += 0.3
    holder.reload_if_changed()
    assert holder.current().file.connection.friendly_name == "Owl Goods"  # not settled yet

    bump(path, renamed("Whole"))  # the editor goes on writing: the wait starts over
    clock.now += 0.4
    holder.reload_if_changed()
    clock.now += 0.4
    holder.reload_if_changed()
    assert holder.current().file.connection.friendly_name == "Owl Goods"
    clock.now += 0.2
    holder.reload_if_changed()
    applied = holder.current()
    assert applied.file.connection.friendly_name == "Whole" and len(applied.file.traits) == 1


def test_a_worker_booting_while_the_file_is_bad_serves_the_last_good(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    last_good = LastGood(tmp_path / "state" / "last-good.toml")
    running = ConnectionHolder(path, ENV, check_every=0, last_good=last_good)
    bump(path, "not = [valid")
    assert running.current().file.connection.friendly_name == "Owl Goods"

    booted = ConnectionHolder(path, ENV, check_every=0, last_good=last_good)
    assert booted.current().version == running.current().version
    assert booted.error is not None and "not valid TOML" in booted.error.reason


def test_workers_converge_on_a_good_edit_one_of_them_missed(tmp_path: Path) -> None:
    """A good edit quickly followed by a bad one: the worker that looked in between applied the
    good edit; the other only ever saw the bad file, and adopts its sibling's version."""
    path = write(tmp_path, GOOD)
    last_good = LastGood(tmp_path / "last-good.toml")
    first, second = (
        ConnectionHolder(path, ENV, check_every=3600, last_good=last_good) for _ in range(2)
    )
    bump(path, renamed("Good edit"))
    first.reload_if_changed()
    bump(path, "broken = [")
    second.reload_if_changed()
    first.reload_if_changed()
    assert second.current().version == first.current().version
    assert second.current().file.connection.friendly_name == "Good edit"
    assert first.error is not None and second.error is not None


def test_the_last_good_copy_never_steps_back(tmp_path: Path) -> None:
    last_good = LastGood(tmp_path / "last-good.toml")
    last_good.publish(GoodCopy(b"newer", 2))
    last_good.publish(GoodCopy(b"older", 1))  # a slower worker publishing what it applied
    assert last_good.read() == GoodCopy(b"newer", 2)


def test_the_watcher_applies_an_edit_without_traffic(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    holder = ConnectionHolder(path, ENV, check_every=0.05, settle=0.2)
    holder.watch()
    try:
        bump(path, renamed("Watched"))
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline and holder.current().file.connection.friendly_name != (
            "Watched"
        ):
            time.sleep(0.02)
        assert holder.current().file.connection.friendly_name == "Watched"
    finally:
        holder.close()
