"""What the commands share: the --config option, signal handling, a port probe."""

from __future__ import annotations

import signal
import socket
import threading
from pathlib import Path

import click

from connector.serving.processes import HOST as LOOPBACK

config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Connection file (default: CONNECTOR_CONFIG or config/connection.toml).",
)


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM.

    Handlers are installed explicitly: a process started in the background by a shell
    inherits SIGINT as ignored, and process managers stop services with SIGTERM.
    """
    stopping = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stopping.set())
    return stopping


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True
