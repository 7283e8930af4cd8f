"""The task registry: names -> factories (and, for spec'd tasks, their :class:`TaskSpec`).

:func:`make_task` builds any registered task (and warns about unstable physics via
:func:`check_backend`); :func:`register_task` adds a user factory (e.g. one wrapping
:func:`~bremen_jax.envs.task.make_custom_task`); :func:`register_spec` adds a task described by a
:class:`~bremen_jax.envs.spec.TaskSpec` (what the built-ins do); :func:`task_info` describes one
without building it.
"""

from __future__ import annotations

import dataclasses
import sys
import warnings
from typing import Callable, Mapping, Optional

from bremen_jax.envs.spec import TaskSpec, UnstablePhysicsWarning
from bremen_jax.envs.task import VALID_BACKENDS, Task
from bremen_jax.types import check_positive_int

TaskFactory = Callable[..., Task]
_REGISTRY: dict[str, TaskFactory] = {}
_SPECS: dict[str, TaskSpec] = {}


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
    _SPECS.pop(name, None)


def is_builtin(name: str) -> bool:
    """Whether the task registered as ``name`` is this package's built-in one (its module in
    :mod:`bremen_jax.envs.tasks`, not re-registered by a user): its code is the package's, so a
    program built from it is determined by the config and may be stored on disk
    (:class:`bremen_jax.run.compile.Job` ``persist``)."""
    spec = _SPECS.get(name)
    return spec is not None and spec is getattr(
        sys.modules.get(f"bremen_jax.envs.tasks.{name}"), "SPEC", None)


def register_spec(spec: TaskSpec, *, overwrite: bool = False) -> None:
    """Registers the task described by ``spec`` under ``spec.name`` (errors as :func:`register_task`)."""
    if not isinstance(spec, TaskSpec):
        raise ValueError(f"expected a TaskSpec, got {type(spec).__name__}")
    register_task(spec.name, spec.make, overwrite=overwrite)
    _SPECS[spec.name] = spec


def list_tasks() -> list[str]:
    """Sorted names of the registered tasks."""
    return sorted(_REGISTRY)


def _check_name(name: str) -> None:
    if name not in _REGISTRY:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(list_tasks())} (a task "
                         f"registered by a config file needs that file: --config FILE, also with "
                         f"--resume)")


def get_spec(name: str) -> TaskSpec:
    """The :class:`TaskSpec` of registered task ``name``.

    Raises:
        ValueError: unknown task, or one registered with a bare factory (no spec).
    """
    _check_name(name)
    if name not in _SPECS:
        raise ValueError(f"task {name!r} was registered with a factory, not a TaskSpec")
    return _SPECS[name]


def task_specs() -> dict[str, TaskSpec]:
    """``{name: TaskSpec}`` of every task registered with a spec (the built-ins and users')."""
    return dict(_SPECS)


@dataclasses.dataclass(frozen=True)
class TaskInfo:
    """What is known about a task without building it (``None``: not known for a factory task)."""

    name: str
    brax_env: Optional[str]
    default_backend: Optional[str]
    episode_length: Optional[int]
    unstable_backends: Mapping[str, str]
    description: str


def task_info(name: str) -> TaskInfo:
    """Describes registered task ``name`` (obs/action sizes need the env: build it for those)."""
    _check_name(name)
    spec = _SPECS.get(name)
    if spec is None:
        return TaskInfo(name, None, None, None, {}, "user task (registered factory)")
    return TaskInfo(name, spec.brax_env, spec.default_backend, spec.episode_length,
                    dict(spec.unstable_backends), spec.description)


def check_backend(name: str, backend: str) -> None:
    """Validates ``backend``; warns if task ``name``'s spec lists it as unstable.

    Raises:
        ValueError: unknown backend (the message lists the valid ones).

    Warns:
        UnstablePhysicsWarning: with the spec's reason and what to use instead.
    """
    if backend not in VALID_BACKENDS:
        raise ValueError(
            f"unknown backend {backend!r}; valid backends: {', '.join(VALID_BACKENDS)}")
    spec = _SPECS.get(name)
    reason = spec.unstable_backends.get(backend) if spec is not None else None
    if reason:
        warnings.warn(f"task={name!r} with backend={backend!r}: {reason}", UnstablePhysicsWarning,
                      stacklevel=3)


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

    Warns:
        UnstablePhysicsWarning: ``backend`` is one of the task spec's ``unstable_backends``.
    """
    _check_name(name)
    check_backend(name, backend)
    task = _REGISTRY[name](backend=backend, **env_kwargs)
    if not isinstance(task, Task):
        raise ValueError(f"factory of task {name!r} returned {type(task).__name__}, expected Task")
    if episode_length is not None:
        task = dataclasses.replace(
            task, episode_length=check_positive_int(episode_length, "episode_length"))
    return task
