"""``python -m engine.cli``: the same as the ``nas-engine`` command."""

import sys

from engine.cli import main

sys.exit(main())
