"""Offline BREMEN entry point: ``python -m experiments.offline --config NAME --dataset F
--workdir D``.

A thin wrapper over ``bremen offline`` (same flags, including ``--config.FIELD=VALUE`` overrides).
"""

import sys

from bremen_jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["offline", *sys.argv[1:]]))
