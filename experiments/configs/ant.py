"""Paper settings for Ant (reference §8): 5 deployments x 200K, H=250, delta=0.05, lambda=0.97."""

from experiments.configs import default


def get_config():
    c = default.get_config()
    c.task = "ant"
    c.trpo.target_kl = 0.05
    c.trpo.lam = 0.97
    return c
