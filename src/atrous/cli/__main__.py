"""``python -m atrous.cli``: the ``atrous`` console script."""

import sys

from . import main

sys.exit(main())
