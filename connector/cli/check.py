"""`connector check`: the connection file, the space and the token, proved with one request."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from connector.checks import run_checks
from connector.cli.common import config_option
from connector.config.loading import config_path
from connector.segment.client import build_http_client


@click.command()
@config_option
def check(config_file: Path | None) -> None:
    """Validate the connection file, then prove the space and token work with one request."""
    path = config_path(config_file)
    with build_http_client() as http:
        result = run_checks(path, http)
    for step in result.steps:  # what passed on stdout, what failed on stderr
        click.echo(step.message, err=not step.ok)
    if not result.ok:
        sys.exit(result.exit_code)
