"""Benchmark suites from a checkout: ``python -m benchmarks.run --suite quick|paper [options]``.

The same as ``bremen bench`` (flags, ``--config.FIELD=VALUE``), but the results go to this
checkout's ``benchmarks/results/`` unless ``--out``; the suites live in
:mod:`bremen_jax.bench.suite` (installed with the library).
"""

from __future__ import annotations

import sys

from benchmarks import bench

if __name__ == "__main__":
    sys.exit(bench())
