"""Ensemble-fit benchmark (thin entry point): ``python -m benchmarks.dynamics_fit [run options]``.

Runs :func:`bremen_jax.bench.phases.bench_ensemble` through the suite runner: the paper suite's
sizes (5 x 2x1024 members, batch 1000, a whole fit of 24K rows x 5 epochs with early stopping
disabled, and 20 vmapped Adam steps in a scan) unless ``--suite quick``. Extra arguments go to
``bremen bench`` (``--precision``, ``--repeats``, ``--out``, ``--config.FIELD=VALUE`` ...);
results in ``benchmarks/results/`` unless ``--out``.
"""

from __future__ import annotations

import sys

from benchmarks import bench

if __name__ == "__main__":
    sys.exit(bench(group="ensemble"))
