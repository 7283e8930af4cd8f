"""inverted_pendulum (not a BREMEN env; Brax's): keep the pole up; a small, fast test task.

obs (4) = ``q`` (cart x, pole angle) + ``qd``. a = 1. Control dt: generalized 0.02 × 2 = 0.04,
spring/positional 0.005 × 4 = 0.02. Reset: U(±0.01) on positions and velocities. The tests and
the ``test`` config use backend positional.
"""

import jax.numpy as jnp

from bremen_jax.envs.spec import TaskSpec
from bremen_jax.envs.tasks import _common


def reward(obs, action, next_obs):
    """r = 1 per step (Brax's inverted_pendulum)."""
    del action, next_obs
    return jnp.ones(obs.shape[:-1], jnp.float32)


def done(next_obs):
    """Done when |pole angle| = |s'[1]| > 0.2 or any entry is non-finite."""
    bad = (jnp.abs(next_obs[..., 1]) > 0.2) | jnp.any(~jnp.isfinite(next_obs), axis=-1)
    return bad.astype(jnp.float32)


SPEC = TaskSpec(
    name="inverted_pendulum", brax_env="inverted_pendulum", obs_size=4, obs_fn=_common.obs_full,
    reset_obs=_common.reset_obs_pendulum, reward_fn=reward, done_fn=done,
    default_backend="positional", behavior_ppo=_common.balance_ppo(num_minibatches=8),
    description="Inverted pendulum (Brax): +1 per step until |pole angle| > 0.2")
