"""`connector outbox`: the write-back outbox's depth and dead letters.

The outbox is PostgreSQL's when this process's environment has `DATABASE_URL` (as the
connector's does), else the SQLite file the connection file names.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from connector.cli.common import config_option
from connector.config.errors import ConfigError
from connector.config.loading import config_path, outbox_file, read_connection_file
from connector.errors import OutboxUnavailable
from connector.writeback.outbox import Outbox, OutboxStore
from connector.writeback.postgres_outbox import PostgresOutbox, database_url


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
    database = database_url(os.environ)
    if database is not None:
        postgres = PostgresOutbox(database)
        try:
            if not postgres.exists():  # looking must not create one
                click.echo(
                    f"no outbox in {postgres.location} (write-back {state}): "
                    "no event was ever accepted there"
                )
                return
            _show(postgres, state, retry_dead, purge_dead, retry_now)
        except OutboxUnavailable as error:
            raise click.ClickException(
                f"the outbox database {postgres.location} cannot be reached ({error.detail})"
            ) from None
        finally:
            postgres.close()
        return
    where = outbox_file(path, file)
    if not where.exists():  # looking must not create one
        click.echo(f"no outbox at {where} (write-back {state}): no event was ever accepted there")
        return
    _show(Outbox(where), state, retry_dead, purge_dead, retry_now)


def _show(
    box: OutboxStore, state: str, retry_dead: bool, purge_dead: bool, retry_now: bool
) -> None:
    if retry_dead:
        click.echo(f"{box.retry_dead()} dead letter(s) back in line")
    if purge_dead:
        click.echo(f"{box.purge_dead()} dead letter(s) deleted")
    if retry_now:
        click.echo(f"{box.retry_now()} pending event(s) due now")
    depth = box.depth()
    oldest = f"{depth.oldest_pending_age:.0f}s" if depth.oldest_pending_age is not None else "-"
    click.echo(
        f"outbox {box.location} (write-back {state}): {depth.pending} pending "
        f"(oldest {oldest}), {depth.sent} sent (kept 24 h), {depth.dead} dead (kept until purged)"
    )
    for message_id, reason, _ in box.dead_letters(limit=20):
        click.echo(f"  dead {message_id}: {reason}")
