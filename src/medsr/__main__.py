"""``python -m medsr`` is the same as the ``medsr`` command."""

import sys

from medsr.cli import main

sys.exit(main())
