"""BREMEN tasks on Brax: :class:`Task` (env + obs-space reward/termination + reset sampler).

Importing this package registers the built-in tasks, one :class:`TaskSpec` per module of
:mod:`bremen_jax.envs.tasks` (halfcheetah, hopper, walker2d, ant, cheetah_run, inverted_pendulum).
"""

from bremen_jax.envs.registry import (
    TaskInfo,
    check_backend,
    get_spec,
    list_tasks,
    make_task,
    register_spec,
    register_task,
    task_info,
    task_specs,
)
from bremen_jax.envs.spec import TaskSpec, UnstablePhysicsWarning
from bremen_jax.envs.task import VALID_BACKENDS, Task, TaskEnv, make_custom_task
from bremen_jax.envs.tasks import builtin_specs


def register_builtin_tasks(overwrite: bool = True) -> None:
    """(Re-)registers every built-in task under its name."""
    for spec in builtin_specs():
        register_spec(spec, overwrite=overwrite)


register_builtin_tasks()

__all__ = [
    "VALID_BACKENDS",
    "Task",
    "TaskEnv",
    "TaskInfo",
    "TaskSpec",
    "UnstablePhysicsWarning",
    "check_backend",
    "get_spec",
    "list_tasks",
    "make_custom_task",
    "make_task",
    "register_builtin_tasks",
    "register_spec",
    "register_task",
    "task_info",
    "task_specs",
]
