"""`connector check`: the connection file, the space and the token, proved with one request."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import httpx

from connector.auth.flex_tokens import FlexTokens
from connector.cli.common import config_option
from connector.config.errors import ConfigError
from connector.config.holder import ConnectionHolder
from connector.config.loading import config_path
from connector.config.secrets import TwilioAccount
from connector.errors import TwilioRefusedCredentials, TwilioUnavailable
from connector.segment.api import ProfileApi
from connector.segment.client import build_http_client
from connector.segment.probe import ReadinessProbe


@click.command()
@config_option
def check(config_file: Path | None) -> None:
    """Validate the connection file, then prove the space and token work with one request."""
    path = config_path(config_file)
    try:
        holder = ConnectionHolder(path)
    except ConfigError as error:
        click.echo(f"invalid connection file: {error}", err=True)
        sys.exit(2)
    connection = holder.current()
    section = connection.file.connection
    click.echo(
        f"{path}: valid (connection {section.friendly_name!r}, space {section.space_id}, "
        f"{connection.profile_api_url})"
    )
    with build_http_client() as http:
        upstream = ReadinessProbe(ProfileApi(http)).check(connection, fresh=True)
        twilio = _check_twilio(http, connection.twilio)
    request_id = f" (Request-Id {upstream.request_id})" if upstream.request_id else ""
    if upstream.ok:
        click.echo(
            f"OK: the space answered and accepted the token from {section.token_env}{request_id}"
        )
    elif upstream.code == "token_refused":
        click.echo(
            f"FAILED (token_refused): Segment refused the token in {section.token_env}{request_id}",
            err=True,
        )
    elif upstream.code == "space_not_found":
        click.echo(
            f"FAILED (space_not_found): Segment has no space {section.space_id!r}; "
            f"check space_id in {path}{request_id}",
            err=True,
        )
    else:
        # For the admin, what happened and where: `cannot reach Segment (ConnectError)` at a URL.
        click.echo(
            f"FAILED ({upstream.code}): {upstream.cause or upstream.detail} at "
            f"{connection.profile_api_url}{request_id}",
            err=True,
        )
    if twilio is None:
        click.echo(
            f"OK: Twilio ({connection.twilio.iam_url}) accepted TWILIO_ACCOUNT_SID and "
            "TWILIO_AUTH_TOKEN for checking Flex tokens"
        )
    else:
        click.echo(f"FAILED: {twilio}", err=True)
    if not upstream.ok or twilio is not None:
        sys.exit(1)


def _check_twilio(http: httpx.Client, account: TwilioAccount) -> str | None:
    """None when Twilio accepts the account's credentials, else what went wrong."""
    try:
        FlexTokens(http).verdict("connector-check-not-a-token", account)
    except TwilioRefusedCredentials:
        return "Twilio refused TWILIO_ACCOUNT_SID / TWILIO_AUTH_TOKEN"
    except TwilioUnavailable:
        return f"Twilio's token check ({account.iam_url}) did not answer"
    return None
