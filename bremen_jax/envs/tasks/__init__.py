"""The built-in tasks: one module per task, each defining one ``SPEC`` (a :class:`TaskSpec`).

How to add a task (one new file, nothing else to edit):

1. Create ``bremen_jax/envs/tasks/<name>.py`` (copy ``hopper.py``). Define ``reward(obs, action,
   next_obs)`` and ``done(next_obs)`` on observations (``[..., o]``, batched, float32; clip the
   action yourself, e.g. with ``_common.ctrl_sq``): they score both real and imagined steps.
2. Set ``SPEC = TaskSpec(name=..., brax_env=..., obs_size=..., obs_fn=..., reset_obs=...,
   reward_fn=reward, done_fn=done)``; reuse ``_common``'s observation functions and reset
   samplers, and fill ``default_backend``, ``unstable_backends`` and ``behavior_ppo`` if needed.
3. ``import bremen_jax.envs`` registers it; ``bremen tasks`` lists it; ``make_task("<name>")``
   builds it. Add its row to the observation-size tables of ``tests/test_envs.py``.
4. For a non-Brax or one-off env, skip the spec: ``register_task(name, factory)`` with a factory
   that returns ``make_custom_task(name, env, reward_fn, done_fn, episode_length)``.
"""

from __future__ import annotations

import importlib
import pkgutil

from bremen_jax.envs.spec import TaskSpec


def builtin_specs() -> list[TaskSpec]:
    """The ``SPEC`` of every public module of this package, sorted by module name."""
    specs = []
    for module_info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module_info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        spec = getattr(module, "SPEC", None)
        if not isinstance(spec, TaskSpec):
            raise TypeError(f"{module.__name__} must define SPEC = TaskSpec(...)")
        specs.append(spec)
    return specs
