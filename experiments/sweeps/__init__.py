"""Sweep files for ``bremen sweep --config FILE``: ``get_config()`` + ``get_sweep()``.

See docs/sweeps.md for the format.
"""
