"""`connector serve`: the connector under gunicorn."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from connector.cli.common import config_option
from connector.config.errors import ConfigError
from connector.config.loading import config_path
from connector.logs import configure_logging
from connector.serving.gunicorn import ALL_INTERFACES
from connector.serving.gunicorn import serve as run_server


@click.command()
@config_option
@click.option(
    "--host",
    default=ALL_INTERFACES,
    show_default=True,
    help="Address to listen on (127.0.0.1 for this machine only).",
)
@click.option("--port", default=8080, show_default=True, help="Port to listen on.")
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--threads", default=32, show_default=True, help="Threads per worker.")
def serve(config_file: Path | None, host: str, port: int, workers: int, threads: int) -> None:
    """Run the connector under gunicorn. Put TLS in front of it (a platform router or a proxy):
    Flex tokens travel in its requests."""
    path = config_path(config_file)
    configure_logging()  # from the first line on, a platform's log pipeline reads JSON
    try:
        run_server(path, host, port, workers, threads)
    except ConfigError as error:
        logging.getLogger("connector.serve").error("connection file refused: %s", error)
        sys.exit(1)
