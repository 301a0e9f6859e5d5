"""The connection in use, re-read when the admin edits its file.

Three rules, each learnt from an admin's editor or a platform:
- apply only a file that has stopped changing: an editor that writes in place (truncate, then a
  line at a time) shows many half-written files, and some of them are valid TOML;
- never apply a bad file: the last good connection keeps serving and the error is reported;
- every worker of an instance serves the same version, and a worker that boots (after a crash, a
  `kill -9`, a `max_requests` recycle) while the file is bad boots from the last good one. Both
  come from the last-good copy (:class:`LastGood`), a file the instance's workers share: a worker
  that applies a version publishes it there, and one whose view of the file is refused adopts it.

A watcher thread checks the file every `check_every` seconds, traffic or not.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from connector.config.errors import ConfigError
from connector.config.last_good import GoodCopy, LastGood
from connector.config.loading import Connection, load_connection

log = logging.getLogger(__name__)


SETTLE_SECONDS = 0.5  # a file unchanged this long is taken as saved


@dataclass(frozen=True)
class FileStamp:
    """What changes when a file is written or replaced."""

    mtime_ns: int
    size: int
    inode: int


def file_stamp(path: Path) -> FileStamp | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return FileStamp(stat.st_mtime_ns, stat.st_size, stat.st_ino)


class ConnectionHolder:
    """The connection one process serves (see the module's docstring for the rules).

    With `check_every` 0 there is no watcher: every `current()` checks the file (tests).
    """

    def __init__(
        self,
        path: Path,
        environ: Mapping[str, str] = os.environ,
        check_every: float = 1.0,
        *,
        settle: float = 0.0,
        last_good: LastGood | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self.error: ConfigError | None = None
        self.environ = environ  # where secrets are read (the admin's Test connection too)
        self._environ = environ
        self.loaded_at = time.time()  # when the version in use was loaded (the admin's console)
        self._check_every = check_every
        self._settle = settle
        self._last_good = last_good
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._pending: tuple[FileStamp | None, float] | None = None
        self._stamp = file_stamp(path)
        try:
            self._connection, self._source_mtime = self._load_file()
        except ConfigError as error:
            # Only the very first start may refuse a bad file: a worker that boots later (its
            # predecessor crashed) serves what its siblings serve.
            copy = last_good.read() if last_good else None
            if copy is None:
                raise
            self._connection = load_connection(path, environ, copy.raw)
            self._source_mtime = copy.source_mtime_ns
            self.error = error
            log.error("connection file refused, serving the last good one: %s", error)

    def current(self) -> Connection:
        if self._check_every == 0:
            self.reload_if_changed()
        return self._connection

    def watch(self) -> None:
        """Check the file every `check_every` seconds from a daemon thread, until `close()`."""
        if self._check_every > 0:
            threading.Thread(target=self._watch, name="connection-watcher", daemon=True).start()

    def close(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self._check_every):
            try:
                self.reload_if_changed()
            except Exception:  # a watcher that dies would freeze the connection silently
                log.exception("checking the connection file failed; trying again")

    def reload_if_changed(self) -> None:
        with self._lock:
            stamp = file_stamp(self.path)
            if stamp != self._stamp and self._settled(stamp):
                self._stamp = stamp
                self._apply_file()
            if self.error is not None:
                self._adopt_last_good()

    def _settled(self, stamp: FileStamp | None) -> bool:
        """Whether a changed file has stayed unchanged for `settle` seconds."""
        if self._settle <= 0:
            return True
        now = self._clock()
        if self._pending is None or self._pending[0] != stamp:
            self._pending = (stamp, now)
            return False
        return now - self._pending[1] >= self._settle

    def _apply_file(self) -> None:
        self._pending = None
        try:
            connection, source_mtime = self._load_file()
        except ConfigError as error:
            if self.error is None or str(error) != str(self.error):
                log.error("connection file refused, still serving the last good one: %s", error)
            self.error = error
            return
        if self.error is not None and connection.version == self._connection.version:
            # the admin put back what is served: say so, or the log's last word is the refusal
            log.info("connection file valid again (version %s, as served)", connection.version)
        self.error = None
        self._use(connection, source_mtime, "connection file reloaded")

    def _load_file(self) -> tuple[Connection, int]:
        """Load the admin's file, and publish it as the instance's last good copy."""
        stamp = file_stamp(self.path)
        try:
            raw = self.path.read_bytes()
        except OSError as error:
            raise ConfigError(self.path, None, f"cannot read the file ({error.strerror})") from None
        connection = load_connection(self.path, self._environ, raw)
        mtime = stamp.mtime_ns if stamp else 0
        if self._last_good is not None:
            self._last_good.publish(GoodCopy(raw, mtime))
        return connection, mtime

    def _adopt_last_good(self) -> None:
        """While our view of the file is refused, serve a newer version another worker applied
        (it saw a good edit that was replaced before this worker looked)."""
        copy = self._last_good.read() if self._last_good else None
        if copy is None or copy.source_mtime_ns <= self._source_mtime:
            return
        try:
            connection = load_connection(self.path, self._environ, copy.raw)
        except ConfigError:
            return
        self._use(connection, copy.source_mtime_ns, "serving the instance's last good connection")

    def _use(self, connection: Connection, source_mtime: int, message: str) -> None:
        if connection.version != self._connection.version:
            log.info("%s (version %s)", message, connection.version)
            self.loaded_at = time.time()
        self._connection, self._source_mtime = connection, source_mtime
