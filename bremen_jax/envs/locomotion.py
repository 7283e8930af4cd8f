"""Built-in BREMEN tasks on Brax: halfcheetah, hopper, walker2d, ant (+ cheetah_run, pendulum).

Rewards and terminations are the ORIGINAL BREMEN ones (reference §6, ``envs/gym/*.py`` of the
original), written twice:

* on observations (``*_reward``/``*_done``: ``reward_fn``/``done_fn`` of the Task, used for imagined
  rollouts), and
* on the physical state before/after the step (``_step_*``: what the real :class:`TaskEnv` reports),
  so that tests can check that the two agree on real transitions.

Observation layouts follow BREMEN §7, on Brax's joint order:

===============  =====  ===========================================================================
task             o / a  observation
===============  =====  ===========================================================================
halfcheetah      17/6   q[1:] (rootz, rooty, 6 joints) + qd (9); obs[8] = root x-velocity
hopper           11/3   [torso z, q[2:]] + qd (6); obs[0] = z, obs[1] = torso angle, obs[5] = x-vel
walker2d         17/6   [torso z, q[2:]] + qd (9); obs[0] = z, obs[1] = torso angle, obs[8] = x-vel
ant              27/8   q[2:] (z, quaternion, 8 joints) + qd (14); obs[0] = z, obs[13] = x-vel
inverted_pend.   4/1    q (cart x, pole angle) + qd
===============  =====  ===========================================================================

Hopper/walker2d use Brax's z handling (``position.at[1].set(x.pos[0, 2])``: Brax's XMLs move the
root joints to the torso, so q[1] is a displacement and the height comes from the torso frame),
which equals Gym's ``qpos[1]`` with ``ref=1.25``. Velocities are NOT clipped (Brax's own
hopper/walker observations clip ``qd`` to ±10; BREMEN does not), so the task computes its own
observation from the pipeline state.

Control timestep (sys timestep × frame skip), checked against BREMEN §7:

* halfcheetah: generalized/mjx 0.01 × 5 = 0.05 (= original); spring/positional 0.003125 × 16 =
  0.05, but Brax changes the gears there to (120, 90, 60, 120, 100, 100) (original: 120, 90, 60,
  120, 60, 30).
* hopper, walker2d: 0.002 × 4 = 0.008 on every backend (= original).
* ant: generalized/mjx 0.01 × 5 = 0.05 (= original); spring/positional 0.005 × 10 = 0.05; positional
  uses gear 200 instead of 150.
* inverted_pendulum (not a BREMEN env): generalized 0.02 × 2 = 0.04, spring/positional
  0.005 × 4 = 0.02.

Reset distributions (Brax's ``reset``): halfcheetah and ant add U(±0.1) to ``init_q`` and
0.1·N(0, 1) to zero velocities, hopper/walker2d add U(±0.005) to both, as in BREMEN §7.
Differences: Brax's ant ``init_q`` (custom ``init_qpos``) has the torso at z = 0.55 with bent legs
(ankles at ±1 rad), while Gym/BREMEN start at ``qpos0`` (z = 0.75, all joint angles 0). The physics
is Brax's, not MuJoCo 1.31, so returns are not directly comparable with the paper's numbers.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import brax.envs
import jax
import jax.numpy as jnp

from bremen_jax.envs.task import DEFAULT_EPISODE_LENGTH, Task, TaskEnv, register_task
from bremen_jax.types import PRNGKey


def _ctrl_sq(action: jax.Array) -> jax.Array:
    """``[..., a] -> [...]``: ‖clip(a, -1, 1)‖²."""
    return jnp.sum(jnp.square(jnp.clip(action, -1.0, 1.0)), axis=-1)


def _never(next_obs: jax.Array) -> jax.Array:
    return jnp.zeros(next_obs.shape[:-1], jnp.float32)


# ------------------------------------------------------------------------------------------------
# Observation-space reward / termination (reference §6).
# Shapes: obs, next_obs [..., o]; action [..., a].

def halfcheetah_reward(obs, action, next_obs):
    """r = s_t[8] − 0.1‖a‖² with the PRE-step root x-velocity (§6)."""
    del next_obs
    return (obs[..., 8] - 0.1 * _ctrl_sq(action)).astype(jnp.float32)


def cheetah_run_reward(obs, action, next_obs):
    """r = clip(s_t[8] / 10, 0, 1) (§6, CheetahRun; no control cost)."""
    del action, next_obs
    return jnp.clip(obs[..., 8] / 10.0, 0.0, 1.0).astype(jnp.float32)


def ant_reward(obs, action, next_obs):
    """r = s_t[13] − 0.1‖a‖² − 3(s_t[0] − 0.57)² + 1, pre-step torso x-velocity and height (§6)."""
    del next_obs
    return (obs[..., 13] - 0.1 * _ctrl_sq(action) - 3.0 * jnp.square(obs[..., 0] - 0.57)
            + 1.0).astype(jnp.float32)


def hopper_reward(obs, action, next_obs):
    """r = s'[5] − 1e-3‖a‖² + 1 (post-step x-velocity, §6)."""
    del obs
    return (next_obs[..., 5] - 1e-3 * _ctrl_sq(action) + 1.0).astype(jnp.float32)


def walker2d_reward(obs, action, next_obs):
    """r = s'[8] − 1e-3‖a‖² + 1 (post-step x-velocity, §6)."""
    del obs
    return (next_obs[..., 8] - 1e-3 * _ctrl_sq(action) + 1.0).astype(jnp.float32)


def inverted_pendulum_reward(obs, action, next_obs):
    """r = 1 per step (Brax's inverted_pendulum)."""
    del action, next_obs
    return jnp.ones(obs.shape[:-1], jnp.float32)


halfcheetah_done = _never
ant_done = _never


def hopper_done(next_obs):
    """Done unless (all finite ∧ |s'[1:]| < 100 ∧ s'[0] > 0.7 ∧ |s'[1]| < 0.2) (§6)."""
    alive = (jnp.all(jnp.isfinite(next_obs), axis=-1)
             & jnp.all(jnp.abs(next_obs[..., 1:]) < 100.0, axis=-1)
             & (next_obs[..., 0] > 0.7) & (jnp.abs(next_obs[..., 1]) < 0.2))
    return jnp.logical_not(alive).astype(jnp.float32)


def walker2d_done(next_obs):
    """Done unless (0.8 < s'[0] < 2.0 ∧ −1 < s'[1] < 1) (§6)."""
    z, angle = next_obs[..., 0], next_obs[..., 1]
    alive = (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)
    return jnp.logical_not(alive).astype(jnp.float32)


def inverted_pendulum_done(next_obs):
    """Done when |pole angle| = |s'[1]| > 0.2 or any entry is non-finite."""
    bad = (jnp.abs(next_obs[..., 1]) > 0.2) | jnp.any(~jnp.isfinite(next_obs), axis=-1)
    return bad.astype(jnp.float32)


# ------------------------------------------------------------------------------------------------
# Observations from the pipeline state (Brax joint order, velocities unclipped).

def _obs_skip1(ps) -> jax.Array:
    return jnp.concatenate([ps.q[1:], ps.qd])


def _obs_planar_z(ps) -> jax.Array:
    return jnp.concatenate([ps.x.pos[0, 2:3], ps.q[2:], ps.qd])


def _obs_skip2(ps) -> jax.Array:
    return jnp.concatenate([ps.q[2:], ps.qd])


def _obs_full(ps) -> jax.Array:
    return jnp.concatenate([ps.q, ps.qd])


# ------------------------------------------------------------------------------------------------
# The same rewards / terminations from the physical state (what the real TaskEnv reports).
# Signature: (ps0, obs0, clipped action, ps1, obs1); only the pipeline states are read.

def _step_halfcheetah(ps0, obs0, a, ps1, obs1):
    return ps0.qd[0] - 0.1 * jnp.sum(jnp.square(a))


def _step_cheetah_run(ps0, obs0, a, ps1, obs1):
    return jnp.clip(ps0.qd[0] / 10.0, 0.0, 1.0)


def _step_ant(ps0, obs0, a, ps1, obs1):
    return ps0.qd[0] - 0.1 * jnp.sum(jnp.square(a)) - 3.0 * jnp.square(ps0.q[2] - 0.57) + 1.0


def _step_planar(ps0, obs0, a, ps1, obs1):  # hopper, walker2d
    return ps1.qd[0] - 1e-3 * jnp.sum(jnp.square(a)) + 1.0


def _step_one(ps0, obs0, a, ps1, obs1):
    return jnp.ones((), jnp.float32)


def _step_never(ps1, obs1):
    return jnp.zeros((), jnp.float32)


def _step_hopper_done(ps1, obs1):
    z, angle = ps1.x.pos[0, 2], ps1.q[2]
    rest = jnp.concatenate([ps1.q[2:], ps1.qd])
    alive = (jnp.isfinite(z) & jnp.all(jnp.isfinite(rest)) & jnp.all(jnp.abs(rest) < 100.0)
             & (z > 0.7) & (jnp.abs(angle) < 0.2))
    return jnp.where(alive, 0.0, 1.0)


def _step_walker2d_done(ps1, obs1):
    z, angle = ps1.x.pos[0, 2], ps1.q[2]
    alive = (z > 0.8) & (z < 2.0) & (angle > -1.0) & (angle < 1.0)
    return jnp.where(alive, 0.0, 1.0)


def _step_pendulum_done(ps1, obs1):
    finite = jnp.all(jnp.isfinite(ps1.q)) & jnp.all(jnp.isfinite(ps1.qd))
    return jnp.where((jnp.abs(ps1.q[1]) > 0.2) | ~finite, 1.0, 0.0)


# ------------------------------------------------------------------------------------------------
# Reset-observation samplers: the very same draws as the Brax env's ``reset`` (same key splitting),
# without running the physics pipeline's init (cheap inside imagined rollouts).

def _reset_q_qd(env, key: PRNGKey, noise: float, vel_gaussian: bool):
    _, key_q, key_qd = jax.random.split(key, 3)
    q = env.sys.init_q + jax.random.uniform(key_q, (env.sys.q_size(),), minval=-noise, maxval=noise)
    if vel_gaussian:
        qd = noise * jax.random.normal(key_qd, (env.sys.qd_size(),))
    else:
        qd = jax.random.uniform(key_qd, (env.sys.qd_size(),), minval=-noise, maxval=noise)
    return q, qd


def _reset_obs_skip(env, key, skip: int):  # halfcheetah (skip 1), ant (skip 2)
    q, qd = _reset_q_qd(env, key, env._reset_noise_scale, vel_gaussian=True)
    return jnp.concatenate([q[skip:], qd])


def _reset_obs_planar(env, key):  # hopper, walker2d: torso z = rest height + rootz displacement
    q, qd = _reset_q_qd(env, key, env._reset_noise_scale, vel_gaussian=False)
    z = env.sys.link.transform.pos[0, 2] + q[1]
    return jnp.concatenate([z[None], q[2:], qd])


def _reset_obs_pendulum(env, key):
    q, qd = _reset_q_qd(env, key, 0.01, vel_gaussian=False)
    return jnp.concatenate([q, qd])


@dataclasses.dataclass(frozen=True)
class _Spec:
    brax_name: str
    obs_size: int
    obs_fn: Callable
    step_reward: Callable
    step_done: Callable
    reward_fn: Callable
    done_fn: Callable
    reset_obs: Callable  # (brax env, key) -> obs


BUILTIN_SPECS: dict[str, _Spec] = {
    "halfcheetah": _Spec("halfcheetah", 17, _obs_skip1, _step_halfcheetah, _step_never,
                         halfcheetah_reward, halfcheetah_done,
                         functools.partial(_reset_obs_skip, skip=1)),
    "cheetah_run": _Spec("halfcheetah", 17, _obs_skip1, _step_cheetah_run, _step_never,
                         cheetah_run_reward, halfcheetah_done,
                         functools.partial(_reset_obs_skip, skip=1)),
    "hopper": _Spec("hopper", 11, _obs_planar_z, _step_planar, _step_hopper_done,
                    hopper_reward, hopper_done, _reset_obs_planar),
    "walker2d": _Spec("walker2d", 17, _obs_planar_z, _step_planar, _step_walker2d_done,
                      walker2d_reward, walker2d_done, _reset_obs_planar),
    "ant": _Spec("ant", 27, _obs_skip2, _step_ant, _step_never, ant_reward, ant_done,
                 functools.partial(_reset_obs_skip, skip=2)),
    "inverted_pendulum": _Spec("inverted_pendulum", 4, _obs_full, _step_one, _step_pendulum_done,
                               inverted_pendulum_reward, inverted_pendulum_done,
                               _reset_obs_pendulum),
}


def make_builtin_task(name: str, backend: str = "generalized", **env_kwargs) -> Task:
    """Builds built-in task ``name`` (a key of :data:`BUILTIN_SPECS`) on a Brax backend.

    ``env_kwargs`` go to the Brax env constructor (e.g. ``reset_noise_scale``). Episode length 1000.
    """
    if name not in BUILTIN_SPECS:
        raise ValueError(
            f"unknown built-in task {name!r}; valid: {', '.join(sorted(BUILTIN_SPECS))}")
    spec = BUILTIN_SPECS[name]
    env = brax.envs.get_environment(spec.brax_name, backend=backend, **env_kwargs)
    obs_fn = spec.obs_fn
    task_env = TaskEnv(env, lambda native: obs_fn(native.pipeline_state), spec.step_reward,
                       spec.step_done)
    return Task(name=name, backend=backend, env=task_env, reward_fn=spec.reward_fn,
                done_fn=spec.done_fn, episode_length=DEFAULT_EPISODE_LENGTH,
                obs_size=spec.obs_size, action_size=int(env.action_size),
                reset_obs_fn=functools.partial(spec.reset_obs, env))


def register_builtin_tasks(overwrite: bool = True) -> None:
    """(Re-)registers every built-in task under its name."""
    for name in BUILTIN_SPECS:
        register_task(name, functools.partial(make_builtin_task, name), overwrite=overwrite)


register_builtin_tasks()
