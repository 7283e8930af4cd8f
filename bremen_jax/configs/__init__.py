"""Shipped configs, loaded by name with ``bremen_jax.config.load_config("<name>")``.

Each module defines ``get_config() -> ml_collections.ConfigDict``. ``default`` is the schema's
defaults (the paper's HalfCheetah settings); every other config starts from it and overrides fields.
``sweeps/`` holds the sweep specifications.
"""
