"""``python -m ml_dash.server``: the same as ``ml-dash server``."""

import sys

from .cli import main

sys.exit(main())
