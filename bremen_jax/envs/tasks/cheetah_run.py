"""cheetah_run (BREMEN §6, CheetahRun): halfcheetah's body with a bounded speed reward.

Same observation, physics and reset as :mod:`~bremen_jax.envs.tasks.halfcheetah`.
"""

import functools

import jax.numpy as jnp

from bremen_jax.envs.spec import TaskSpec
from bremen_jax.envs.tasks import _common


def reward(obs, action, next_obs):
    """r = clip(s_t[8] / 10, 0, 1) (§6, CheetahRun; no control cost)."""
    del action, next_obs
    return jnp.clip(obs[..., 8] / 10.0, 0.0, 1.0).astype(jnp.float32)


done = _common.never_done

SPEC = TaskSpec(
    name="cheetah_run", brax_env="halfcheetah", obs_size=17, obs_fn=_common.obs_skip1,
    reset_obs=functools.partial(_common.reset_obs_skip, skip=1), reward_fn=reward, done_fn=done,
    behavior_ppo=_common.locomotion_ppo(discounting=0.95, reward_scaling=10.0),
    description="HalfCheetah body, reward clip(velocity / 10, 0, 1), no termination")
