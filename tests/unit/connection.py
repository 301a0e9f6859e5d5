"""A connection file and environment for unit tests, its hosts answered by httpx.MockTransport."""

from __future__ import annotations

from pathlib import Path

PROFILE_API_URL = "https://profiles.example.test"
TRACKING_API_URL = "https://tracking.example.test"
IAM_URL = "https://iam.example.test"
SPACE = "spa_unit"
PROFILE_TOKEN = "unit-profile-token"
WRITE_KEY = "unit-write-key"
ACCOUNT_SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "unit-twilio-auth-token"
ENVIRON = {
    "SEGMENT_PROFILE_API_TOKEN": PROFILE_TOKEN,
    "SEGMENT_WRITE_KEY": WRITE_KEY,
    "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
    "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
    "TWILIO_IAM_URL": IAM_URL,
}


def connection_toml(
    writeback: bool = False, auth: str = "", give_up_after_hours: float = 20
) -> str:
    return f"""
[connection]
friendly_name = "Unit tests"
space_id = "{SPACE}"
profile_api_url = "{PROFILE_API_URL}"

[[identifiers]]
type = "email"
label = "Email"

[[traits]]
key = "plan"
label = "Plan"

[auth]
{auth}

[writeback]
enabled = {"true" if writeback else "false"}
tracking_api_url = "{TRACKING_API_URL}"
outbox_path = "outbox.sqlite"
give_up_after_hours = {give_up_after_hours}
"""


def write_connection(
    folder: Path, writeback: bool = False, auth: str = "", give_up_after_hours: float = 20
) -> Path:
    path = folder / "connection.toml"
    text = connection_toml(writeback, auth, give_up_after_hours)
    path.write_text(text, encoding="utf-8")
    return path
