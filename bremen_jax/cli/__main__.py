"""``python -m bremen_jax.cli``: the ``bremen`` command."""

import sys

from bremen_jax.cli import main

sys.exit(main())
