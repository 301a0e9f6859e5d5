"""`python -m connector` runs the `connector` command."""

from connector.cli import main

main()
