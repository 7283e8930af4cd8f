"""Benchmark suites from a checkout: ``python -m benchmarks.run --suite quick|paper [options]``.

The same as ``bremen bench``: the suites live in :mod:`bremen_jax.bench.suite` (installed with
the library); this folder keeps the runnable scripts and ``results/``.
"""

from __future__ import annotations

import sys

from bremen_jax.bench.suite import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m benchmarks.run"))
