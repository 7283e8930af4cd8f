"""Default BREMEN configuration: the paper's HalfCheetah settings (reference §8-§9).

The values, their kinds (static: recompiles; traced: an HParams leaf; host) and what each field
means are the schema's, in ``bremen_jax/config/schema.py`` (the one set of defaults). Every other
config imports this one and overrides fields.
"""

import ml_collections

from bremen_jax import config


def get_config() -> ml_collections.ConfigDict:
    return config.default_config()
