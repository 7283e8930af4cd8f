"""TRPO-iteration benchmark (thin entry point): ``python -m benchmarks.trpo_iteration [options]``.

Runs :func:`benchmarks.phases.bench_trpo` through the suite runner: the imagined rollout and one
TRPO iteration split into advantages / gradient / FVP+CG / line search / baseline refit, at the
paper suite's sizes (50K imagined transitions, H = 250, 5 x 2x1024 ensemble, 200-200 policy)
unless ``--suite quick``. Extra arguments go to :func:`benchmarks.run.main`.
"""

from __future__ import annotations

import sys

from benchmarks import run


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    suite = [] if "--suite" in argv else ["--suite", "paper"]
    return run.main([*suite, "--phases", "trpo", *argv])


if __name__ == "__main__":
    sys.exit(main())
