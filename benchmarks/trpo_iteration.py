"""TRPO-iteration benchmark (thin entry point): ``python -m benchmarks.trpo_iteration [options]``.

Runs :func:`bremen_jax.bench.phases.bench_trpo` through the suite runner: the imagined rollout
and one TRPO iteration split into its stages (advantages / gradient / FVP+CG / line search /
baseline refit, the same functions ``trpo_step`` composes), at the paper suite's sizes (50K
imagined transitions, H = 250, 5 x 2x1024 ensemble, 200-200 policy) unless ``--suite quick``.
Extra arguments go to ``bremen bench`` (``--config.FIELD=VALUE`` too); results in
``benchmarks/results/`` unless ``--out``.
"""

from __future__ import annotations

import sys

from benchmarks import bench

if __name__ == "__main__":
    sys.exit(bench(group="trpo"))
