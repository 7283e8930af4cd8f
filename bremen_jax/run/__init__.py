"""Drivers and the run directory: everything host-side around the pure schedule.

* :func:`run_host` -- the host driver (a Python loop over compiled steps; progress, checkpoints);
* :func:`run_compiled` -- the compiled driver (all remaining deployments as one XLA program);
* :func:`run_offline` -- offline BREMEN through the host driver (one deployment on a dataset);
* :mod:`~bremen_jax.run.workdir` (config.json, logs, resume), :mod:`~bremen_jax.run.checkpoint`
  (orbax), :mod:`~bremen_jax.run.logs` (CSV/JSONL/TensorBoard), :mod:`~bremen_jax.run.compile`
  (one compile cache, the persistent cache), :mod:`~bremen_jax.run.display` (rich).
"""

import importlib

# Loaded on first use (PEP 562): `bremen plot` and the log readers import
# bremen_jax.run.plots / .logs without paying for JAX and Brax.
_LAZY = {"run_compiled": "compiled", "run_host": "host", "run_offline": "offline",
         **{name: "workdir" for name in ("Interrupted", "RunExistsError", "RunResult",
                                         "check_new_workdir", "load_run_config",
                                         "load_run_info")}}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f"bremen_jax.run.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'bremen_jax.run' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
