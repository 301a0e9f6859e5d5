"""`connector generate-data`: JSON Lines for the sandbox (it imports the emulator when run)."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("generate-data")
@click.option("--demo", is_flag=True, help="Write the demo data set instead of synthetic profiles.")
@click.option("--profiles", default=1000, show_default=True, help="Synthetic profiles to generate.")
@click.option("--seed", default=1, show_default=True)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True)
def generate_data(demo: bool, profiles: int, seed: int, out: Path) -> None:
    """Write JSON Lines of Spec messages for `connector sandbox --data`."""
    from connector.sandbox.datagen import write_demo, write_synthetic  # noqa: PLC0415

    with out.open("w", encoding="utf-8") as file:
        count = write_demo(file) if demo else write_synthetic(file, profiles, seed)
    click.echo(f"wrote {count} messages to {out}")
