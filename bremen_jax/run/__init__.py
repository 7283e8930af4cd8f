"""Drivers and the run directory: everything host-side around the pure schedule.

* :func:`run_host` -- the host driver (a Python loop over compiled steps; progress, checkpoints);
* :func:`run_compiled` -- the compiled driver (all remaining deployments as one XLA program);
* :func:`run_offline` -- offline BREMEN through the host driver (one deployment on a dataset);
* :mod:`~bremen_jax.run.workdir` (config.json, logs, resume), :mod:`~bremen_jax.run.checkpoint`
  (orbax), :mod:`~bremen_jax.run.logs` (CSV/JSONL/TensorBoard), :mod:`~bremen_jax.run.compile`
  (one compile cache, the persistent cache), :mod:`~bremen_jax.run.display` (rich).
"""

from bremen_jax.run.compiled import run_compiled
from bremen_jax.run.host import run_host
from bremen_jax.run.offline import run_offline
from bremen_jax.run.workdir import (Interrupted, RunExistsError, RunResult, check_new_workdir,
                                    load_run_config, load_run_info)

__all__ = ["Interrupted", "RunExistsError", "RunResult", "check_new_workdir", "load_run_config",
           "load_run_info", "run_compiled", "run_host", "run_offline"]
