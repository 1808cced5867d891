"""``python -m effopd.cli``: the same command line as the ``effopd`` console script."""

import sys

from effopd.cli.main import main

sys.exit(main())
