"""The `connector` command: one module per command.

`serve`, `check` and `outbox` import nothing from the sandbox; `sandbox`, `demo` and
`generate-data` import it when they run, not when they are registered here.
"""

from __future__ import annotations

import click

from connector.cli import check, data, demo, outbox, sandbox, serve


@click.group()
@click.version_option(package_name="unified-profiles-connector")
def main() -> None:
    """Unified Profiles connector for Twilio Flex and Studio."""


main.add_command(sandbox.sandbox)
main.add_command(serve.serve)
main.add_command(check.check)
main.add_command(demo.demo)
main.add_command(outbox.outbox)
main.add_command(data.generate_data)
