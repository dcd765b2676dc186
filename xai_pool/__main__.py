"""``python -m xai_pool``: the ``xai-pool`` command line."""

import sys

from .cli import main

sys.exit(main())
