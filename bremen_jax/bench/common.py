"""Timing, FLOP-count and machine helpers shared by the benchmark suites (DESIGN §6).

Every measurement separates compile time from steady state: ``jit(fn).lower(*args).compile()`` is
timed once, then the compiled function is called ``warmup`` times and ``repeats`` more times, each
call ended by ``jax.block_until_ready``; the median of the repeats is the steady-state time.

FLOP convention (matmul FLOPs of the MLPs only; elementwise work is not counted): a forward pass
costs ``2 * sum(fan_in * fan_out)`` per row; a gradient (forward + backward) ``3 x`` forward; a
Hessian-vector product (forward-over-reverse) ``6 x`` forward. The exact matmul counts are a little
lower because the input layer needs no input gradient/tangent: ``3F - 2*in*h1`` (0.7% lower for the
2x1024 dynamics MLP, 2.5% for the 200-200 policy) and ``6F - 8*in*h1`` (5% lower for the policy);
the simple multiples keep the numbers comparable with the first results in ``benchmarks/results/``.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import pathlib
import re
import statistics
import subprocess
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

REPO_ROOT = pathlib.Path(__file__).resolve().parent.parent.parent   # a checkout's root
# a checkout's benchmarks/results (else ./benchmarks/results): where the repo's benchmark scripts
# keep results; `bremen bench` itself writes to the current directory or --out
RESULTS_DIR = ((REPO_ROOT if (REPO_ROOT / "benchmarks").is_dir() else pathlib.Path.cwd())
               / "benchmarks" / "results")
PRECISIONS = ("highest", "tensorfloat32", "bfloat16")


# ----------------------------------------------------------------------------------------- timing
@dataclasses.dataclass
class Timing:
    """Compile and steady-state seconds of one jitted function (``repeats`` calls after warm-up).

    ``program_bytes``: argument + output + temporary bytes of the compiled program minus aliased
    bytes, from XLA's buffer assignment (``compiled.memory_analysis()``; None if unavailable).
    """

    compile_s: float
    median_s: float
    min_s: float
    repeats: int
    warmup: int = 1
    program_bytes: int | None = None

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def program_bytes(compiled: Any) -> int | None:
    """Bytes XLA assigns to a compiled program (arguments + outputs + temporaries - aliases)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - backends without memory analysis
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes)


def time_jitted(fn: Callable, *args: Any, repeats: int = 5, warmup: int = 1,
                **jit_kwargs: Any) -> tuple[Timing, Any]:
    """Compiles ``jax.jit(fn)`` for ``args`` and times it. Returns (timing, last output).

    Trace inside the wanted ``jax.default_matmul_precision`` context: lowering happens here.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
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
    return Timing(compile_s, statistics.median(times), min(times), repeats, warmup,
                  program_bytes(compiled)), out


# ------------------------------------------------------------------------------------ matmul peak
def peak_dtype(precision: str):
    """Input dtype of the peak measurement: bfloat16 inputs for ``bfloat16``, float32 otherwise."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return jnp.bfloat16 if precision == "bfloat16" else jnp.float32


def measure_matmul_peak(n: int = 2048, dtype=jnp.float32, repeats: int = 5,
                        precision: str | None = "highest") -> float:
    """Measured matmul rate in FLOP/s: a chain of 8 ``[n, n] @ [n, n]`` products through XLA.

    Uses the fastest repeat (the machine's limit, not its average).
    """
    key_a, key_b = jax.random.split(jax.random.key(0))
    a = jax.random.normal(key_a, (n, n), dtype)
    b = (jax.random.normal(key_b, (n, n), jnp.float32) / jnp.sqrt(n)).astype(dtype)

    def chain(a, b):
        def body(x, _):
            return jnp.dot(x, b, precision=precision).astype(dtype), None
        x, _ = jax.lax.scan(body, a, None, length=8)
        return x

    timing, _ = time_jitted(chain, a, b, repeats=repeats)
    return 8 * 2 * n ** 3 / timing.min_s


def matmul_peak(precision: str, n: int | None = None, repeats: int = 5) -> dict:
    """The peak at one benchmark precision: ``highest`` = float32 inputs, precision highest;
    ``tensorfloat32`` = float32 inputs, precision tensorfloat32; ``bfloat16`` = bfloat16 inputs,
    default precision. ``n`` defaults to 2048 on CPU and 8192 on accelerators."""
    if n is None:
        n = 2048 if jax.default_backend() == "cpu" else 8192
    dtype = peak_dtype(precision)
    dot_precision = None if precision == "bfloat16" else precision
    flops = measure_matmul_peak(n, dtype, repeats, dot_precision)
    return {"flops_per_s": flops, "gflops": flops / 1e9, "n": n,
            "dtype": jnp.dtype(dtype).name, "precision": precision,
            "what": f"fastest of {repeats} chains of 8 [{n},{n}]@[{n},{n}] products"}


# ------------------------------------------------------------------------------------ FLOP counts
def mlp_forward_flops(sizes: Sequence[int]) -> int:
    """Matmul FLOPs of one forward row through an MLP with layer sizes ``(in, h1, ..., out)``."""
    sizes = tuple(int(s) for s in sizes)
    if len(sizes) < 2 or min(sizes) <= 0:
        raise ValueError(f"sizes must be >= 2 positive layer widths, got {sizes}")
    return sum(2 * a * b for a, b in zip(sizes[:-1], sizes[1:]))


def mlp_grad_flops(sizes: Sequence[int]) -> int:
    """Forward + backward of one row: ``3 x`` forward (see the module docstring)."""
    return 3 * mlp_forward_flops(sizes)


def mlp_hvp_flops(sizes: Sequence[int]) -> int:
    """One forward-over-reverse Hessian-vector product per row: ``6 x`` forward."""
    return 6 * mlp_forward_flops(sizes)


def mlp_gauss_newton_flops(sizes: Sequence[int]) -> int:
    """One Gauss-Newton product ``Jᵀ H J v`` per row: a JVP (``2 x`` forward: parameter and
    input tangents) and a VJP (``2 x``: weight and input cotangents), ``4 x`` forward."""
    return 4 * mlp_forward_flops(sizes)


def fvp_flops(method: str, sizes: Sequence[int]) -> int:
    """FLOPs of one Fisher-vector product per row for ``TRPOConfig.fvp``."""
    return mlp_hvp_flops(sizes) if method == "hessian" else mlp_gauss_newton_flops(sizes)


# ---------------------------------------------------------------------------------- the machine
def cpu_count() -> int:
    """CPU cores this process may use (affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def device_info() -> dict:
    dev = jax.devices()[0]
    return {
        "platform": dev.platform,
        "device_kind": getattr(dev, "device_kind", "unknown"),
        "num_devices": jax.device_count(),
        "cpu_count": cpu_count(),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
    }


def device_slug(info: dict) -> str:
    """``cpu-2core``, ``gpu-h100``, ``tpu-v4`` (+ ``x8`` for 8 devices): a file-name-safe name."""
    platform = info.get("platform", "unknown")
    if platform == "cpu":
        return f"cpu-{info.get('cpu_count', 1)}core"
    kind = str(info.get("device_kind", "unknown")).lower()
    words = [w for w in re.split(r"[^a-z0-9]+", kind)
             if w and w not in {"nvidia", "tesla", "amd", "geforce", "radeon", platform}]
    slug = f"{platform}-{words[0] if words else 'unknown'}"
    n = int(info.get("num_devices", 1))
    return f"{slug}x{n}" if n > 1 else slug


def peak_memory_bytes() -> int | None:
    """Process-wide peak device memory so far if the backend reports it (GPU/TPU), else None."""
    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - backends without memory stats
        return None
    if not stats:
        return None
    return stats.get("peak_bytes_in_use")


def git_commit() -> dict:
    """``{"commit": sha or None, "dirty": bool or None}`` of the repository the code runs from."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
    try:
        sha = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": sha, "dirty": dirty}


def today() -> str:
    return datetime.date.today().isoformat()


def default_out_name(info: dict, suite: str, date: str | None = None) -> str:
    """``<device>-<date>-<suite>.json``: the file name of a suite's results."""
    return f"{device_slug(info)}-{date or today()}-{suite}.json"
