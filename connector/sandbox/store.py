"""The sandbox's SQLite store: identity graph, traits, events, links and subscriptions.

One connection guarded by one lock: the sandbox's writes must be serial for identity resolution
to be atomic, and SQLite answers the Profile API's small indexed reads in microseconds.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connector.sandbox.rules import Identifier

SCHEMA = """
CREATE TABLE IF NOT EXISTS profiles (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    collection TEXT NOT NULL,
    merged_into TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    first_message_id TEXT,
    first_source_id TEXT,
    last_message_id TEXT,
    last_source_id TEXT
);
CREATE TABLE IF NOT EXISTS identifiers (
    seq INTEGER PRIMARY KEY,
    collection TEXT NOT NULL,
    type TEXT NOT NULL,
    value TEXT NOT NULL,
    profile_id TEXT NOT NULL,
    source_id TEXT,
    created_at TEXT NOT NULL,
    first_message_id TEXT,
    encoding TEXT NOT NULL DEFAULT 'none',
    UNIQUE (collection, type, value)
);
CREATE INDEX IF NOT EXISTS identifiers_by_profile ON identifiers (profile_id, seq);
CREATE TABLE IF NOT EXISTS traits (
    profile_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    class TEXT NOT NULL,
    source_id TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (profile_id, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    profile_id TEXT NOT NULL,
    ts INTEGER NOT NULL,
    message_id TEXT NOT NULL,
    event TEXT,
    body TEXT NOT NULL,
    PRIMARY KEY (profile_id, ts, message_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS links (
    user_profile TEXT NOT NULL,
    account_profile TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_profile, account_profile)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS links_by_account ON links (account_profile, user_profile);
CREATE TABLE IF NOT EXISTS subscriptions (
    profile_id TEXT NOT NULL,
    type TEXT NOT NULL,
    key TEXT NOT NULL,
    status TEXT NOT NULL,
    groups TEXT,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (profile_id, type, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS seen_messages (message_id TEXT PRIMARY KEY) WITHOUT ROWID;
"""

PREFIX = {"users": "use_", "accounts": "acc_"}
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@dataclass(frozen=True)
class Profile:
    id: str
    collection: str
    seq: int


@dataclass(frozen=True)
class Stamp:
    """Who and when, for metadata and `source_id`/`updated_at` fields."""

    at: str
    message_id: str
    source_id: str


class Store:
    def __init__(self, path: Path) -> None:
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=OFF")  # an emulator's data is reloadable, not precious
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self._lock:
            return self._db.execute(sql, params).fetchone()

    def _run(self, sql: str, params: Sequence[Any] = ()) -> int:
        with self._lock:
            return self._db.execute(sql, params).rowcount

    def _run_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._lock:
            self._db.executemany(sql, rows)

    # --- deduplication -----------------------------------------------------------------------

    def first_sighting(self, message_id: str) -> bool:
        """Record a messageId; False when it was seen before (a duplicate)."""
        return self._run("INSERT OR IGNORE INTO seen_messages VALUES (?)", (message_id,)) == 1

    # --- identity graph ----------------------------------------------------------------------

    def profiles_holding(self, identifiers: Sequence[Identifier]) -> list[str]:
        found: dict[str, int] = {}
        for i in identifiers:
            row = self._one(
                "SELECT p.id, p.seq FROM identifiers i JOIN profiles p ON p.id = i.profile_id"
                " WHERE i.collection = ? AND i.type = ? AND i.value = ?",
                (i.collection, i.type, i.value),
            )
            if row:
                found[row[0]] = row[1]
        return sorted(found, key=found.__getitem__)

    def identifiers_of(self, profile_id: str) -> list[Identifier]:
        rows = self._all(
            "SELECT collection, type, value FROM identifiers WHERE profile_id = ? ORDER BY seq",
            (profile_id,),
        )
        return [Identifier(*row) for row in rows]

    def create_profile(self, collection: str, first: Identifier, stamp: Stamp) -> str:
        seq = (self._one("SELECT COALESCE(MAX(seq), 0) + 1 FROM profiles"))[0]
        profile_id = PREFIX[collection] + _ksuid_like(f"{collection}:{first}:{seq}")
        self._run(
            "INSERT INTO profiles VALUES (?, ?, ?, NULL, ?, ?, ?, ?, ?, ?)",
            (
                seq,
                profile_id,
                collection,
                stamp.at,
                stamp.at,
                stamp.message_id,
                stamp.source_id,
                stamp.message_id,
                stamp.source_id,
            ),
        )
        return profile_id

    def attach(self, profile_id: str, identifiers: Sequence[Identifier], stamp: Stamp) -> None:
        self._run_many(
            "INSERT OR IGNORE INTO identifiers"
            " (collection, type, value, profile_id, source_id, created_at, first_message_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    i.collection,
                    i.type,
                    i.value,
                    profile_id,
                    stamp.source_id,
                    stamp.at,
                    stamp.message_id,
                )
                for i in identifiers
            ],
        )

    def merge(self, survivor: str, others: Sequence[str]) -> None:
        """Fold `others` into `survivor`: identifiers, traits (last update wins), events, links."""
        for other in others:
            params = (survivor, other)
            self._run("UPDATE identifiers SET profile_id = ? WHERE profile_id = ?", params)
            self._run(
                "INSERT INTO traits SELECT ?, key, value, class, source_id, updated_at FROM traits"
                " WHERE profile_id = ? ON CONFLICT (profile_id, key) DO UPDATE SET"
                " value = excluded.value, class = excluded.class, source_id = excluded.source_id,"
                " updated_at = excluded.updated_at WHERE excluded.updated_at > traits.updated_at",
                params,
            )
            self._run(
                "INSERT INTO subscriptions SELECT ?, type, key, status, groups, updated_at"
                " FROM subscriptions WHERE profile_id = ?"
                " ON CONFLICT (profile_id, type, key) DO UPDATE SET status = excluded.status,"
                " groups = excluded.groups,"
                " updated_at = excluded.updated_at"
                " WHERE excluded.updated_at > subscriptions.updated_at",
                params,
            )
            self._run("UPDATE OR IGNORE events SET profile_id = ? WHERE profile_id = ?", params)
            self._run("UPDATE OR IGNORE links SET user_profile = ? WHERE user_profile = ?", params)
            self._run(
                "UPDATE OR IGNORE links SET account_profile = ? WHERE account_profile = ?", params
            )
            for table in ("traits", "subscriptions", "events"):
                self._run(f"DELETE FROM {table} WHERE profile_id = ?", (other,))  # noqa: S608
            self._run(
                "DELETE FROM links WHERE user_profile = ? OR account_profile = ?", (other, other)
            )
            self._run(
                "UPDATE profiles SET merged_into = ? WHERE id = ? OR merged_into = ?",
                (survivor, other, other),
            )
            self._run(
                "UPDATE profiles SET created_at = min(created_at, (SELECT created_at FROM profiles"
                " WHERE id = ?)) WHERE id = ?",
                (other, survivor),
            )

    def touch(self, profile_id: str, stamp: Stamp) -> None:
        self._run(
            "UPDATE profiles SET updated_at = max(updated_at, ?), last_message_id = ?,"
            " last_source_id = ? WHERE id = ?",
            (stamp.at, stamp.message_id, stamp.source_id, profile_id),
        )

    # --- profile data ------------------------------------------------------------------------

    def set_traits(
        self, profile_id: str, traits: dict[str, Any], trait_class: str, stamp: Stamp
    ) -> None:
        """Apply traits with last-update-wins; a `None` value removes the trait."""
        self._run_many(
            "DELETE FROM traits WHERE profile_id = ? AND key = ? AND updated_at <= ?",
            [(profile_id, key, stamp.at) for key, value in traits.items() if value is None],
        )
        self._run_many(
            "INSERT INTO traits VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (profile_id, key)"
            " DO UPDATE SET value = excluded.value, class = excluded.class,"
            " source_id = excluded.source_id, updated_at = excluded.updated_at"
            " WHERE excluded.updated_at >= traits.updated_at",
            [
                (profile_id, key, json.dumps(value), trait_class, stamp.source_id, stamp.at)
                for key, value in traits.items()
                if value is not None
            ],
        )

    def set_subscription(
        self, profile_id: str, channel: str, key: str, status: str, groups: Any, stamp: Stamp
    ) -> None:
        self._run(
            "INSERT INTO subscriptions VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (profile_id, type, key) DO UPDATE SET status = excluded.status,"
            " groups = excluded.groups, updated_at = excluded.updated_at"
            " WHERE excluded.updated_at >= subscriptions.updated_at",
            (profile_id, channel, key, status, json.dumps(groups), stamp.at),
        )

    def add_event(
        self, profile_id: str, ts: int, message_id: str, event: str | None, body: dict[str, Any]
    ) -> None:
        self._run(
            "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?, ?)",
            (profile_id, ts, message_id, event, json.dumps(body)),
        )

    def link(self, user_profile: str, account_profile: str, at: str) -> None:
        self._run(
            "INSERT OR IGNORE INTO links VALUES (?, ?, ?)", (user_profile, account_profile, at)
        )

    # --- reads for the Profile API -----------------------------------------------------------

    def find(self, collection: str, key: Identifier | str) -> Profile | None:
        """A live profile by one of its identifiers or by its segment id (following merges)."""
        if isinstance(key, Identifier):
            row = self._one(
                "SELECT p.id, p.collection, p.seq FROM identifiers i"
                " JOIN profiles p ON p.id = i.profile_id"
                " WHERE i.collection = ? AND i.type = ? AND i.value = ?",
                (collection, key.type, key.value),
            )
        else:
            row = self._one(
                "SELECT p.id, p.collection, p.seq FROM profiles p WHERE p.collection = ? AND"
                " p.id = (SELECT COALESCE(merged_into, id) FROM profiles WHERE id = ?)",
                (collection, key),
            )
        return Profile(*row) if row else None

    def traits(
        self,
        profile_id: str,
        classes: Sequence[str],
        keys: Sequence[str] | None,
        start: str | None,
        limit: int,
    ) -> list[tuple[str, Any, str | None, str]]:
        """Traits sorted by key, from key `start` on, at most `limit` rows."""
        sql = ["SELECT key, value, source_id, updated_at FROM traits WHERE profile_id = ?"]
        params: list[Any] = [profile_id]
        sql.append(f"AND class IN ({','.join('?' * len(classes))})")
        params += classes
        if keys is not None:
            sql.append(f"AND key IN ({','.join('?' * len(keys))})")
            params += keys
        if start is not None:
            sql.append("AND key >= ?")
            params.append(start)
        sql.append("ORDER BY key LIMIT ?")
        params.append(limit)
        return [(k, json.loads(v), s, u) for k, v, s, u in self._all(" ".join(sql), params)]

    def external_ids(
        self, profile_id: str, types: Sequence[str] | None, start: int, limit: int
    ) -> list[tuple[int, dict[str, Any]]]:
        """External ids in the order they were added, from position `start` on."""
        sql = (
            "SELECT seq, collection, type, value, source_id, created_at, first_message_id,"
            " encoding FROM identifiers WHERE profile_id = ? AND seq >= ?"
        )
        params: list[Any] = [profile_id, start]
        if types is not None:
            sql += f" AND type IN ({','.join('?' * len(types))})"
            params += types
        rows = self._all(sql + " ORDER BY seq LIMIT ?", [*params, limit])
        return [(row[0], _external_id(*row[1:])) for row in rows]

    def events(
        self,
        profile_id: str,
        *,
        since: int,
        until: int | None,
        names_in: Sequence[str] | None,
        names_out: Sequence[str] | None,
        start: tuple[int, str] | None,
        descending: bool,
        limit: int,
    ) -> list[tuple[int, str, dict[str, Any]]]:
        """Events newer than `since` (and older than `until`), from position `start` on."""
        sql = ["SELECT ts, message_id, body FROM events WHERE profile_id = ? AND ts > ?"]
        params: list[Any] = [profile_id, since]
        if until is not None:
            sql.append("AND ts < ?")
            params.append(until)
        if names_in is not None:
            sql.append(f"AND event IN ({','.join('?' * len(names_in))})")
            params += names_in
        if names_out:
            sql.append(f"AND (event IS NULL OR event NOT IN ({','.join('?' * len(names_out))}))")
            params += names_out
        if start is not None:
            sql.append(
                "AND (ts, message_id) <= (?, ?)" if descending else "AND (ts, message_id) >= (?, ?)"
            )
            params += start
        order = "DESC" if descending else "ASC"
        sql.append(f"ORDER BY ts {order}, message_id {order} LIMIT ?")
        params.append(limit)
        return [(ts, m, json.loads(b)) for ts, m, b in self._all(" ".join(sql), params)]

    def links(self, profile: Profile, start: str | None, limit: int) -> list[str]:
        """Ids of the linked profiles of the other collection, sorted, from `start` on."""
        mine, theirs = (
            ("user_profile", "account_profile")
            if profile.collection == "users"
            else ("account_profile", "user_profile")
        )
        rows = self._all(
            f"SELECT {theirs} FROM links WHERE {mine} = ? AND {theirs} >= ?"  # noqa: S608
            f" ORDER BY {theirs} LIMIT ?",
            (profile.id, start or "", limit),
        )
        return [row[0] for row in rows]

    def metadata(self, profile_id: str) -> dict[str, Any]:
        row = self._one(
            "SELECT created_at, updated_at, first_message_id, first_source_id, last_message_id,"
            " last_source_id FROM profiles WHERE id = ?",
            (profile_id,),
        )
        created, updated, first_m, first_s, last_m, last_s = row
        return {
            "created_at": created,
            "updated_at": updated,
            "expires_at": None,
            "first_message_id": first_m,
            "first_source_id": first_s,
            "last_message_id": last_m,
            "last_source_id": last_s,
        }

    def subscriptions(self, profile_id: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT type, key, status, groups, updated_at FROM subscriptions WHERE profile_id = ?"
            " ORDER BY type, key",
            (profile_id,),
        )
        return [
            {"type": t, "key": k, "status": s, "groups": json.loads(g), "updated_at": u}
            for t, k, s, g, u in rows
        ]

    def all_traits(self, profile_id: str) -> list[dict[str, Any]]:
        rows = self._all(
            "SELECT key, value, class, updated_at FROM traits WHERE profile_id = ? ORDER BY key",
            (profile_id,),
        )
        return [
            {"key": k, "value": json.loads(v), "class": c, "updated_at": u} for k, v, c, u in rows
        ]

    def event_count(self, profile_id: str) -> int:
        return int(self._one("SELECT COUNT(*) FROM events WHERE profile_id = ?", (profile_id,))[0])

    def counts(self) -> dict[str, int]:
        tables = {
            "users": "SELECT COUNT(*) FROM profiles WHERE collection = 'users'"
            " AND merged_into IS NULL",
            "accounts": "SELECT COUNT(*) FROM profiles WHERE collection = 'accounts'"
            " AND merged_into IS NULL",
            "identifiers": "SELECT COUNT(*) FROM identifiers",
            "events": "SELECT COUNT(*) FROM events",
        }
        return {name: int(self._one(sql)[0]) for name, sql in tables.items()}


def _external_id(
    collection: str,
    type_: str,
    value: str,
    source_id: str | None,
    created_at: str,
    first_message_id: str | None,
    encoding: str,
) -> dict[str, Any]:
    return {
        "source_id": source_id,
        "collection": collection,
        "id": value,
        "type": type_,
        "created_at": created_at,
        "encoding": encoding,
        "first_message_id": first_message_id,
    }


def external_ids_of(store: Store, profile_id: str) -> list[dict[str, Any]]:
    """Every external id of a profile, in the Profile API's shape."""
    return [entry for _, entry in store.external_ids(profile_id, None, 0, 10_000)]


def _ksuid_like(seed: str) -> str:
    """A 27-character base62 id, deterministic for a given seed (reproducible data loads)."""
    number = int.from_bytes(hashlib.blake2b(seed.encode(), digest_size=20).digest(), "big")
    chars = []
    for _ in range(27):
        number, digit = divmod(number, 62)
        chars.append(_BASE62[digit])
    return "".join(chars)
