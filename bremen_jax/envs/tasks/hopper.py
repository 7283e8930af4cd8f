"""hopper (BREMEN §6, §7): hop forward without falling.

obs (11) = [torso z, ``q[2:]``] + ``qd`` (6); ``obs[0]`` = z, ``obs[1]`` = torso angle, ``obs[5]``
= x-velocity. a = 3. Control dt 0.002 × 4 = 0.008 on every backend (= original). Reset:
U(±0.005) on positions and velocities.
"""

import jax.numpy as jnp

from bremen_jax.envs.spec import TaskSpec
from bremen_jax.envs.tasks import _common


def reward(obs, action, next_obs):
    """r = s'[5] − 1e-3‖a‖² + 1 (post-step x-velocity, §6)."""
    del obs
    return (next_obs[..., 5] - 1e-3 * _common.ctrl_sq(action) + 1.0).astype(jnp.float32)


def done(next_obs):
    """Done unless (all finite ∧ |s'[1:]| < 100 ∧ s'[0] > 0.7 ∧ |s'[1]| < 0.2) (§6)."""
    alive = (jnp.all(jnp.isfinite(next_obs), axis=-1)
             & jnp.all(jnp.abs(next_obs[..., 1:]) < 100.0, axis=-1)
             & (next_obs[..., 0] > 0.7) & (jnp.abs(next_obs[..., 1]) < 0.2))
    return jnp.logical_not(alive).astype(jnp.float32)


SPEC = TaskSpec(
    name="hopper", brax_env="hopper", obs_size=11, obs_fn=_common.obs_planar_z,
    reset_obs=_common.reset_obs_planar, reward_fn=reward, done_fn=done,
    behavior_ppo=_common.locomotion_ppo(discounting=0.99),
    description="Hopper: forward velocity + 1 − 1e-3‖a‖², ends when it falls")
