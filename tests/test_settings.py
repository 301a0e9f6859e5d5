"""The connection file: file, key and reason for every refusal; secrets; reload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from connector.config.errors import ConfigError
from connector.config.loading import load_connection

ROOT = Path(__file__).resolve().parent.parent
ENV = {
    "SEGMENT_PROFILE_API_TOKEN": "tok-very-secret",
    "SEGMENT_WRITE_KEY": "wk-very-secret",
    "TWILIO_ACCOUNT_SID": "AC" + "0123456789abcdef" * 2,
    "TWILIO_AUTH_TOKEN": "twilio-very-secret",
    "STUDIO_BASIC": "studio:basic-very-secret",
}
GOOD = """
[connection]
friendly_name = "Owl Goods"
space_id = "spa_1"
token_env = "SEGMENT_PROFILE_API_TOKEN"

[[traits]]
key = "plan"
label = "Plan"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "connection.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["connection.example.toml", "demo.toml"])
def test_shipped_files_are_valid(name: str) -> None:
    connection = load_connection(ROOT / "config" / name, ENV)
    assert connection.file.connection.friendly_name


def test_regions_and_overrides(tmp_path: Path) -> None:
    us = load_connection(write(tmp_path, GOOD), ENV)
    assert us.profile_api_url == "https://profiles.segment.com"
    assert us.tracking_api_url == "https://api.segment.io"
    eu = load_connection(
        write(tmp_path, GOOD.replace('space_id = "spa_1"', 'space_id = "spa_1"\nregion = "eu"')),
        ENV,
    )
    assert eu.profile_api_url == "https://profiles.euw1.segment.com"
    assert eu.tracking_api_url == "https://events.eu1.segmentapis.com"
    local = load_connection(
        write(
            tmp_path,
            GOOD.replace(
                'space_id = "spa_1"', 'space_id = "spa_1"\nprofile_api_url = "http://127.0.0.1:9/"'
            ),
        ),
        ENV,
    )
    assert local.profile_api_url == "http://127.0.0.1:9"


BAD_EDITS = [
    (
        GOOD.replace("friendly_name", "frendly_name"),
        "connection.frendly_name",
        "unknown key (did you mean friendly_name?)",
    ),
    (GOOD + "[lookup]\ntimeout = 3\n", "lookup.timeout", "did you mean timeout_seconds?"),
    (GOOD + '[[traits]]\nkey = "x"\nlable = "X"\n', "traits[1].lable", "did you mean label?"),
    (GOOD + "[lokup]\n", "lokup", "did you mean lookup?"),
    (GOOD.replace('space_id = "spa_1"\n', ""), "connection.space_id", "missing"),
    (
        GOOD.replace('space_id = "spa_1"', 'space_id = "spa_1"\nregion = "mars"'),
        "connection.region",
        "'us' or 'eu'",
    ),
    (GOOD + "[lookup]\ntimeout_seconds = 20\n", "lookup.timeout_seconds", "less than or equal"),
    (GOOD + '[lookup]\ndefault_country = "XX"\n', "lookup.default_country", "country code"),
    (GOOD + '[lookup]\nphone_formats = ["e.164"]\n', "lookup.phone_formats[0]", "e164"),
    (GOOD + '[[traits]]\nkey = "city"\nlabel = ""\n', "traits[1].label", "at least 1"),
    (GOOD + '[[traits]]\nkey = "plan"\nlabel = "Again"\n', None, "plan more than once"),
    (
        GOOD + '[[traits]]\nkey = "x"\nlabel = "X"\nformat = "money"\n',
        "traits[1].format",
        "'currency'",
    ),
    (
        GOOD + '[cors]\nallowed_origins = ["flex.twilio.com"]\n',
        "cors.allowed_origins[0]",
        "pattern",
    ),
    (
        GOOD.replace('token_env = "SEGMENT_PROFILE_API_TOKEN"', 'token_env = "NOT_SET_ANYWHERE"'),
        "connection.token_env",
        "NOT_SET_ANYWHERE is not set",
    ),
    (
        GOOD + '[writeback]\nenabled = true\nwrite_key_env = "MISSING_KEY"\n',
        "writeback.write_key_env",
        "MISSING_KEY is not set",
    ),
    (GOOD + '[auth]\nallowed_roles = ["agent", "guest"]\n', "auth.allowed_roles", "guest"),
    (GOOD + "[auth]\nallowed_roles = []\n", "auth.allowed_roles", "at least 1"),
    (GOOD + "[auth]\ntrusted_proxies = 9\n", "auth.trusted_proxies", "less than or equal"),
    (
        GOOD + "[auth]\nagent_lookups_per_minute = 0\n",
        "auth.agent_lookups_per_minute",
        "greater than or equal to 1",
    ),
    (
        GOOD + '[auth]\nstudio_basic_auth_env = "NOT_SET_ANYWHERE"\n',
        "auth.studio_basic_auth_env",
        "NOT_SET_ANYWHERE is not set",
    ),
    (
        GOOD + '[auth]\nstudio_basic_auth_env = "SEGMENT_WRITE_KEY"\n',
        "auth.studio_basic_auth_env",
        "must be user:password",
    ),
    (
        GOOD + '[[traits]]\nkey = "ssn"\nlabel = "SSN"\nmask = "last_4"\n',
        "traits[1].mask",
        "'last4' or 'hidden'",
    ),
    (
        GOOD + '[[traits]]\nkey = "ssn"\nlabel = "SSN"\nvisible_to_roles = []\n',
        "traits[1].visible_to_roles",
        "lists no role, so nobody could see the value",
    ),
    (
        GOOD + '[[computed_traits]]\nkey = "risk"\nlabel = "Risk"\nvisible_to_roles = ["guest"]\n',
        "computed_traits[0].visible_to_roles",
        "remove guest from visible_to_roles",
    ),
    (
        GOOD + '[[identifiers]]\ntype = "tax_id"\nlabel = "Tax"\nvisible_to_roles = ["Admin"]\n',
        "identifiers[0].visible_to_roles[0]",
        "pattern",
    ),
    (
        GOOD + '[[traits]]\nkey = "ssn"\nlabel = "SSN"\nvisible_to_roles = ["manager"]\n',
        None,
        "traits[1] (ssn): visible_to_roles lists manager, which [auth] allowed_roles does not",
    ),
    (
        GOOD + '[[traits]]\nkey = "last_name"\nlabel = "Surname"\nmask = "hidden"\n',
        None,
        "traits[1] (last_name): the card's title is made of last_name",
    ),
    (
        GOOD + '[[traits]]\nkey = "created_at"\nlabel = "Created"\nmask = "last4"\n',
        None,
        "remove it from since_traits to mask it",
    ),
    (
        GOOD + '[[audiences]]\nkey = "vip"\nlabel = "VIP"\nmask = "hidden"\n',
        "audiences[0].mask",
        "unknown key",
    ),
    (
        GOOD + '[auth]\nadmin_basic_auth_env = "NOT_SET_ANYWHERE"\n',
        "auth.admin_basic_auth_env",
        "NOT_SET_ANYWHERE is not set",
    ),
    (
        GOOD + '[auth]\nadmin_basic_auth_env = "SEGMENT_WRITE_KEY"\n',
        "auth.admin_basic_auth_env",
        "must be user:password",
    ),
    (GOOD + "[connection\n", None, "not valid TOML"),
    (GOOD + "[lookup]\ndefault_country = +1\n", "lookup.default_country", "valid string"),
]


@pytest.mark.parametrize(("text", "key", "reason"), BAD_EDITS)
def test_bad_files_name_file_key_and_reason(
    tmp_path: Path, text: str, key: str | None, reason: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_connection(path, ENV)
    assert caught.value.key == key
    assert reason in caught.value.reason
    assert str(caught.value).startswith(str(path))
    for secret in ENV.values():
        assert secret not in str(caught.value)


def test_secrets_come_from_the_environment_and_never_show(tmp_path: Path) -> None:
    connection = load_connection(write(tmp_path, GOOD), ENV)
    assert connection.token.get_secret_value() == "tok-very-secret"
    assert "tok-very-secret" not in repr(connection) and "tok-very-secret" not in str(connection)


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the file"):
        load_connection(tmp_path / "absent.toml", ENV)


def bump(path: Path, text: str) -> None:
    """Rewrite the file so that its modification time surely changes."""
    before = path.stat().st_mtime_ns
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before + 10**9, before + 10**9))


@pytest.mark.parametrize(
    ("missing", "value", "reason"),
    [
        ("TWILIO_ACCOUNT_SID", None, "TWILIO_ACCOUNT_SID is not set"),
        ("TWILIO_ACCOUNT_SID", "ACnope", "is not an account SID"),
        ("TWILIO_AUTH_TOKEN", None, "TWILIO_AUTH_TOKEN is not set"),
        ("TWILIO_IAM_URL", "iam.twilio.com", "TWILIO_IAM_URL must be a URL"),
    ],
)
def test_twilio_credentials_are_required_to_check_tokens_and_signatures(
    tmp_path: Path, missing: str, value: str | None, reason: str
) -> None:
    environ = {k: v for k, v in ENV.items() if k != missing}
    if value is not None:
        environ[missing] = value
    with pytest.raises(ConfigError) as caught:
        load_connection(write(tmp_path, GOOD), environ)
    assert caught.value.key == "auth" and reason in caught.value.reason


def test_twilio_account_and_basic_auth_from_the_environment(tmp_path: Path) -> None:
    text = GOOD + '[auth]\nstudio_basic_auth_env = "STUDIO_BASIC"\n'
    connection = load_connection(write(tmp_path, text), {**ENV, "TWILIO_IAM_URL": "http://x:1/"})
    assert connection.twilio.account_sid == ENV["TWILIO_ACCOUNT_SID"]
    assert connection.twilio.iam_url == "http://x:1"
    assert connection.studio_basic_auth is not None
    user, password = connection.studio_basic_auth
    assert (user, password.get_secret_value()) == ("studio", "basic-very-secret")
    assert "very-secret" not in repr(connection)
    default = load_connection(write(tmp_path, GOOD), ENV)
    assert default.twilio.iam_url == "https://iam.twilio.com" and default.studio_basic_auth is None
    assert default.file.auth.allowed_roles == ["agent", "supervisor", "admin"]


@pytest.mark.parametrize(
    ("text", "unset"),
    [
        (GOOD, "SEGMENT_PROFILE_API_TOKEN"),
        (GOOD + "[writeback]\nenabled = true\n", "SEGMENT_WRITE_KEY"),
        (GOOD, "TWILIO_ACCOUNT_SID"),
        (GOOD, "TWILIO_AUTH_TOKEN"),
        (GOOD + '[auth]\nstudio_basic_auth_env = "STUDIO_BASIC"\n', "STUDIO_BASIC"),
    ],
)
def test_a_missing_variable_is_named_with_how_to_set_it(
    tmp_path: Path, text: str, unset: str
) -> None:
    environ = {k: v for k, v in ENV.items() if k != unset}
    with pytest.raises(ConfigError) as caught:
        load_connection(write(tmp_path, text), environ)
    reason = caught.value.reason
    assert f"{unset} is not set: export {unset}=" in reason
    assert "or set it in your platform's config vars" in reason


def test_write_back_needs_an_outbox_folder_it_can_write(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("not a folder", encoding="utf-8")
    text = GOOD + '[writeback]\nenabled = true\noutbox_path = "blocker/outbox.sqlite"\n'
    with pytest.raises(ConfigError) as caught:
        load_connection(write(tmp_path, text), ENV)
    assert caught.value.key == "writeback.outbox_path"
    assert "blocker is a file" in caught.value.reason
    # A folder not there yet is fine (the outbox creates it), and checking creates nothing.
    text = GOOD + '[writeback]\nenabled = true\noutbox_path = "later/outbox.sqlite"\n'
    assert load_connection(write(tmp_path, text), ENV).file.writeback.enabled
    assert not (tmp_path / "later").exists()
