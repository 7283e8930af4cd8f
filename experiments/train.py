"""Recursive BREMEN entry point: ``python -m experiments.train [--config NAME] [--workdir D] ...``.

A thin wrapper over ``bremen train`` (same flags: ``--config``, ``--workdir``, ``--resume``,
``--driver host|compiled`` and ``--config.FIELD=VALUE`` overrides). With no arguments it runs the
``quick`` config.
"""

import sys

from bremen_jax.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
