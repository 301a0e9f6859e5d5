"""`connector outbox`: the write-back outbox's depth and dead letters."""

from __future__ import annotations

from pathlib import Path

import click

from connector.cli.common import config_option
from connector.config.errors import ConfigError
from connector.config.loading import config_path, outbox_file, read_connection_file
from connector.writeback.outbox import Outbox


@click.command()
@config_option
@click.option("--retry-dead", is_flag=True, help="Put every dead letter back in line.")
@click.option("--purge-dead", is_flag=True, help="Delete every dead letter.")
@click.option("--retry-now", is_flag=True, help="Send pending events now, not after backoff.")
def outbox(config_file: Path | None, retry_dead: bool, purge_dead: bool, retry_now: bool) -> None:
    """The write-back outbox: depth, oldest pending event, dead letters."""
    path = config_path(config_file)
    try:  # no secrets needed to look at the outbox
        file = read_connection_file(path)
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    state = "on" if file.writeback.enabled else "off"
    where = outbox_file(path, file)
    if not where.exists():  # looking must not create one
        click.echo(f"no outbox at {where} (write-back {state}): no event was ever accepted there")
        return
    box = Outbox(where)
    if retry_dead:
        click.echo(f"{box.retry_dead()} dead letter(s) back in line")
    if purge_dead:
        click.echo(f"{box.purge_dead()} dead letter(s) deleted")
    if retry_now:
        click.echo(f"{box.retry_now()} pending event(s) due now")
    depth = box.depth()
    oldest = f"{depth.oldest_pending_age:.0f}s" if depth.oldest_pending_age is not None else "-"
    click.echo(
        f"outbox {where} (write-back {state}): {depth.pending} pending "
        f"(oldest {oldest}), {depth.sent} sent (kept 24 h), {depth.dead} dead (kept until purged)"
    )
    for message_id, reason, _ in box.dead_letters(limit=20):
        click.echo(f"  dead {message_id}: {reason}")
