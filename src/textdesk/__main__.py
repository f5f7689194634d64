"""``python -m textdesk`` is the ``textdesk`` command."""

from textdesk.cli import main

main()
