"""The ``bfa`` command line, one module per command group (``app`` holds the parser).

The only code that prints or exits. ``python -m intake_bfa.cli`` runs it too.
"""

from intake_bfa.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
