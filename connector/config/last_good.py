"""The last-good copy of the connection file that the workers of one instance share."""

from __future__ import annotations

import fcntl
import os
import re
from dataclasses import dataclass
from pathlib import Path

HEADER = re.compile(rb"\A# connector last-good copy; source mtime_ns=(\d+)\n")


@dataclass(frozen=True)
class GoodCopy:
    raw: bytes
    source_mtime_ns: int  # when the admin's file held these bytes: newer copies win


class LastGood:
    """The last validated connection file, shared by the workers of one instance.

    Written atomically (a temporary file renamed over it) under an advisory lock, and only by a
    newer version than it holds, so two workers publishing at once cannot step back in time.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> GoodCopy | None:
        try:
            data = self.path.read_bytes()
        except OSError:
            return None
        match = HEADER.match(data)
        if match is None:
            return None
        return GoodCopy(data[match.end() :], int(match[1]))

    def publish(self, copy: GoodCopy) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with lock.open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            current = self.read()
            if current is not None and current.source_mtime_ns >= copy.source_mtime_ns:
                return
            staging = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            header = f"# connector last-good copy; source mtime_ns={copy.source_mtime_ns}\n"
            staging.write_bytes(header.encode() + copy.raw)
            staging.replace(self.path)
