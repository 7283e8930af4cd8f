"""ant (BREMEN §6, §7): run forward at a healthy height; never terminates.

obs (27) = ``q[2:]`` (z, quaternion, 8 joints) + ``qd`` (14); ``obs[0]`` = z, ``obs[13]`` =
x-velocity. a = 8. Control dt: generalized/mjx 0.01 × 5 = 0.05 (= original); spring/positional
0.005 × 10 = 0.05; positional uses gear 200 instead of 150. Reset: U(±0.1) on ``init_q``,
0.1·N(0, 1) velocities; Brax's ``init_q`` has the torso at z = 0.55 with bent legs (ankles at
±1 rad), while Gym/BREMEN start at ``qpos0`` (z = 0.75, all joint angles 0).

Backend mjx: Brax's generalized ant blows up to NaN under random actions (measured: 64 envs x 1000
uniform-random steps, seed 0), so the shipped config, behaviour policies and datasets use mjx.
"""

import functools

import jax.numpy as jnp

from bremen_jax.envs.spec import TaskSpec
from bremen_jax.envs.tasks import _common


def reward(obs, action, next_obs):
    """r = s_t[13] − 0.1‖a‖² − 3(s_t[0] − 0.57)² + 1, pre-step torso x-velocity and height (§6)."""
    del next_obs
    return (obs[..., 13] - 0.1 * _common.ctrl_sq(action) - 3.0 * jnp.square(obs[..., 0] - 0.57)
            + 1.0).astype(jnp.float32)


done = _common.never_done

SPEC = TaskSpec(
    name="ant", brax_env="ant", obs_size=27, obs_fn=_common.obs_skip2,
    reset_obs=functools.partial(_common.reset_obs_skip, skip=2), reward_fn=reward, done_fn=done,
    default_backend="mjx",
    unstable_backends={"generalized": (
        "Brax's generalized ant blows up without BREMEN's (absent) termination: under random "
        "actions |obs| reaches the thousands and NaN within 400 steps, which poisons the dataset "
        "and the dynamics fit; use backend='mjx' (as the shipped 'ant' config does)")},
    # 128 envs: the 64-env default reached only a standing-still "expert" (860 vs 748 for the
    # initial policy's mean action) in 2M steps; 128 envs for 6M steps reached 1,294
    behavior_ppo=_common.balance_ppo(num_envs=128, batch_size=128),
    description="Ant: forward velocity − 0.1‖a‖² − 3(z − 0.57)² + 1, no termination")
