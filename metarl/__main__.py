"""``python -m metarl``: the ``metarl`` command."""

import sys

from metarl.cli import main

sys.exit(main())
