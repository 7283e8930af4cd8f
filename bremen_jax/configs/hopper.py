"""Paper settings for Hopper (reference §8): 10 deployments x 200K, H=1000, delta=0.05,
6,000 TRPO iterations per deployment (240 x 25)."""

from bremen_jax.configs import default


def get_config():
    c = default.get_config()
    c.task = "hopper"
    c.imagine.horizon = 1000
    c.trpo.target_kl = 0.05
    c.trpo.iterations = 6000
    c.deploy.num_deployments = 10
    return c
