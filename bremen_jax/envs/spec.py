"""TaskSpec: everything task-specific about a built-in task, in one frozen object.

One spec per task lives in ``bremen_jax/envs/tasks/<name>.py`` (as ``SPEC``); importing
:mod:`bremen_jax.envs` registers them all. A spec is static description (names, pure functions,
settings); :meth:`TaskSpec.make` turns it into a :class:`~bremen_jax.envs.task.Task` on a backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import types
from typing import Any, Callable, Mapping

import brax.envs
import jax

from bremen_jax.envs.task import DEFAULT_EPISODE_LENGTH, DoneFn, RewardFn, Task, TaskEnv
from bremen_jax.types import PRNGKey

class UnstablePhysicsWarning(UserWarning):
    """A task/backend pair whose real rollouts are known to reach NaN (``TaskSpec.unstable_backends``)."""


@contextlib.contextmanager
def mjx_on_local_device():
    """Within the block, MJX places a Brax system on this process's first device.

    ``mujoco.mjx.put_model`` defaults to ``jax.devices()[0]``, which in a multi-process run
    (``jax.distributed``) is a device of process 0: the other processes' systems would then live
    on a device they cannot address, and compiling a program that closes over them fails.
    """
    if jax.process_count() == 1:
        yield
        return
    from mujoco import mjx

    put_model = mjx.put_model
    mjx.put_model = functools.partial(put_model, device=jax.local_devices()[0])
    try:
        yield
    finally:
        mjx.put_model = put_model


@dataclasses.dataclass(frozen=True, eq=False)
class TaskSpec:
    """One built-in task (hashable by identity).

    Attributes:
        name: registry name.
        brax_env: name of the Brax env (``brax.envs.get_environment``) that simulates it.
        obs_size: ``o``.
        obs_fn: ``pipeline_state -> obs[o]``: the task's observation from the physical state.
        reset_obs: ``(brax env, key) -> obs[o]``: the same sample as ``env.reset(key)``'s
            observation, drawn without the pipeline's init (cheap inside imagined rollouts).
        reward_fn: ``(obs[..., o], action[..., a], next_obs[..., o]) -> [...]`` float32; pure;
            clips the action itself. Scores imagined AND real transitions.
        done_fn: ``(next_obs[..., o]) -> [...]`` float32 in ``{0., 1.}``; pure; same for both.
        default_backend: the backend the shipped config, behaviour policies and datasets use.
        unstable_backends: ``{backend: why and what to use instead}``; :func:`make_task` warns
            with :class:`UnstablePhysicsWarning` when one is chosen.
        behavior_ppo: this task's ``brax.training.agents.ppo.train`` settings for training its
            behaviour policies (on top of ``datasets.behavior_training.PPO_COMMON``).
        episode_length: default time limit of one real episode.
        description: one line for ``bremen tasks``.
    """

    name: str
    brax_env: str
    obs_size: int
    obs_fn: Callable[[Any], jax.Array]
    reset_obs: Callable[[brax.envs.Env, PRNGKey], jax.Array]
    reward_fn: RewardFn
    done_fn: DoneFn
    default_backend: str = "generalized"
    unstable_backends: Mapping[str, str] = dataclasses.field(default_factory=dict)
    behavior_ppo: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    episode_length: int = DEFAULT_EPISODE_LENGTH
    description: str = ""

    def __post_init__(self):
        # Read-only views, so a spec cannot be changed through its mappings.
        for field in ("unstable_backends", "behavior_ppo"):
            object.__setattr__(self, field, types.MappingProxyType(dict(getattr(self, field))))

    def make(self, backend: str = "generalized", **env_kwargs) -> Task:
        """The task on Brax ``backend``; ``env_kwargs`` go to the Brax env's constructor (e.g.
        ``reset_noise_scale``). Does not validate the backend (:func:`make_task` does)."""
        with mjx_on_local_device():
            env = brax.envs.get_environment(self.brax_env, backend=backend, **env_kwargs)
        obs_fn = self.obs_fn
        task_env = TaskEnv(env, lambda native: obs_fn(native.pipeline_state), self.reward_fn,
                           self.done_fn)
        return Task(name=self.name, backend=backend, env=task_env, reward_fn=self.reward_fn,
                    done_fn=self.done_fn, episode_length=self.episode_length,
                    obs_size=self.obs_size, action_size=int(env.action_size),
                    reset_obs_fn=functools.partial(self.reset_obs, env))
