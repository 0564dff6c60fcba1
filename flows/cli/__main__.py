"""``python -m flows.cli``: the same as the ``cloudops`` command."""

from flows.cli.app import main

main()
