"""``python -m normlab``: the same command line as the ``normlab`` script."""

import sys

from normlab.cli import main

sys.exit(main())
