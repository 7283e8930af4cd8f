"""Ahead-of-time compilation with one cache, and JAX's persistent compilation cache.

Every driver (host, compiled, sweeps, benchmarks) compiles through :func:`compile_cached`: the
executable is keyed by the caller's static key (e.g. ``(StaticConfig, name)``) and the abstract
shapes/dtypes of the arguments, so a second run with the same static config but other HParams or
another seed reuses it (a sweep's HParams are traced, never baked in).

:func:`enable_persistent_cache` turns on JAX's on-disk cache (``$XDG_CACHE_HOME/bremen_jax``, default
``~/.cache/bremen_jax``) so that a second *process* with the same config does not pay the XLA
compile either; ``BREMEN_JAX_CACHE=off`` disables it and ``BREMEN_JAX_CACHE=DIR`` moves it.
A job's compile *effort* (config field ``compile_effort``; ``BREMEN_JAX_COMPILE=auto|default|
light|fast`` and the CLI's ``--fast-compile`` override it; :data:`COMPILE_EFFORTS`):

* ``default``: XLA's own options;
* ``light``: LLVM -O1 and, on CPU, XLA's elementwise emitters instead of its fusion emitters;
  on the quick config's Brax-stepping programs about 40% less XLA time (collect 12.0 -> 7.1 s,
  evaluate 10.7 -> 8.3 s, 2-core CPU) at the same speed (a whole quick run: 22.1 vs 21.2 s of
  collection, 40.3 vs 41.0 s of evaluation), but its model fits ran ~25% slower;
* ``fast``: LLVM -O0 and no fusion emitters: about half the default's compile time on the
  ``test`` config's phase programs, with Brax steps up to ~1.5x slower there (5x on the quick
  config's 16-env collection) and TRPO up to ~4x on small networks, the trade wanted for a test
  or a small sweep (the ``test`` config uses it);
* ``auto`` (the schema's default): per program, ``light`` for the programs that step the
  physics (a job's ``kind="env"``: collection, evaluation, rendering) on CPU, ``default`` for
  everything else and on other platforms.

The numbers of every effort equal the default's up to float rounding.
A :class:`Job` marked ``persist`` (its key determines its function, whose code is this package's)
also stores its whole executable there (:mod:`jax.experimental.serialize_executable`), keyed by its
key, argument shapes, this package's source, the library versions and XLA flags: a second process
loads it without tracing or lowering (JAX's own cache needs both to find its key).
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import hashlib
import importlib.metadata
import os
import pathlib
import pickle
import sys
import threading
import time
from typing import Any, Callable, Hashable, Sequence

import jax
import numpy as np

from bremen_jax.config import precision_context, schema

_CACHE_SIZE = 32
_STORED_MAX = 64  # stored executables kept on disk (the newest; ~0.3-4 MB each, a sweep's ~15 MB)
_STORED_MAX_BYTES = 1 << 30  # and at most this many bytes of them
_CACHE: "collections.OrderedDict[Hashable, Compiled]" = collections.OrderedDict()
# compile effort (config field compile_effort) -> XLA compile options
# fast: LLVM -O0, and XLA:CPU's older elementwise emitters instead of its fusion emitters (MLIR
# codegen), which roughly halve compile again on the test config (collect 6.4 -> 3.9 s, improve
# 4.2 -> 1.3 s, evaluate 6.3 -> 2.9 s at -O0, idle 2-core CPU) and run its collect 4x faster
# (133 -> 34 ms); a debug option of every backend, read by the CPU compiler only.
# light: -O1 and the elementwise emitters, for programs whose time is in Brax's physics: on the
# quick config (halfcheetah, 2-core CPU, sequential compiles) collect 12.0 -> 7.1 s and evaluate
# 10.7 -> 8.3 s of XLA time at the same speed within noise (a whole cold quick run: compile 36.3
# -> 25.6 s, collection 21.2 -> 22.1 s, evaluation 41.0 -> 40.3 s); -O1 alone compiled no faster,
# and -O0 (fast) ran that collect 5.5x slower. The model fit ran 25% slower at light, TRPO 6%:
# auto keeps them at the default.
COMPILE_EFFORTS = {"default": {},
                   "light": {"xla_backend_optimization_level": 1,
                             "xla_cpu_use_fusion_emitters": False},
                   "fast": {"xla_backend_optimization_level": 0,
                            "xla_cpu_use_fusion_emitters": False}}
AUTO = "auto"  # per program: light for physics-stepping programs on CPU, default otherwise
JOB_KINDS = ("env", "other")
assert (AUTO, *COMPILE_EFFORTS) == schema.COMPILE_EFFORTS


def compile_effort(requested: str = AUTO, kind: str = "other") -> str:
    """The effort (a key of :data:`COMPILE_EFFORTS`) a program of ``kind`` compiles with:
    ``BREMEN_JAX_COMPILE`` when set (read at each compile), else ``requested`` (the config's
    ``compile_effort``); ``auto`` resolves to ``light`` for ``kind="env"`` programs (they step
    the physics) on CPU and to ``default`` otherwise."""
    if kind not in JOB_KINDS:
        raise ValueError(f"job kind must be one of {', '.join(JOB_KINDS)}, got {kind!r}")
    value = os.environ.get("BREMEN_JAX_COMPILE", "").strip().lower() or requested
    if value != AUTO and value not in COMPILE_EFFORTS:
        raise ValueError(f"BREMEN_JAX_COMPILE={value!r}: expected one of "
                         f"{', '.join(schema.COMPILE_EFFORTS)}")
    if value == AUTO:
        return "light" if kind == "env" and jax.default_backend() == "cpu" else "default"
    return value


_UNKNOWN_OPTIONS: set[str] = set()  # options this XLA build rejected (dropped from then on)


def effort_options(effort: str, backend: str | None = None) -> dict:
    """The XLA options of ``effort`` (:data:`COMPILE_EFFORTS`) for ``backend`` (default: JAX's
    default backend): ``xla_cpu_*`` options only on the CPU (other backends' compilers reject
    them: "No such compile option"), without any this XLA build rejected earlier."""
    backend = backend or jax.default_backend()
    return {k: v for k, v in COMPILE_EFFORTS[effort].items()
            if (backend == "cpu" or not k.startswith("xla_cpu_")) and k not in _UNKNOWN_OPTIONS}


def compile_lowered(lowered, effort: str):
    """``lowered.compile()`` with the XLA options of ``effort`` (:func:`effort_options`). An
    option the installed XLA does not know (they are debug options and get renamed between
    releases) is dropped with a warning and the compile retried: the effort is a speed knob,
    never a reason for a run to fail."""
    options = effort_options(effort)
    while True:
        try:
            return lowered.compile(options or None)
        except Exception as e:  # noqa: BLE001 - jax raises JaxRuntimeError(INVALID_ARGUMENT)
            bad = [k for k in options if f"No such compile option: '{k}'" in str(e)]
            if not bad:
                raise
            _UNKNOWN_OPTIONS.update(bad)
            options = {k: v for k, v in options.items() if k not in bad}
            print(f"bremen_jax: this XLA has no compile option {bad[0]!r}; compiling without "
                  "it", file=sys.stderr)


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


@dataclasses.dataclass(frozen=True)
class Job:
    """One program for :func:`compile_many` (the arguments of :func:`compile_cached`)."""

    key: Hashable
    fn: Callable
    args: tuple
    precision: str = "default"
    donate_argnums: int | tuple[int, ...] = ()
    jit_kwargs: dict = dataclasses.field(default_factory=dict)
    persist: bool = False  # key + shapes determine fn, fn's code is bremen_jax's: store it on disk
    effort: str = AUTO  # requested compile effort (BREMEN_JAX_COMPILE overrides it)
    kind: str = "other"  # "env": the program steps the physics (see compile_effort)

    def resolved_effort(self) -> str:
        """The key of :data:`COMPILE_EFFORTS` this job compiles with."""
        return compile_effort(self.effort, self.kind)

    def cache_key(self) -> Hashable:
        effort = self.resolved_effort()
        return (self.key, self.precision, self.donate_argnums, _signature(self.args), effort,
                tuple(sorted(effort_options(effort).items())))  # the options it compiles with


def compile_cached(key: Hashable, fn: Callable, *args: Any, precision: str = "default",
                   donate_argnums: int | tuple[int, ...] = (), persist: bool = False,
                   effort: str = AUTO, kind: str = "other", **jit_kwargs: Any) -> Compiled:
    """``jax.jit(fn, **jit_kwargs).lower(*args).compile()``, cached per ``(key, shapes of args)``.

    Args:
        key: hashable; must determine ``fn`` and ``jit_kwargs`` (e.g. ``(static, "fit_bc")``; a
            sharded program includes its devices).
        fn: the pure function to compile.
        *args: example arguments or ``ShapeDtypeStruct`` s (only shapes/dtypes are used).
        precision: ``jax.default_matmul_precision`` while tracing (``"default"``: none).
        donate_argnums: arguments whose buffers the executable may reuse.
        persist: ``key`` and the shapes determine ``fn`` and its code is this package's (see
            :class:`Job`): the executable is stored with the persistent cache and loaded from it.
        effort: requested compile effort (``"auto"`` | ``"default"`` | ``"light"`` |
            ``"fast"``; see the module docstring).
        kind: ``"env"`` for a program that steps the physics (``auto`` compiles it ``light``
            on CPU), else ``"other"``.
        **jit_kwargs: more ``jax.jit`` options (``in_shardings``, ``out_shardings``).
    """
    return compile_many([Job(key, fn, args, precision, donate_argnums, jit_kwargs,
                             persist, effort, kind)])[0]


def compile_many(jobs: Sequence[Job], threads: int | None = None) -> list[Compiled]:
    """:func:`compile_cached` for several independent programs, XLA-compiling them in parallel.

    Programs not in the cache are traced and lowered one after the other (Python work); each goes
    to XLA in one of up to ``threads`` threads (default: one per CPU core; XLA releases the GIL) as
    soon as it is lowered, so the next program's tracing overlaps the previous one's compile and a
    driver's phases compile side by side. The executables are the ones :func:`compile_cached`
    makes (same programs, same numbers). A program's ``seconds`` are its lowering plus XLA
    seconds scaled so that the seconds of one call add up to its wall time.
    """
    out: list[Compiled | None] = [None] * len(jobs)
    need = []
    for i, job in enumerate(jobs):
        ck = job.cache_key()
        hit = _CACHE.get(ck)
        if hit is not None:
            _CACHE.move_to_end(ck)
            out[i] = dataclasses.replace(hit, cached=True)
        else:
            need.append((i, job, ck))

    def xla(build):
        t0 = time.perf_counter()
        return build(), time.perf_counter() - t0

    workers = max(1, min(len(need), threads or os.cpu_count() or 1))
    pool = concurrent.futures.ThreadPoolExecutor(workers) if workers > 1 else None
    started = []  # (index, cache key, future or (executable, xla seconds), lower seconds, path)
    t0 = time.perf_counter()
    try:
        for i, job, ck in need:
            path = _stored_path(job)
            if path is not None and path.is_file():  # loaded (or, failing that, built) in a thread
                build, lower_s, path = functools.partial(_load_or_build, path, job), 0.0, None
            else:
                t1 = time.perf_counter()
                lowered = _lower(job)
                effort = job.resolved_effort()
                build = (functools.partial(compile_lowered, lowered, effort) if path is None
                         else functools.partial(_compile_to_store, lowered, effort))
                lower_s = time.perf_counter() - t1
            started.append((i, ck, pool.submit(xla, build) if pool else xla(build), lower_s,
                            path))
        done = [r.result() if pool else r for _, _, r, _, _ in started]
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    share = (time.perf_counter() - t0) / max(
        sum(lower_s for *_, lower_s, _ in started) + sum(s for _, s in done), 1e-9)
    for (i, ck, _, lower_s, path), (exe, xla_s) in zip(started, done):
        if path is not None:
            exe, fresh = exe
            if fresh:
                _store(path, exe)
        out[i] = _CACHE[ck] = Compiled(exe, (lower_s + xla_s) * share)
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def _lower(job: Job):
    with precision_context(job.precision):
        jitted = jax.jit(job.fn, donate_argnums=job.donate_argnums, **job.jit_kwargs)
        return jitted.lower(*abstract(job.args))


_HITS = threading.local()  # per compiling thread: did JAX's persistent cache answer?


@functools.cache
def _listen_for_cache_hits() -> None:
    def listener(event: str, **_):
        if event == "/jax/compilation_cache/cache_hits":
            _HITS.hit = True

    jax.monitoring.register_event_listener(listener)


def _compile_to_store(lowered, effort: str):
    """``lowered.compile()``, and whether XLA compiled it (None when JAX's cache answered).

    An executable JAX took from its persistent cache serializes into one that loads but fails when
    called ("Function slice_bitcast_fusion.3 not found", jaxlib 0.10 on CPU); one XLA compiled
    round-trips. So only XLA's own are stored; a program JAX's cache holds (same program from an
    older version of this package) keeps coming from there.
    """
    _listen_for_cache_hits()
    _HITS.hit = False
    exe = compile_lowered(lowered, effort)
    return exe, not _HITS.hit


@functools.cache
def _environment() -> str:
    """What besides a job's key decides its executable: this package's source, the versions of
    the libraries it traces through, XLA's flags, JAX's numerics options and the devices."""
    h = hashlib.sha256()
    root = pathlib.Path(__file__).resolve().parents[1]
    for f in sorted(root.rglob("*.py")):
        h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
    versions = []
    for dist in ("jax", "jaxlib", "brax", "flax", "optax", "mujoco", "numpy", "ml_collections"):
        try:
            versions.append((dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            versions.append((dist, None))
    flags = [(k, getattr(jax.config, k, None)) for k in (
        "jax_enable_x64", "jax_default_matmul_precision", "jax_threefry_partitionable",
        "jax_default_prng_impl", "jax_numpy_rank_promotion")]
    devices = [(d.platform, d.device_kind) for d in jax.devices()]
    h.update(repr((versions, flags, devices, os.environ.get("XLA_FLAGS", ""),
                   sys.version)).encode())
    return h.hexdigest()


def _stored_path(job: Job) -> pathlib.Path | None:
    """Where ``job``'s executable is stored (None: not a ``persist`` job, a multi-process
    program, or no persistent cache). A sharded program (``in_shardings``/``out_shardings`` in
    ``jit_kwargs``) is stored too: its key names its devices (:func:`compile_cached`), and it
    loads onto the devices of the same ids."""
    folder = jax.config.jax_compilation_cache_dir
    if not (job.persist and folder) or jax.process_count() > 1:
        return None
    try:
        what = repr((job.cache_key(), _environment()))
    except OSError:
        return None
    return (pathlib.Path(folder) / "bremen_executables"
            / f"{hashlib.sha256(what.encode()).hexdigest()}.pkl")


@functools.cache
def _init_custom_calls() -> None:
    """Initialises what lowering would have: LAPACK's kernels (QR, triangular solves) are set up
    the first time a program using them is lowered; a loaded executable calling them before
    that crashes the process."""
    from jaxlib import lapack

    lapack.prepare_lapack_call("geqrf_ffi", np.dtype(np.float32))


def _load_or_build(path: pathlib.Path, job: Job):
    from jax.experimental import serialize_executable

    try:
        _init_custom_calls()
        payload, in_tree, out_tree, ids = pickle.loads(path.read_bytes())
        by_id = {d.id: d for d in jax.devices()}
        return serialize_executable.deserialize_and_load(payload, in_tree, out_tree,
                                                         execution_devices=[by_id[i] for i in ids])
    except Exception:  # unreadable or stale entry: compile (and the caller does not rewrite it)
        return compile_lowered(_lower(job), job.resolved_effort())


def _device_ids(exe) -> list[int]:
    """The ids of the devices ``exe`` runs on, in its device assignment's order."""
    shardings = [s for s in jax.tree.leaves(
        (exe.input_shardings, exe.output_shardings),
        is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
        if isinstance(s, jax.sharding.Sharding)]
    return [d.id for d in shardings[0]._device_assignment]


def _store(path: pathlib.Path, exe) -> None:
    """Stores ``exe`` with the ids of its devices: it must be loaded onto exactly those (loaded
    onto all of several devices, a one-device program fails when called, "Expected args to
    execute_sharded_on_local_devices to have 4 shards", and one over a sub-mesh aborts the
    process in XLA's sharding check; jaxlib 0.10)."""
    from jax.experimental import serialize_executable

    try:
        blob = pickle.dumps((*serialize_executable.serialize(exe), _device_ids(exe)))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, path)
        prune_stored(path.parent)
    except Exception:  # not serializable, or the folder is read-only: just not stored
        pass


def prune_stored(folder: pathlib.Path, max_files: int = _STORED_MAX,
                 max_bytes: int = _STORED_MAX_BYTES) -> None:
    """Keeps the newest stored executables (``*.pkl`` in ``folder``, by modification time) while
    there are at most ``max_files`` of them and ``max_bytes`` in all (the newest is always kept);
    the rest are older code versions' programs and are deleted."""
    kept = n = 0
    for f in sorted(folder.glob("*.pkl"), key=lambda f: f.stat().st_mtime, reverse=True):
        size = f.stat().st_size
        if n and (n >= max_files or kept + size > max_bytes):
            f.unlink(missing_ok=True)
            continue
        kept, n = kept + size, n + 1


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
