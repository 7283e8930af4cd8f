"""Benchmark scripts and results of a checkout (not installed): ``python -m benchmarks.run``,
``benchmarks.report``, ``benchmarks.dynamics_fit``, ``benchmarks.trpo_iteration``,
``benchmarks.sweep_scaling``, ``benchmarks.trpo_ceiling`` (the TRPO iteration's matmuls alone). The library part is :mod:`bremen_jax.bench` (``bremen bench``).
"""

from __future__ import annotations

import pathlib
import sys
from typing import Sequence

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def bench(argv: Sequence[str] | None = None, group: str | None = None) -> int:
    """``bremen bench ARGV`` (``--config.FIELD=VALUE`` included), writing into this checkout's
    ``benchmarks/results/`` unless ``--out`` is given. ``group``: only that phase group, at the
    paper suite's sizes unless ``--suite`` is given (the single-benchmark scripts)."""
    from bremen_jax.cli import main

    argv = list(sys.argv[1:] if argv is None else argv)
    given = {a.split("=", 1)[0] for a in argv}
    extra = [] if "--out" in given else ["--out", str(RESULTS)]
    if group is not None:
        extra += ([] if "--suite" in given else ["--suite", "paper"]) + ["--phases", group]
    return main(["bench", *extra, *argv])
