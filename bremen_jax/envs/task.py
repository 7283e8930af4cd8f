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

The registry maps names to factories: :func:`make_task`, :func:`register_task`, :func:`list_tasks`.
The built-in BREMEN tasks are registered by :mod:`bremen_jax.envs.locomotion` (imported by the
package).
Arbitrary user envs become tasks with :func:`make_custom_task`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional

import brax.envs
import jax
import jax.numpy as jnp
from brax.envs.base import State

from bremen_jax.types import PRNGKey

VALID_BACKENDS = ("generalized", "positional", "spring", "mjx")
DEFAULT_EPISODE_LENGTH = 1000  # reference §7: every BREMEN env has 1000-step episodes.

# Names of the extra entries the TaskEnv keeps in ``State.metrics`` / ``State.info``.
NATIVE_REWARD = "native_reward"
NATIVE_DONE = "native_done"
NATIVE_OBS = "native_obs"

# (native State) -> obs[o]
ObsFn = Callable[[State], jax.Array]
# (pipeline_state_0, obs_0, clipped_action, pipeline_state_1, obs_1) -> scalar reward
StepRewardFn = Callable[[Any, jax.Array, jax.Array, Any, jax.Array], jax.Array]
# (pipeline_state_1, obs_1) -> scalar termination in {0., 1.}
StepDoneFn = Callable[[Any, jax.Array], jax.Array]


def _f32(x) -> jax.Array:
    return jnp.asarray(x, dtype=jnp.float32)


class TaskEnv(brax.envs.Wrapper):
    """Wraps a Brax env so that its State carries the task's observation, reward and termination.

    ``step`` clips the action to ``[-1, 1]`` (what BREMEN feeds the simulator and the reward),
    steps the wrapped env, and then computes

    * ``obs = obs_fn(native_state)``,
    * ``reward = step_reward_fn(ps0, obs0, action, ps1, obs1)``,
    * ``done = step_done_fn(ps1, obs1)``,

    where ``ps0``/``ps1`` are the pipeline states before/after the step. The built-in tasks
    compute reward and termination from the physical state (``q``, ``qd``, ``x``), independently
    of the observation-space ``reward_fn``/``done_fn`` used for imagined rollouts, so tests can
    check that the two agree.

    The wrapped env sees exactly the State it produced itself: its own observation is kept in
    ``info['native_obs']`` and its own reward/done in ``metrics['native_reward']``/
    ``['native_done']``.
    """

    def __init__(self, env: brax.envs.Env, obs_fn: ObsFn, step_reward_fn: StepRewardFn,
                 step_done_fn: StepDoneFn):
        super().__init__(env)
        self._obs_fn = obs_fn
        self._step_reward_fn = step_reward_fn
        self._step_done_fn = step_done_fn

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
        reward = self._step_reward_fn(state.pipeline_state, state.obs, action,
                                      native.pipeline_state, obs)
        done = self._step_done_fn(native.pipeline_state, obs)
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
            clips the action to ``[-1, 1]`` itself.
        done_fn: ``(next_obs[..., o]) -> [...]`` float32 in ``{0., 1.}``; pure.
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
    reward_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
    done_fn: Callable[[jax.Array], jax.Array]
    episode_length: int
    obs_size: int
    action_size: int
    reset_obs_fn: Optional[Callable[[PRNGKey], jax.Array]] = None

    def reset(self, key: PRNGKey) -> State:
        """One env's initial State, freshly sampled from the reset distribution (vmap for many)."""
        return self.env.reset(key)

    def reset_obs(self, key: PRNGKey) -> jax.Array:
        """``[obs_size]`` float32 observation from the reset distribution (rollout starts)."""
        if self.reset_obs_fn is not None:
            return _f32(self.reset_obs_fn(key))
        return self.env.reset(key).obs


TaskFactory = Callable[..., Task]
_REGISTRY: dict[str, TaskFactory] = {}


def _check_positive_int(value, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{field} must be a positive int, got {value!r}")
    return value


def register_task(name: str, factory: TaskFactory, *, overwrite: bool = False) -> None:
    """Registers ``factory(backend=..., **env_kwargs) -> Task`` under ``name``.

    Raises:
        ValueError: empty/non-str name, non-callable factory, or ``name`` already registered and
            ``overwrite`` is False.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"task name must be a non-empty str, got {name!r}")
    if not callable(factory):
        raise ValueError(
            f"factory for task {name!r} must be callable, got {type(factory).__name__}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"task {name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[name] = factory


def list_tasks() -> list[str]:
    """Sorted names of the registered tasks."""
    return sorted(_REGISTRY)


def make_task(name: str, backend: str = "generalized", episode_length: int | None = None,
              **env_kwargs) -> Task:
    """Builds a registered task.

    Args:
        name: one of :func:`list_tasks`.
        backend: Brax backend: ``generalized`` (default), ``positional``, ``spring`` or ``mjx``.
        episode_length: time limit; ``None`` keeps the factory's default (1000 for the built-ins).
        **env_kwargs: forwarded to the task factory (for the built-ins: to the Brax env constructor,
            e.g. ``reset_noise_scale``).

    Raises:
        ValueError: unknown name or backend (the message lists the valid ones), bad episode_length.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(list_tasks())}")
    if backend not in VALID_BACKENDS:
        raise ValueError(
            f"unknown backend {backend!r}; valid backends: {', '.join(VALID_BACKENDS)}")
    task = _REGISTRY[name](backend=backend, **env_kwargs)
    if not isinstance(task, Task):
        raise ValueError(f"factory of task {name!r} returned {type(task).__name__}, expected Task")
    if episode_length is not None:
        task = dataclasses.replace(
            task, episode_length=_check_positive_int(episode_length, "episode_length"))
    return task


def make_custom_task(name: str, env: brax.envs.Env, reward_fn: Callable, done_fn: Callable,
                     episode_length: int, obs_fn: Callable | None = None) -> Task:
    """Turns any user Brax env into a Task scored by the given observation-space functions.

    Here the TaskEnv's reward/termination *are* ``reward_fn(obs, clip(a), next_obs)`` and
    ``done_fn(next_obs)`` (no physical-state versions exist for an arbitrary env).

    Args:
        name: task name (used only for display; register a factory with :func:`register_task`).
        env: a ``brax.envs.Env`` with flat array observations.
        reward_fn: ``(obs[..., o], action[..., a], next_obs[..., o]) -> [...]``.
        done_fn: ``(next_obs[..., o]) -> [...]`` in {0, 1}.
        episode_length: time limit of one episode.
        obs_fn: optional ``pipeline_state -> obs[o]``; default: the env's own observation.
    """
    if not isinstance(env, brax.envs.Env):
        raise ValueError(f"env must be a brax.envs.Env, got {type(env).__name__}")
    for field, fn in (("reward_fn", reward_fn), ("done_fn", done_fn)):
        if not callable(fn):
            raise ValueError(f"{field} must be callable, got {type(fn).__name__}")
    if obs_fn is not None and not callable(obs_fn):
        raise ValueError(f"obs_fn must be callable or None, got {type(obs_fn).__name__}")
    _check_positive_int(episode_length, "episode_length")

    def task_obs(native: State) -> jax.Array:
        return native.obs if obs_fn is None else obs_fn(native.pipeline_state)

    def step_reward(ps0, obs0, action, ps1, obs1):
        del ps0, ps1
        return reward_fn(obs0, action, obs1)

    def step_done(ps1, obs1):
        del ps1
        return done_fn(obs1)

    task_env = TaskEnv(env, task_obs, step_reward, step_done)
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
