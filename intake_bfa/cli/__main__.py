"""``python -m intake_bfa.cli``: the ``bfa`` command."""

import sys

from intake_bfa.cli.app import main

sys.exit(main())
