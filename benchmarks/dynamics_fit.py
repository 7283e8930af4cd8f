"""Ensemble-fit benchmark (thin entry point): ``python -m benchmarks.dynamics_fit [run options]``.

Runs :func:`benchmarks.phases.bench_ensemble` through the suite runner: the paper suite's sizes
(5 x 2x1024 members, batch 1000, a whole fit of 24K rows x 5 epochs with early stopping disabled,
and 20 vmapped Adam steps in a scan) unless ``--suite quick``. Extra arguments go to
:func:`benchmarks.run.main` (``--precision``, ``--repeats``, ``--out`` ...).
"""

from __future__ import annotations

import sys

from benchmarks import run


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    suite = [] if "--suite" in argv else ["--suite", "paper"]
    return run.main([*suite, "--phases", "ensemble", *argv])


if __name__ == "__main__":
    sys.exit(main())
