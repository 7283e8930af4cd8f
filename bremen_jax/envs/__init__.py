"""BREMEN tasks on Brax: :class:`Task` (env + obs-space reward/termination + reset sampler).

Importing this package registers the built-in tasks (halfcheetah, hopper, walker2d, ant,
cheetah_run, inverted_pendulum); see :mod:`bremen_jax.envs.locomotion`.
"""

from bremen_jax.envs.task import (
    VALID_BACKENDS,
    Task,
    TaskEnv,
    list_tasks,
    make_custom_task,
    make_task,
    register_task,
)
from bremen_jax.envs import locomotion  # noqa: F401  (registers the built-in tasks)

__all__ = [
    "VALID_BACKENDS",
    "Task",
    "TaskEnv",
    "list_tasks",
    "make_custom_task",
    "make_task",
    "register_task",
]
