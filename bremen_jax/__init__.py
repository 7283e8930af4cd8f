"""bremen_jax: BREMEN (Matsushima et al., ICLR 2021) in JAX.

The public API, imported lazily (``import bremen_jax`` stays instant)::

    bremen_jax.load_config("quick")          # bremen_jax.config: schema, override, split
    bremen_jax.run_host(cfg, workdir)        # bremen_jax.run: host / compiled / offline drivers
    bremen_jax.run_compiled(cfg, workdir)
    bremen_jax.run_offline(cfg, dataset, workdir)
    bremen_jax.run_sweep(sweep_file, workdir)
    bremen_jax.make_task("hopper")           # bremen_jax.envs: tasks and the task registry

Subpackages, bottom to top: ``config`` (+ shipped ``configs``), ``envs``, ``data``, ``models``,
``algo`` (phases and the schedule), ``run`` (drivers, run directory), ``datasets`` (dataset tooling),
``sweep``, ``bench``, ``cli``.
"""

import importlib

__version__ = "0.1.0"

_API = {
    "load_config": "bremen_jax.config",
    "override": "bremen_jax.config",
    "make_task": "bremen_jax.envs",
    "run_host": "bremen_jax.run",
    "run_compiled": "bremen_jax.run",
    "run_offline": "bremen_jax.run",
    "run_sweep": "bremen_jax.sweep",
    "evaluate": "bremen_jax.cli.inspect",
    "plot": "bremen_jax.run.plots",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'bremen_jax' has no attribute {name!r}")
