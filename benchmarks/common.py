"""Timing helpers shared by the benchmark suites.

Every measurement separates compile time from steady state: ``fn.lower(*args).compile()`` is timed
once, then the compiled function is called ``warmup`` times and ``repeats`` more times, each call
ended by ``jax.block_until_ready``; the median of the repeats is the steady-state time.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp


@dataclasses.dataclass
class Timing:
    compile_s: float
    median_s: float
    min_s: float
    repeats: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def time_jitted(fn: Callable, *args: Any, repeats: int = 5, warmup: int = 1,
                **jit_kwargs: Any) -> tuple[Timing, Any]:
    """Compiles ``jax.jit(fn)`` for ``args`` and times it. Returns (timing, last output)."""
    jitted = jax.jit(fn, **jit_kwargs)
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    compile_s = time.perf_counter() - t0
    out = None
    for _ in range(warmup):
        out = jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return Timing(compile_s, statistics.median(times), min(times), repeats), out


def measure_matmul_peak(n: int = 2048, dtype=jnp.float32, repeats: int = 5,
                        precision: str = "highest") -> float:
    """Measured matmul rate in FLOP/s: a chain of 8 ``[n, n] @ [n, n]`` products through XLA."""
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, n), dtype)
    b = jax.random.normal(key_b, (n, n), dtype) / jnp.sqrt(n).astype(dtype)

    def chain(a, b):
        def body(x, _):
            return jnp.dot(x, b, precision=precision), None
        x, _ = jax.lax.scan(body, a, None, length=8)
        return x

    timing, _ = time_jitted(chain, a, b, repeats=repeats)
    return 8 * 2 * n ** 3 / timing.min_s


def device_info() -> dict:
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": getattr(dev, "device_kind", "unknown"),
        "num_devices": jax.device_count(),
        "jax_version": jax.__version__,
    }


def peak_memory_bytes() -> int | None:
    """Peak device memory if the backend reports it (GPU/TPU), else None (CPU)."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats
        return None
    if not stats:
        return None
    return stats.get("peak_bytes_in_use")
