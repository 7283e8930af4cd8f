"""halfcheetah (BREMEN §6, §7): run forward; never terminates.

obs (17) = ``q[1:]`` (rootz, rooty, 6 joints) + ``qd`` (9); ``obs[8]`` = root x-velocity.
a = 6. Control dt: generalized/mjx 0.01 × 5 = 0.05 (= original); spring/positional 0.003125 × 16 =
0.05, but Brax changes the gears there to (120, 90, 60, 120, 100, 100) (original: 120, 90, 60,
120, 60, 30). Reset: U(±0.1) on ``init_q``, 0.1·N(0, 1) velocities.
"""

import functools

import jax.numpy as jnp

from bremen_jax.envs.spec import TaskSpec
from bremen_jax.envs.tasks import _common


def reward(obs, action, next_obs):
    """r = s_t[8] − 0.1‖a‖² with the PRE-step root x-velocity (§6)."""
    del next_obs
    return (obs[..., 8] - 0.1 * _common.ctrl_sq(action)).astype(jnp.float32)


done = _common.never_done

SPEC = TaskSpec(
    name="halfcheetah", brax_env="halfcheetah", obs_size=17, obs_fn=_common.obs_skip1,
    reset_obs=functools.partial(_common.reset_obs_skip, skip=1), reward_fn=reward, done_fn=done,
    behavior_ppo=_common.locomotion_ppo(discounting=0.95),
    description="HalfCheetah: forward velocity − 0.1‖a‖², no termination")
