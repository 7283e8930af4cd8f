"""Compile-time suite from a checkout: ``python -m benchmarks.compile_time [--configs test,quick]
[--commands train_host,train_compiled,offline,collect,sweep,evaluate] [--out FILE] [--quick]``.

Each command runs twice in a subprocess, cold (empty persistent compilation cache) and warm (the
same cache again), with JAX's compile log on; the JSON (default
``benchmarks/results/compile-<device>-<date>.json``) lists per command which programs compiled, how
many times, their trace / lower / XLA seconds and StableHLO sizes, and the targets' verdicts. The
suite lives in :mod:`bremen_jax.bench.compile_time`.
"""

from __future__ import annotations

import sys

from bremen_jax.bench.compile_time import main

if __name__ == "__main__":
    sys.exit(main())
