"""Loading the connection: the file validated, its secrets resolved, the result versioned."""

from __future__ import annotations

import hashlib
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pydantic import (
    SecretStr,
    ValidationError,
)

from connector.config.errors import ConfigError, _dotted, _reason
from connector.config.schema import REGION_URLS, TRACKING_URLS, ConnectionFile
from connector.config.secrets import TwilioAccount, _basic_credentials, _secret, _twilio_account

log = logging.getLogger(__name__)


DEFAULT_CONFIG = Path("config/connection.toml")


@dataclass(frozen=True)
class Connection:
    """A validated connection with its secrets, as the service uses it."""

    file: ConnectionFile
    token: SecretStr
    write_key: SecretStr | None
    version: str
    path: Path
    twilio: TwilioAccount
    studio_basic_auth: tuple[str, SecretStr] | None = None
    admin_basic_auth: tuple[str, SecretStr] | None = None

    @property
    def profile_api_url(self) -> str:
        section = self.file.connection
        return (section.profile_api_url or REGION_URLS[section.region]).rstrip("/")

    @property
    def outbox_path(self) -> Path:
        return outbox_file(self.path, self.file)

    @property
    def tracking_api_url(self) -> str:
        return (
            self.file.writeback.tracking_api_url or TRACKING_URLS[self.file.connection.region]
        ).rstrip("/")


def outbox_file(config: Path, file: ConnectionFile) -> Path:
    """The outbox file; a relative path is relative to the connection file's folder."""
    return config.parent / file.writeback.outbox_path


def read_connection_file(path: Path) -> ConnectionFile:
    """Read and validate the file alone (no secrets); raise ConfigError naming what is wrong."""
    return _validate(path, _read(path))


def load_connection(
    path: Path, environ: Mapping[str, str] = os.environ, raw: bytes | None = None
) -> Connection:
    """Read (or take `raw`, the file's bytes), validate and resolve secrets; raise ConfigError
    naming what is wrong."""
    raw = _read(path) if raw is None else raw
    file = _validate(path, raw)
    token = _secret(path, environ, "connection.token_env", file.connection.token_env)
    write_key = None
    if file.writeback.enabled:  # what turning it on needs, named before any event is accepted
        write_key = _secret(path, environ, "writeback.write_key_env", file.writeback.write_key_env)
        _check_outbox_folder(path, file)
    twilio = _twilio_account(path, environ)
    basic = None
    if file.auth.studio_basic_auth_env:
        basic = _basic_credentials(path, environ, file.auth.studio_basic_auth_env)
    admin = None
    if file.auth.admin_basic_auth_env:
        admin = _basic_credentials(
            path, environ, file.auth.admin_basic_auth_env, "auth.admin_basic_auth_env"
        )
    version = hashlib.sha256(raw).hexdigest()[:16]
    return Connection(file, token, write_key, version, path, twilio, basic, admin)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(path, None, f"cannot read the file ({error.strerror})") from None


def _validate(path: Path, raw: bytes) -> ConnectionFile:
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(path, None, f"not valid TOML ({error})") from None
    try:
        return ConnectionFile.model_validate(data)
    except ValidationError as error:
        # An unknown key first: a typo also makes the intended key "missing", and the typo is
        # what the admin must fix.
        first = min(error.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise ConfigError(path, _dotted(first["loc"]) or None, _reason(first)) from None


def _check_outbox_folder(path: Path, file: ConnectionFile) -> None:
    """The outbox's folder must take new files (the database and SQLite's -wal and -shm)."""
    target = outbox_file(path, file)
    folder = target.parent
    nearest = next(p for p in (folder, *folder.parents) if p.exists())  # "." or "/" at worst
    if not nearest.is_dir():
        problem = f"{nearest} is a file, so the folder {folder} cannot be created"
    elif not os.access(nearest, os.W_OK | os.X_OK):
        problem = f"the folder {nearest} cannot be written"
    elif target.exists() and not (target.is_file() and os.access(target, os.R_OK | os.W_OK)):
        problem = f"{target} is not a file this process can read and write"
    else:
        return
    raise ConfigError(
        path,
        "writeback.outbox_path",
        f"write-back is on but {problem}; set outbox_path to a writable folder on a persistent "
        "disk",
    )


def config_path(explicit: str | Path | None = None) -> Path:
    """`--config`, else CONNECTOR_CONFIG, else config/connection.toml."""
    return Path(explicit or os.environ.get("CONNECTOR_CONFIG") or DEFAULT_CONFIG)
