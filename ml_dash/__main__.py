"""``python -m ml_dash``: the ``ml-dash`` command."""

import sys

from .cli import main

sys.exit(main())
