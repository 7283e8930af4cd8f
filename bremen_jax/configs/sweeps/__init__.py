"""Shipped sweep files for ``bremen sweep --config NAME`` (or a ``.py`` path for your own):
each module defines ``get_config()`` (or ``base = "<config name or path>"``) and ``get_sweep()``.

Loaded by name through :func:`bremen_jax.sweep.spec.load_sweep_module`. See docs/sweeps.md for
the format.
"""
