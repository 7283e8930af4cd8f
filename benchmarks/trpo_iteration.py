"""TRPO-iteration benchmark (thin entry point): ``python -m benchmarks.trpo_iteration [options]``.

Runs :func:`bremen_jax.bench.phases.bench_trpo` through the suite runner: the imagined rollout
and one TRPO iteration split into its stages (advantages / gradient / FVP+CG / line search /
baseline refit, the same functions ``trpo_step`` composes), at the paper suite's sizes (50K
imagined transitions, H = 250, 5 x 2x1024 ensemble, 200-200 policy) unless ``--suite quick``.
Extra arguments go to :func:`bremen_jax.bench.suite.main`.
"""

from __future__ import annotations

import sys

from bremen_jax.bench.suite import main_group

if __name__ == "__main__":
    sys.exit(main_group("trpo", prog="python -m benchmarks.trpo_iteration"))
