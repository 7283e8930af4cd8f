"""walker2d (BREMEN §6, §7): walk forward without falling.

obs (17) = [torso z, ``q[2:]``] + ``qd`` (9); ``obs[0]`` = z, ``obs[1]`` = torso angle, ``obs[8]``
= x-velocity. a = 6. Control dt 0.002 × 4 = 0.008 on every backend (= original). Reset:
U(±0.005) on positions and velocities.
"""

import jax.numpy as jnp

from bremen_jax.envs.spec import TaskSpec
from bremen_jax.envs.tasks import _common


def reward(obs, action, next_obs):
    """r = s'[8] − 1e-3‖a‖² + 1 (post-step x-velocity, §6)."""
    del obs
    return (next_obs[..., 8] - 1e-3 * _common.ctrl_sq(action) + 1.0).astype(jnp.float32)


def done(next_obs):
    """Done unless (0.8 < s'[0] < 2.0 ∧ −1 < s'[1] < 1) (§6)."""
    z, angle = next_obs[..., 0], next_obs[..., 1]
    alive = (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)
    return jnp.logical_not(alive).astype(jnp.float32)


SPEC = TaskSpec(
    name="walker2d", brax_env="walker2d", obs_size=17, obs_fn=_common.obs_planar_z,
    reset_obs=_common.reset_obs_planar, reward_fn=reward, done_fn=done,
    behavior_ppo=_common.locomotion_ppo(discounting=0.99),
    description="Walker2d: forward velocity + 1 − 1e-3‖a‖², ends when it falls")
