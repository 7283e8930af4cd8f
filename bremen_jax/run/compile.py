"""Ahead-of-time compilation with one cache, and JAX's persistent compilation cache.

Every driver (host, compiled, sweeps, benchmarks) compiles through :func:`compile_cached`: the
executable is keyed by the caller's static key (e.g. ``(StaticConfig, name)``) and the abstract
shapes/dtypes of the arguments, so a second run with the same static config but other HParams or
another seed reuses it (a sweep's HParams are traced, never baked in).

:func:`enable_persistent_cache` turns on JAX's on-disk cache (``$XDG_CACHE_HOME/bremen_jax``, default
``~/.cache/bremen_jax``) so that a second *process* with the same config does not pay the XLA
compile either; ``BREMEN_JAX_CACHE=off`` disables it and ``BREMEN_JAX_CACHE=DIR`` moves it.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib
import time
from typing import Any, Callable, Hashable, Sequence

import jax
import numpy as np

from bremen_jax.config import precision_context

_CACHE_SIZE = 32
_CACHE: "collections.OrderedDict[Hashable, Compiled]" = collections.OrderedDict()


@dataclasses.dataclass(frozen=True, eq=False)
class Compiled:
    """An AOT-compiled executable and the seconds its lowering + compilation took."""

    fn: Callable
    seconds: float
    cached: bool = False  # True when this call found it in the cache (nothing compiled)


def abstract(tree: Any) -> Any:
    """``ShapeDtypeStruct`` s of a pytree of arrays (typed PRNG keys included)."""
    return jax.tree.map(lambda x: x if isinstance(x, jax.ShapeDtypeStruct)
                        else jax.ShapeDtypeStruct(np.shape(x), x.dtype if hasattr(x, "dtype")
                                                  else np.asarray(x).dtype), tree)


def _signature(args: Sequence[Any]) -> Hashable:
    flat, treedef = jax.tree_util.tree_flatten(abstract(tuple(args)))
    return treedef, tuple((tuple(x.shape), str(x.dtype)) for x in flat)


def compile_cached(key: Hashable, fn: Callable, *args: Any, precision: str = "default",
                   donate_argnums: int | tuple[int, ...] = (), **jit_kwargs: Any) -> Compiled:
    """``jax.jit(fn, **jit_kwargs).lower(*args).compile()``, cached per ``(key, shapes of args)``.

    Args:
        key: hashable; must determine ``fn`` and ``jit_kwargs`` (e.g. ``(static, "fit_bc")``; a
            sharded program includes its devices).
        fn: the pure function to compile.
        *args: example arguments or ``ShapeDtypeStruct`` s (only shapes/dtypes are used).
        precision: ``jax.default_matmul_precision`` while tracing (``"default"``: none).
        donate_argnums: arguments whose buffers the executable may reuse.
        **jit_kwargs: more ``jax.jit`` options (``in_shardings``, ``out_shardings``).
    """
    cache_key = (key, precision, donate_argnums, _signature(args))
    hit = _CACHE.get(cache_key)
    if hit is not None:
        _CACHE.move_to_end(cache_key)
        return dataclasses.replace(hit, cached=True)
    t0 = time.perf_counter()
    with precision_context(precision):
        exe = jax.jit(fn, donate_argnums=donate_argnums, **jit_kwargs
                      ).lower(*abstract(args)).compile()
    out = Compiled(exe, time.perf_counter() - t0)
    _CACHE[cache_key] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def clear_cache(kind: Hashable | None = None) -> None:
    """Drops the cached executables whose key starts with ``kind`` (e.g. ``"sweep"``), or all."""
    for k in [k for k in _CACHE if kind is None or (isinstance(k[0], tuple) and k[0][:1] == (kind,))]:
        del _CACHE[k]


def default_cache_dir() -> pathlib.Path | None:
    """Where the persistent compilation cache lives (None when ``BREMEN_JAX_CACHE=off``)."""
    env = os.environ.get("BREMEN_JAX_CACHE", "").strip()
    if env.lower() in ("off", "0", "false", "none"):
        return None
    if env:
        return pathlib.Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base) / "bremen_jax"


def enable_persistent_cache(directory: str | pathlib.Path | None = None) -> pathlib.Path | None:
    """Turns on JAX's persistent compilation cache, unless one is already configured.

    Args:
        directory: cache folder; None = :func:`default_cache_dir`.
    Returns:
        the folder in use, or None (disabled, or not writable: then compiling just is not cached).
    """
    current = jax.config.jax_compilation_cache_dir
    if current:
        return pathlib.Path(current)
    path = pathlib.Path(directory) if directory is not None else default_cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
