"""``python -m bremen_jax.cli``: the ``bremen`` command."""

from bremen_jax.cli import console_main

console_main()
