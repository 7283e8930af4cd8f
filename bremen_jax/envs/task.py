"""Task = a Brax env with observation-space reward/termination functions and a reset sampler.

BREMEN scores imagined transitions with *known* analytic reward and termination functions of the
observation (reference §5.1, §6), so the real environment and the learned model must agree on them.
A :class:`Task` bundles

* ``env``: a :class:`TaskEnv` (a ``brax.envs.Wrapper``) whose ``State.obs`` is the task's
  observation, ``State.reward``/``State.done`` the task reward/termination, and
  ``State.metrics['native_reward']``/``['native_done']`` what the wrapped Brax env itself reports;
* ``reward_fn(obs, action, next_obs)`` and ``done_fn(next_obs)``: pure, batched over any leading
  shape;
* the reset distribution (``reset``/``reset_obs``).

The real env's reward and termination ARE ``reward_fn``/``done_fn`` applied to the observations
before/after the step, so each task defines them once. A user task may have none
(:func:`make_custom_task` without ``reward_fn``/``done_fn``): its reward and termination are then the
wrapped env's own, ``Task.analytic`` is False, and imagined rollouts score steps with learned heads
of the dynamics ensemble (``dynamics.reward_model``). Built-in tasks are described by a
:class:`~bremen_jax.envs.spec.TaskSpec` (``bremen_jax/envs/tasks/<name>.py``); the registry
(:mod:`bremen_jax.envs.registry`) maps names to factories. Arbitrary user envs become tasks with
:func:`make_custom_task`.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import brax.envs
import jax
import jax.numpy as jnp
from brax.envs.base import State

from bremen_jax.config import BACKENDS as VALID_BACKENDS  # noqa: F401  (the one list; re-exported)
from bremen_jax.types import PRNGKey, check_positive_int

DEFAULT_EPISODE_LENGTH = 1000  # reference §7: every BREMEN env has 1000-step episodes.

# Names of the extra entries the TaskEnv keeps in ``State.metrics`` / ``State.info``.
NATIVE_REWARD = "native_reward"
NATIVE_DONE = "native_done"
NATIVE_OBS = "native_obs"

# (native State) -> obs[o]
ObsFn = Callable[[State], jax.Array]
# (obs[..., o], action[..., a], next_obs[..., o]) -> [...] float32 reward
RewardFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
# (next_obs[..., o]) -> [...] float32 termination in {0., 1.}
DoneFn = Callable[[jax.Array], jax.Array]


def _f32(x) -> jax.Array:
    return jnp.asarray(x, dtype=jnp.float32)


class TaskEnv(brax.envs.Wrapper):
    """Wraps a Brax env so that its State carries the task's observation, reward and termination.

    ``step`` clips the action to ``[-1, 1]`` (what BREMEN feeds the simulator and the reward),
    steps the wrapped env, and then computes

    * ``obs = obs_fn(native_state)``,
    * ``reward = reward_fn(obs0, action, obs1)``,
    * ``done = done_fn(obs1)``,

    where ``obs0``/``obs1`` are the task observations before/after the step: the very functions
    that score imagined rollouts, so the real env and the model agree by construction. With
    ``reward_fn``/``done_fn`` ``None`` (a task without analytic functions) the reward and
    termination are the wrapped env's own.

    The wrapped env sees exactly the State it produced itself: its own observation is kept in
    ``info['native_obs']`` and its own reward/done in ``metrics['native_reward']``/
    ``['native_done']``.
    """

    def __init__(self, env: brax.envs.Env, obs_fn: ObsFn, reward_fn: RewardFn | None = None,
                 done_fn: DoneFn | None = None):
        super().__init__(env)
        self._obs_fn = obs_fn
        self._reward_fn = reward_fn
        self._done_fn = done_fn

    def reset(self, rng: jax.Array) -> State:
        native = self.env.reset(rng)
        zero = jnp.zeros((), jnp.float32)
        metrics = dict(native.metrics)
        metrics[NATIVE_REWARD] = zero
        metrics[NATIVE_DONE] = _f32(native.done)
        info = dict(native.info)
        info[NATIVE_OBS] = native.obs
        return native.replace(obs=_f32(self._obs_fn(native)), reward=zero, done=zero,
                              metrics=metrics, info=info)

    def step(self, state: State, action: jax.Array) -> State:
        action = jnp.clip(action, -1.0, 1.0)
        metrics = {k: v for k, v in state.metrics.items() if k not in (NATIVE_REWARD, NATIVE_DONE)}
        info = {k: v for k, v in state.info.items() if k != NATIVE_OBS}
        native_in = state.replace(obs=state.info[NATIVE_OBS], reward=state.metrics[NATIVE_REWARD],
                                  done=state.metrics[NATIVE_DONE], metrics=metrics, info=info)
        native = self.env.step(native_in, action)
        obs = _f32(self._obs_fn(native))
        if self._reward_fn is None:  # no analytic functions: the wrapped env's own
            reward, done = native.reward, native.done
        else:
            reward, done = self._reward_fn(state.obs, action, obs), self._done_fn(obs)
        metrics = dict(native.metrics)
        metrics[NATIVE_REWARD] = _f32(native.reward)
        metrics[NATIVE_DONE] = _f32(native.done)
        info = dict(native.info)
        info[NATIVE_OBS] = native.obs
        return native.replace(obs=obs, reward=_f32(reward), done=_f32(done), metrics=metrics,
                              info=info)

    @property
    def observation_size(self) -> int:
        return int(jax.eval_shape(self.reset, jax.random.key(0)).obs.shape[-1])


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """A BREMEN task (hashable by identity, so it can be closed over by jitted factories).

    Attributes:
        name: registry name.
        backend: Brax physics backend (``"custom"`` for user envs that have none).
        env: a :class:`TaskEnv`; ``reset(key) -> State``, ``step(State, action[a]) -> State``.
        reward_fn: ``(obs[..., o], action[..., a], next_obs[..., o]) -> [...]`` float32; pure;
            clips the action to ``[-1, 1]`` itself. ``None``: no analytic form (see ``analytic``).
        done_fn: ``(next_obs[..., o]) -> [...]`` float32 in ``{0., 1.}``; pure; or ``None``.
        episode_length: time limit (steps) of one real episode.
        obs_size: ``o``.
        action_size: ``a``.
        reset_obs_fn: optional fast ``key -> obs[o]`` sampler with the same distribution as
            ``env.reset(key).obs`` (the built-in tasks draw the very same sample without running
            the physics pipeline's init); ``None`` falls back to ``env.reset(key).obs``.
    """

    name: str
    backend: str
    env: brax.envs.Env
    reward_fn: RewardFn | None
    done_fn: DoneFn | None
    episode_length: int
    obs_size: int
    action_size: int
    reset_obs_fn: Optional[Callable[[PRNGKey], jax.Array]] = None

    @property
    def analytic(self) -> bool:
        """Whether the task has analytic ``reward_fn``/``done_fn`` (else: learned heads score
        imagined steps, and the env's reward/termination are the wrapped env's own)."""
        return self.reward_fn is not None and self.done_fn is not None

    def reset(self, key: PRNGKey) -> State:
        """One env's initial State, freshly sampled from the reset distribution (vmap for many)."""
        return self.env.reset(key)

    def reset_obs(self, key: PRNGKey) -> jax.Array:
        """``[obs_size]`` float32 observation from the reset distribution (rollout starts)."""
        if self.reset_obs_fn is not None:
            return _f32(self.reset_obs_fn(key))
        return self.env.reset(key).obs


def make_custom_task(name: str, env: brax.envs.Env, reward_fn: Callable | None = None,
                     done_fn: Callable | None = None,
                     episode_length: int = DEFAULT_EPISODE_LENGTH,
                     obs_fn: Callable | None = None) -> Task:
    """Turns any user Brax env into a Task, with or without observation-space functions.

    With both functions the TaskEnv's reward/termination are ``reward_fn(obs, clip(a), next_obs)``
    and ``done_fn(next_obs)``, as for the built-in tasks. With neither (``make_custom_task(name,
    env, episode_length=200)``) they are the wrapped env's own (on the clipped action),
    ``Task.analytic`` is False and training learns them (``dynamics.reward_model``: learned
    reward and termination heads of the dynamics ensemble).

    Args:
        name: task name (used only for display; register a factory with :func:`register_task`).
        env: a ``brax.envs.Env`` with flat array observations.
        reward_fn: ``(obs[..., o], action[..., a], next_obs[..., o]) -> [...]``, or ``None``.
        done_fn: ``(next_obs[..., o]) -> [...]`` in {0, 1}, or ``None`` (both or neither).
        episode_length: time limit of one episode (default 1000).
        obs_fn: optional ``pipeline_state -> obs[o]``; default: the env's own observation.
    """
    if not isinstance(env, brax.envs.Env):
        raise ValueError(f"env must be a brax.envs.Env, got {type(env).__name__}")
    if (reward_fn is None) != (done_fn is None):
        given, missing = ("reward_fn", "done_fn") if done_fn is None else ("done_fn", "reward_fn")
        raise ValueError(f"custom task {name!r}: {given} given without {missing}; pass both "
                         f"(analytic) or neither (learned from the env's own reward and done)")
    for field, fn in (("reward_fn", reward_fn), ("done_fn", done_fn)):
        if fn is not None and not callable(fn):
            raise ValueError(f"{field} must be callable, got {type(fn).__name__}")
    if obs_fn is not None and not callable(obs_fn):
        raise ValueError(f"obs_fn must be callable or None, got {type(obs_fn).__name__}")
    check_positive_int(episode_length, "episode_length")

    def task_obs(native: State) -> jax.Array:
        return native.obs if obs_fn is None else obs_fn(native.pipeline_state)

    task_env = TaskEnv(env, task_obs, reward_fn, done_fn)
    obs_shape = jax.eval_shape(task_env.reset, jax.random.key(0)).obs.shape
    if len(obs_shape) != 1:
        raise ValueError(
            f"custom task {name!r}: observations must be flat [o] arrays, got {obs_shape}")
    try:
        backend = env.backend
    except AttributeError:  # e.g. brax's 'fast' env never sets a backend
        backend = "custom"
    return Task(name=name, backend=str(backend), env=task_env, reward_fn=reward_fn, done_fn=done_fn,
                episode_length=episode_length, obs_size=int(obs_shape[0]),
                action_size=int(env.action_size))
