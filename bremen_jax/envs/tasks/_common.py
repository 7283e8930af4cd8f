"""Pieces shared by the built-in task specs: control cost, observations, reset samplers, PPO settings.

Observations are computed from the Brax pipeline state (Brax joint order, velocities NOT clipped:
Brax's own hopper/walker observations clip ``qd`` to ±10, BREMEN does not). Reset samplers draw the
very same sample as the Brax env's ``reset`` (same key splitting) without running the physics
pipeline's init.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from bremen_jax.types import PRNGKey


def ctrl_sq(action: jax.Array) -> jax.Array:
    """``[..., a] -> [...]``: ‖clip(a, -1, 1)‖²."""
    return jnp.sum(jnp.square(jnp.clip(action, -1.0, 1.0)), axis=-1)


def never_done(next_obs: jax.Array) -> jax.Array:
    """``[..., o] -> [...]`` zeros: the task never terminates (halfcheetah, ant)."""
    return jnp.zeros(next_obs.shape[:-1], jnp.float32)


# ------------------------------------------------------------------------------------------------
# Observations from the pipeline state: ``ps -> obs[o]``.

def obs_skip1(ps) -> jax.Array:
    """``[q[1:], qd]`` (halfcheetah: rootz, rooty, joints; rootx dropped)."""
    return jnp.concatenate([ps.q[1:], ps.qd])


def obs_planar_z(ps) -> jax.Array:
    """``[torso z, q[2:], qd]`` (hopper, walker2d).

    Brax's XMLs move the root joints to the torso, so ``q[1]`` is a displacement and the height
    comes from the torso frame (Brax's ``position.at[1].set(x.pos[0, 2])``); this equals Gym's
    ``qpos[1]`` with ``ref=1.25``.
    """
    return jnp.concatenate([ps.x.pos[0, 2:3], ps.q[2:], ps.qd])


def obs_skip2(ps) -> jax.Array:
    """``[q[2:], qd]`` (ant: z, quaternion, joints; x, y dropped)."""
    return jnp.concatenate([ps.q[2:], ps.qd])


def obs_full(ps) -> jax.Array:
    """``[q, qd]`` (inverted_pendulum)."""
    return jnp.concatenate([ps.q, ps.qd])


# ------------------------------------------------------------------------------------------------
# Reset-observation samplers: ``(brax env, key) -> obs[o]``.

def _reset_q_qd(env, key: PRNGKey, noise: float, vel_gaussian: bool):
    _, key_q, key_qd = jax.random.split(key, 3)
    q = env.sys.init_q + jax.random.uniform(key_q, (env.sys.q_size(),), minval=-noise, maxval=noise)
    if vel_gaussian:
        qd = noise * jax.random.normal(key_qd, (env.sys.qd_size(),))
    else:
        qd = jax.random.uniform(key_qd, (env.sys.qd_size(),), minval=-noise, maxval=noise)
    return q, qd


def reset_obs_skip(env, key: PRNGKey, skip: int) -> jax.Array:
    """halfcheetah (skip 1), ant (skip 2): U(±noise) on ``init_q``, noise·N(0, 1) velocities."""
    q, qd = _reset_q_qd(env, key, env._reset_noise_scale, vel_gaussian=True)
    return jnp.concatenate([q[skip:], qd])


def reset_obs_planar(env, key: PRNGKey) -> jax.Array:
    """hopper, walker2d: U(±noise) on both; torso z = rest height + rootz displacement."""
    q, qd = _reset_q_qd(env, key, env._reset_noise_scale, vel_gaussian=False)
    z = env.sys.link.transform.pos[0, 2] + q[1]
    return jnp.concatenate([z[None], q[2:], qd])


def reset_obs_pendulum(env, key: PRNGKey) -> jax.Array:
    """inverted_pendulum: U(±0.01) on both (Brax's fixed noise)."""
    q, qd = _reset_q_qd(env, key, 0.01, vel_gaussian=False)
    return jnp.concatenate([q, qd])


# ------------------------------------------------------------------------------------------------
# Behaviour-policy PPO settings: Brax's published ones (brax training notebook,
# google/brax notebooks/training.ipynb: reward_scaling, unroll_length, num_updates_per_batch,
# discounting, learning_rate, entropy_cost). The notebook trains hopper/walker2d with SAC; here
# they use PPO with the locomotion settings (discount 0.99). The env counts common to every task
# are ``datasets.behavior_training.PPO_COMMON``.

def locomotion_ppo(discounting: float, reward_scaling: float = 1.0) -> dict:
    """The notebook's locomotion PPO settings with this task's discount and reward scale."""
    return dict(reward_scaling=reward_scaling, unroll_length=20, num_updates_per_batch=8,
                discounting=discounting, learning_rate=3e-4, entropy_cost=1e-3)


def balance_ppo(reward_scaling: float = 10.0, **extra) -> dict:
    """The notebook's inverted_pendulum / ant PPO settings (short unrolls, discount 0.97)."""
    return dict(reward_scaling=reward_scaling, unroll_length=5, num_updates_per_batch=4,
                discounting=0.97, learning_rate=3e-4, entropy_cost=1e-2, **extra)
