"""The sandbox's state: configuration, store, ingestion, faults, rate limit, stats, tokens."""

from __future__ import annotations

import json
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from connector.sandbox.faults import FaultController, Faults, RateLimiter
from connector.sandbox.ingest import Ingestor, iso, utc_now
from connector.sandbox.rules import load_rules
from connector.sandbox.stats import Stats
from connector.sandbox.store import Store
from connector.sandbox.twilio_iam import AgentTokens
from connector.timestamps import parse_timestamp

DEMO_DATA = "demo"
DATA_SOURCE_ID = "sandbox_data"
TRACKING_SOURCE_ID = "sandbox_tracking"
TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt", "receivedAt")
_TIMESTAMP = re.compile(r'"timestamp"\s*:\s*"([^"]+)"')
LOAD_CHUNK = 5_000


@dataclass(frozen=True)
class SandboxConfig:
    """Everything `connector sandbox` takes; the credentials are the emulator's own, not secrets."""

    space_id: str = "spa_sandbox"
    token: str = "sandbox-profile-token"
    write_key: str = "sandbox-write-key"
    twilio_account_sid: str = "AC" + "0" * 31 + "1"
    twilio_auth_token: str = "sandbox-twilio-auth-token"
    rate_limit: float = 100.0
    db_path: Path | None = None
    rules_path: Path | None = None
    event_window: timedelta = timedelta(days=14)

    def twilio_environment(self, url: str) -> dict[str, str]:
        """Twilio's variables for a connector whose Flex tokens this sandbox (at `url`) checks."""
        return {
            "TWILIO_ACCOUNT_SID": self.twilio_account_sid,
            "TWILIO_AUTH_TOKEN": self.twilio_auth_token,
            "TWILIO_IAM_URL": url,
        }


@dataclass(frozen=True)
class LoadReport:
    messages: int
    accepted: int
    dropped: dict[str, int]
    seconds: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


class DataFileError(ValueError):
    """A line of a data file that is not a JSON object."""


class Sandbox:
    def __init__(self, config: SandboxConfig | None = None, faults: Faults | None = None) -> None:
        self.config = config or SandboxConfig()
        self._tmpdir = None
        db_path = self.config.db_path
        if db_path is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="segment-sandbox-")
            db_path = Path(self._tmpdir.name) / "sandbox.sqlite"
        self.store = Store(db_path)
        self.ingestor = Ingestor(self.store, load_rules(self.config.rules_path))
        self.faults = FaultController(faults)
        self.limiter = RateLimiter(self.config.rate_limit)
        self.stats = Stats()
        self.agent_tokens = AgentTokens()

    def close(self) -> None:
        self.store.close()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def ingest(self, messages: list[Any], source_id: str = TRACKING_SOURCE_ID) -> list[str | None]:
        return self.ingestor.ingest_many(messages, source_id)

    def load(self, path: Path | str, rebase_time: bool = False) -> LoadReport:
        """Ingest a JSON Lines file of Spec messages through identity resolution.

        With `rebase_time`, every message's times shift by one offset so that the newest lands
        just now: a fixed data set keeps "the last two weeks" of events whatever the date.
        """
        file = demo_data_path() if str(path) == DEMO_DATA else Path(path)
        shift = _rebase_offset(file) if rebase_time else None
        started = time.perf_counter()
        accepted, total = 0, 0
        dropped: dict[str, int] = {}
        for chunk in _chunks(_read_messages(file, shift), LOAD_CHUNK):
            for outcome in self.ingestor.ingest_many(chunk, DATA_SOURCE_ID):
                total += 1
                if outcome is None:
                    accepted += 1
                else:
                    dropped[outcome] = dropped.get(outcome, 0) + 1
        return LoadReport(total, accepted, dropped, time.perf_counter() - started)


def demo_data_path() -> Path:
    return Path(str(resources.files("connector.sandbox").joinpath("data/demo.jsonl")))


def _rebase_offset(file: Path) -> timedelta | None:
    newest: datetime | None = None
    with file.open(encoding="utf-8") as lines:
        for line in lines:
            for raw in _TIMESTAMP.findall(line):
                moment = parse_timestamp(raw)
                if moment and (newest is None or moment > newest):
                    newest = moment
    if newest is None:
        return None
    return utc_now() - timedelta(minutes=5) - newest


def _read_messages(file: Path, shift: timedelta | None) -> Iterator[Any]:
    with file.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except json.JSONDecodeError as error:
                raise DataFileError(f"{file}:{number}: not JSON ({error.msg})") from None
            if not isinstance(message, dict):
                raise DataFileError(f"{file}:{number}: each line must be a JSON object")
            if shift is not None:
                _shift_times(message, shift)
            yield message


def _shift_times(message: dict[str, Any], shift: timedelta) -> None:
    for name in TIME_FIELDS:
        moment = parse_timestamp(message.get(name))
        if moment is not None:
            message[name] = iso(moment + shift)


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
