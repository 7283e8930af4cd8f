"""Paper settings for Ant (reference §8): 5 deployments x 200K, H=250, delta=0.05, lambda=0.97.

Backend ``mjx`` (MuJoCo physics through MJX), not the default ``generalized``: BREMEN's ant never
terminates, and under random actions Brax's generalized ant blows up (a torso 20 m up, |obs| in the
thousands and NaN within 400 steps in 1 of 64 environments, seed 0), which poisons the dataset and
the dynamics fit. MJX stays finite (|obs| < 18), keeps the original's control timestep (0.01 × 5)
and gear 150, and steps faster than generalized on a CPU (7.3K vs 4.0K env steps/s, 64 envs).
"""

from bremen_jax.configs import default


def get_config():
    c = default.get_config()
    c.task = "ant"
    c.backend = "mjx"
    c.trpo.target_kl = 0.05
    c.trpo.lam = 0.97
    return c
