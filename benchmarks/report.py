"""Markdown tables from benchmark results: ``python -m benchmarks.report FILE... [--out F.md]``.

See :mod:`bremen_jax.bench.report` (installed with the library).
"""

from __future__ import annotations

import sys

from bremen_jax.bench.report import main

if __name__ == "__main__":
    sys.exit(main())
