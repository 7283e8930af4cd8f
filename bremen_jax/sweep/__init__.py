"""Sweeps: seeds x HParams (x outer, shape-changing values) as compiled, sharded programs.

* :mod:`~bremen_jax.sweep.spec`: sweep files (by name in :mod:`bremen_jax.configs.sweeps` or by
  ``.py`` path) and specs -> :class:`OuterPlan` s (HParams stacked along a ``[R]`` runs axis);
* :mod:`~bremen_jax.sweep.offline`: the dataset of an offline sweep (``--dataset``);
* :mod:`~bremen_jax.sweep.devices`: the distributed runtime, the runs mesh, padding, free memory;
* :mod:`~bremen_jax.sweep.resume`: what an interrupted sweep's ``sweep.json`` must match;
* :mod:`~bremen_jax.sweep.program`: the memory estimate, the ``jit(vmap(train))`` program and
  :func:`run_sweep`, the entry point (``bremen sweep``; ``--dataset``: offline BREMEN runs on one
  dataset; ``--checkpoint-every`` / ``--resume``: checkpoints and continuing after a kill);
* :mod:`~bremen_jax.sweep.report`: rows, summary over seeds, files and plots (host only).

See ``docs/sweeps.md`` for the file format.
"""

from bremen_jax.sweep.devices import (
    SweepMemoryError,
    available_memory_bytes,
    initialize_distributed,
    make_runs_mesh,
    pad_runs,
    padded_size,
    run_state_bytes,
    tree_nbytes,
)
from bremen_jax.sweep.offline import OfflineData, load_offline_data
from bremen_jax.sweep.program import (
    PROGRAM_NAME,
    STATE_COPIES,
    SweepExistsError,
    SweepResult,
    compile_sweep,
    compile_sweep_steps,
    estimate_memory,
    execute_plan,
    make_sweep_continue,
    make_sweep_init,
    make_sweep_program,
    run_sweep,
)
from bremen_jax.sweep.resume import read_unfinished
from bremen_jax.sweep.spec import (
    OuterPlan,
    SweepError,
    SweepSpec,
    build_plans,
    load_sweep,
    parse_sweep,
)

__all__ = ["OfflineData", "OuterPlan", "PROGRAM_NAME", "STATE_COPIES", "SweepError",
           "SweepExistsError", "SweepMemoryError", "SweepResult", "SweepSpec",
           "available_memory_bytes", "build_plans", "compile_sweep", "compile_sweep_steps",
           "estimate_memory", "execute_plan", "initialize_distributed", "load_offline_data",
           "load_sweep", "make_runs_mesh", "make_sweep_continue", "make_sweep_init",
           "make_sweep_program", "pad_runs", "padded_size", "parse_sweep", "read_unfinished",
           "run_state_bytes", "run_sweep", "tree_nbytes"]
