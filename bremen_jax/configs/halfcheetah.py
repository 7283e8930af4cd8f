"""Paper settings for HalfCheetah (reference §8): 5 deployments x 200K, H=250, delta=0.1, lambda=0.95."""

from bremen_jax.configs import default


def get_config():
    return default.get_config()
