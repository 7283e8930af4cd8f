"""Paper settings for Walker2d (reference §8): 10 deployments x 200K, H=1000, delta=0.05,
2,000 TRPO iterations per deployment (80 x 25)."""

from bremen_jax.configs import default


def get_config():
    c = default.get_config()
    c.task = "walker2d"
    c.imagine.horizon = 1000
    c.trpo.target_kl = 0.05
    c.deploy.num_deployments = 10
    return c
