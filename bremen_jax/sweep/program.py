"""Sweeps: many runs of the compiled driver as one program, sharded over devices (DESIGN §4, §7).

A sweep file is a Python module with ``get_config()`` (or ``base = "quick"``, a config name or path)
and ``get_sweep()`` returning a dict (see ``docs/sweeps.md``)::

    {"seeds": 3,                                          # or a list of seeds
     "grid": {"trpo.target_kl": [0.1, 0.5], "dynamics.num_active": [1, 3, 5]},
     # or "points": [{"trpo.target_kl": 0.1, ...}, ...]   (explicit points)
     # or "random": {"num_points": 8, "seed": 0, "space": {
     #        "trpo.target_kl": ("log_uniform", 0.01, 0.5), "trpo.lam": ("choice", [0.9, 0.95])}}
     "outer": {"imagine.horizon": [50, 100]}}             # optional: shape-changing fields

Every run of one *outer* value shares one :class:`~bremen_jax.config.StaticConfig`, so its runs
(points x seeds, point-major) are one ``jit(vmap(train))`` program over a leading ``[R]`` runs axis
of seeds and :class:`~bremen_jax.config.HParams`, compiled once (AOT) and sharded over a
``Mesh(devices, ("runs",))`` with ``NamedSharding(mesh, P("runs"))``. ``R`` is padded to a
multiple of the device count by repeating the last run; padded rows are dropped from the results
and counted in ``sweep.json``. Ensemble size is sweepable without recompiling through
``dynamics.num_active`` (members ``>= num_active`` are masked out of fitting and never drawn in
rollouts); ``dynamics.num_members`` is the static maximum. Fields that set shapes or trip counts
go in ``outer``: one compile per value.

Before compiling, the run state (``jax.eval_shape(phases.init)``, the buffer dominates) times the
runs per device is checked against the free memory; after compiling, the program's
``memory_analysis()`` is checked too (:class:`SweepMemoryError`).

Sweep files and specs are parsed in :mod:`bremen_jax.sweep.spec`, rows / summary / plots are
made in :mod:`bremen_jax.sweep.report`; this module holds devices, memory, the compiled program
and :func:`run_sweep`.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import pathlib
import time
import warnings
from typing import Any, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bremen_jax import config as config_lib
from bremen_jax.algo.phases import Phases
from bremen_jax.algo.schedule import Schedule, make_continue
from bremen_jax.envs import registry
from bremen_jax.run.compile import compile_cached
from bremen_jax.run.lock import LOCK_NAME, WorkdirLock
from bremen_jax.run.workdir import claim_workdir
from bremen_jax.sweep import report
from bremen_jax.sweep.offline import OfflineData, load_offline_data, plan_phases
from bremen_jax.sweep.spec import (OuterPlan, SweepError, SweepSpec, build_plans, jsonable,
                                   load_sweep, parse_sweep)
from bremen_jax.types import Transition

__all__ = ["OuterPlan", "SweepError", "SweepExistsError", "SweepMemoryError", "SweepResult",
           "SweepSpec", "available_memory_bytes", "build_plans", "compile_sweep",
           "estimate_memory", "execute_plan", "initialize_distributed", "load_sweep",
           "make_runs_mesh", "make_sweep_program", "padded_size", "parse_sweep",
           "run_state_bytes", "run_sweep"]

PROGRAM_NAME = "bremen_sweep"   # the jitted program's name (compile logs / monitoring events)
_BARRIERS = itertools.count()   # barrier names: every process calls them in the same order
STATE_COPIES = 2                # pre-compile estimate: the scan carries the state in and out


class SweepExistsError(FileExistsError):
    """The sweep directory already holds files (refused so that nothing there is lost)."""


class SweepMemoryError(MemoryError, ValueError):
    """The sweep will not fit in device memory (raised before compiling or running it)."""


# ------------------------------------------------------------------------ devices and sharding
def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           local_device_ids: Sequence[int] | None = None) -> tuple[int, int]:
    """``jax.distributed.initialize`` for multi-host sweeps (call before any other JAX use).

    Arguments left ``None`` come from ``JAX_COORDINATOR_ADDRESS`` (host:port of process 0),
    ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID`` and ``JAX_LOCAL_DEVICE_IDS`` when set, else from
    JAX's cluster auto-detection (Cloud TPU pod slices, SLURM, Open MPI, Kubernetes). Every
    process then runs the same :func:`run_sweep`; the mesh spans ``jax.devices()`` (all hosts)
    and only process 0 writes files. Returns ``(process_index, process_count)``.
    """
    if not jax.distributed.is_initialized():
        env = os.environ
        if num_processes is None and env.get("JAX_NUM_PROCESSES"):
            num_processes = int(env["JAX_NUM_PROCESSES"])
        if process_id is None and env.get("JAX_PROCESS_ID"):
            process_id = int(env["JAX_PROCESS_ID"])
        kwargs = {k: v for k, v in dict(coordinator_address=coordinator_address,
                                        num_processes=num_processes, process_id=process_id,
                                        local_device_ids=local_device_ids).items()
                  if v is not None}
        jax.distributed.initialize(**kwargs)
    return jax.process_index(), jax.process_count()


def wait_for_all_processes(name: str, timeout_s: float = 3600.0) -> None:
    """A barrier of the distributed runtime's coordination service (no device collective).

    Each process compiles (or loads from its cache) the sweep program at its own pace; the program's
    first collective must then start in every process within gloo's 30 s, so the processes
    meet here first. Nothing to do in a one-process run.
    """
    if jax.process_count() == 1:
        return
    from jax._src import distributed

    client = distributed.global_state.client
    if client is not None:
        client.wait_at_barrier(name, int(timeout_s * 1000))


def make_runs_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh ``("runs",)`` over ``devices`` (default: every device of every process)."""
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("devices: expected at least one device")
    return Mesh(np.asarray(devices), ("runs",))


def padded_size(num_runs: int, num_devices: int) -> int:
    """The smallest multiple of ``num_devices`` >= ``num_runs``."""
    if num_runs <= 0 or num_devices <= 0:
        raise ValueError(f"num_runs and num_devices must be > 0, got {num_runs}, {num_devices}")
    return -(-num_runs // num_devices) * num_devices


def pad_runs(tree: Any, size: int) -> Any:
    """Pads every ``[R, ...]`` NumPy leaf to ``[size, ...]`` by repeating the last run."""
    def pad(x):
        x = np.asarray(x)
        return np.concatenate([x, np.repeat(x[-1:], size - x.shape[0], axis=0)])
    return jax.tree.map(pad, tree)


def _global_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global ``[R_pad, ...]`` array sharded over runs; each process fills its own shards."""
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def local_runs(tree: Any, num_runs: int) -> list[int]:
    """The real runs (padding excluded) whose results this process's devices computed."""
    leaf = jax.tree.leaves(tree)[0]
    rows = {i for s in leaf.addressable_shards for i in range(*s.index[0].indices(leaf.shape[0]))}
    return sorted(i for i in rows if i < num_runs)


def _gather(tree: Any) -> Any:
    """Device results -> NumPy on every process (``process_allgather`` across hosts)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.tree.map(np.asarray, jax.device_get(tree))


# ------------------------------------------------------------------------ memory
def tree_nbytes(tree: Any) -> int:
    """Bytes of a pytree of arrays or ``ShapeDtypeStruct``s (typed keys: their key data)."""
    return int(sum(int(np.prod(x.shape)) * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def run_state_bytes(phases: Phases) -> int:
    """Bytes of one run's ``RunState`` (buffer, ensemble + Adam, policies), no compile."""
    return tree_nbytes(jax.eval_shape(phases.init, jax.eval_shape(jax.random.key, 0)))


def available_memory_bytes(devices: Sequence[jax.Device]) -> tuple[int | None, str]:
    """Free memory per device and where the number comes from; ``None`` when unknown.

    GPU/TPU: the smallest ``bytes_limit - bytes_in_use`` of ``device.memory_stats()``. CPU: the
    host's ``MemAvailable`` (``/proc/meminfo``) divided by the local devices (they share it).
    """
    local = [d for d in devices if d.process_index == jax.process_index()] or list(devices)
    if local[0].platform == "cpu":
        try:
            for line in pathlib.Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    kib = int(line.split()[1])
                    return kib * 1024 // len(local), f"MemAvailable / {len(local)} cpu device(s)"
        except OSError:
            pass
        return None, "unknown (no /proc/meminfo)"
    free = []
    for d in local:
        stats = d.memory_stats() or {}
        if "bytes_limit" in stats:
            free.append(stats["bytes_limit"] - stats.get("bytes_in_use", 0))
    if not free:
        return None, "unknown (device reports no memory_stats)"
    return min(free), f"{local[0].platform} memory_stats bytes_limit - bytes_in_use"


def check_memory(need: int, devices: Sequence[jax.Device], what: str, runs_per_device: int) -> dict:
    """Raises :class:`SweepMemoryError` when ``need`` bytes per device exceed the free memory."""
    avail, source = available_memory_bytes(devices)
    if avail is not None and need > avail:
        raise SweepMemoryError(
            f"the sweep needs about {report.fmt_bytes(need)} per device ({what}) but "
            f"{report.fmt_bytes(avail)} is free ({source}); use fewer runs per device (now "
            f"{runs_per_device}: fewer seeds or points, or split the sweep with 'outer') or "
            f"more devices")
    return {"need_bytes": int(need), "available_bytes": avail, "source": source}


# ------------------------------------------------------------------------ the compiled program
def make_sweep_program(phases: Phases, num_deployments: int | None = None,
                       offline: bool = False):
    """``bremen_sweep(seeds [R] int32, hp: HParams [R]) -> metrics`` (leaves ``[R, K, ...]``):
    :func:`~bremen_jax.algo.schedule.make_train`'s ``train`` over the runs (``jax.vmap`` of the
    state's init, then of the deployments) with ``key = jax.random.key(seed)`` made inside the
    program (so the inputs are plain arrays).

    ``offline``: ``bremen_sweep(seeds, hp, data)`` where ``data`` (flat ``[N, ...]``
    :class:`~bremen_jax.types.Transition`, not batched) fills every run's buffer and each run is
    offline BREMEN's one deployment (:class:`~bremen_jax.algo.schedule.Schedule` ``offline``):
    metric leaves ``[R, 1, ...]``, as the host driver's :func:`bremen_jax.run.run_offline`.
    """
    # The runs' states are made by one vmap and run by another, so every leaf of the state the
    # deployment scan carries is batched from its first step: vmapping init and run together
    # leaves the seed-independent leaves (zero buffers, counters, the fixed-seed policy init)
    # unbatched at the scan's entry, and JAX then batches the whole deployment body twice to
    # find its fixpoint (and every scan nested in it again): ~2x the tracing time.
    if offline:
        if num_deployments not in (None, 1):
            raise ValueError(f"an offline sweep has one deployment, got {num_deployments}")
        schedule = Schedule(phases, offline=True)
        run = make_continue(schedule, 1)

        def bremen_sweep(seeds, hp, data):  # noqa: F811 - the program's name, either way
            states = jax.vmap(lambda seed: schedule.init(jax.random.key(seed), data))(seeds)
            return jax.vmap(lambda state, hp: run(state, hp)[1])(states, hp)

        return bremen_sweep

    schedule = Schedule(phases)
    run = make_continue(schedule, num_deployments or schedule.num_deployments)

    def bremen_sweep(seeds, hp):
        states = jax.vmap(lambda seed: schedule.init(jax.random.key(seed)))(seeds)
        return jax.vmap(lambda state, hp: run(state, hp)[1])(states, hp)

    return bremen_sweep


def compile_sweep(phases: Phases, mesh: Mesh, hp: config_lib.HParams, num_runs_padded: int,
                  num_deployments: int | None = None, data: Transition | None = None
                  ) -> tuple[Any, float, bool]:
    """AOT ``jit(program).lower().compile()`` with the runs axis sharded over ``mesh``, through
    the one compile cache (:func:`bremen_jax.run.compile.compile_cached`; keyed by the static
    config, deployments, devices and the argument shapes): ``(compiled, seconds, was_cached)``.
    ``data`` (offline: the dataset, or its ``ShapeDtypeStruct`` s) is replicated on every device.
    On a built-in task the executable is also stored with the persistent cache (``persist``), so
    a second process with the same sweep loads it without tracing (15 of the ``test`` sweep's 20
    warm compile seconds were tracing it, 2-core CPU).
    """
    runs = NamedSharding(mesh, PartitionSpec("runs"))
    hp_abs = jax.tree.map(lambda x: jax.ShapeDtypeStruct((num_runs_padded,), np.asarray(x).dtype),
                          hp)
    seeds_abs = jax.ShapeDtypeStruct((num_runs_padded,), np.int32)
    offline = data is not None
    key = ("sweep", phases.static, num_deployments, tuple(d.id for d in mesh.devices.flat),
           offline, phases.capacity, phases.max_segments, phases.task.name)
    args, shardings = (seeds_abs, hp_abs), (runs, runs)
    if offline:
        args += (jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), data),)
        shardings += (NamedSharding(mesh, PartitionSpec()),)
    exe = compile_cached(key, make_sweep_program(phases, num_deployments, offline), *args,
                         precision=phases.static.precision, in_shardings=shardings,
                         effort=phases.static.compile_effort,
                         persist=registry.is_builtin(phases.task.name), out_shardings=runs)
    return exe.fn, 0.0 if exe.cached else exe.seconds, exe.cached


def compiled_bytes(compiled) -> int | None:
    """Per-device bytes of a compiled program (arguments + outputs + temporaries - aliased)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        return None
    if m is None:
        return None
    return int(m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
               - m.alias_size_in_bytes + m.generated_code_size_in_bytes)


def estimate_memory(plan: OuterPlan, mesh: Mesh, phases: Phases | None = None,
                    data: OfflineData | None = None) -> dict:
    """The pre-compile check: runs per device x run state x ``STATE_COPIES`` (+ the offline
    dataset, once) against the free memory (raises :class:`SweepMemoryError`). Cheap:
    ``eval_shape`` only, nothing compiled."""
    devices = list(mesh.devices.flat)
    per_dev = padded_size(plan.num_runs, len(devices)) // len(devices)
    state_b = run_state_bytes(phases or plan_phases(plan, data))
    data_b = 0 if data is None else tree_nbytes(data.batch)
    info = check_memory(per_dev * STATE_COPIES * state_b + data_b, devices,
                        f"{per_dev} runs x {report.fmt_bytes(state_b)} run state x "
                        f"{STATE_COPIES}"
                        + ("" if data is None else f" + {report.fmt_bytes(data_b)} dataset")
                        + ", estimated before compiling", per_dev)
    return {**info, "run_state_bytes": state_b}


def execute_plan(plan: OuterPlan, mesh: Mesh, num_deployments: int | None = None, log=None,
                 data: OfflineData | None = None) -> tuple[Any, dict]:
    """Checks memory, compiles (once) and runs one outer value (offline on ``data`` when given).
    Returns (metrics with NumPy leaves ``[R, ...]`` (padding dropped), info: timings, padding,
    memory)."""
    devices = list(mesh.devices.flat)
    n_dev, R = len(devices), plan.num_runs
    R_pad = padded_size(R, n_dev)
    per_dev = R_pad // n_dev
    phases = plan_phases(plan, data)
    pre = estimate_memory(plan, mesh, phases, data)
    compiled, compile_s, cached = compile_sweep(phases, mesh, plan.hp, R_pad, num_deployments,
                                                None if data is None else data.batch)
    need = compiled_bytes(compiled)
    post = None if need is None else check_memory(
        need, devices, f"{per_dev} runs, the compiled program's memory_analysis()", per_dev)
    runs = NamedSharding(mesh, PartitionSpec("runs"))
    seeds = _global_array(pad_runs(plan.seeds, R_pad), runs)
    hp = jax.tree.map(lambda x: _global_array(x, runs), pad_runs(plan.hp, R_pad))
    args = (seeds, hp)
    if data is not None:
        everywhere = NamedSharding(mesh, PartitionSpec())
        args += (jax.tree.map(lambda x: _global_array(np.asarray(x), everywhere), data.batch),)
    wait_for_all_processes(f"bremen_sweep_compiled_{next(_BARRIERS)}")
    t0 = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    run_s = time.perf_counter() - t0
    metrics = jax.tree.map(lambda x: x[:R], _gather(out))
    info = {"outer": plan.index, "values": jsonable(plan.values), "runs": R,
            "padded_runs": R_pad - R, "devices": n_dev, "runs_per_device": per_dev,
            "process": jax.process_index(), "process_runs": local_runs(out, R),
            "compile_s": round(compile_s, 3), "compile_cached": cached, "run_s": round(run_s, 3),
            "runs_per_hour": R / run_s * 3600 if run_s > 0 else None,
            "memory_estimate": pre, "memory_compiled": post}
    if log is not None:
        where = "" if jax.process_count() == 1 else (
            f" (process {jax.process_index()} of {jax.process_count()}: runs "
            f"{','.join(map(str, info['process_runs']))})")
        log(f"outer {plan.index + 1}: {R} runs (+{R_pad - R} padding) on {n_dev} "
            f"{devices[0].platform} device(s){where}: compile {compile_s:.1f} s"
            f"{' (cached)' if cached else ''}, run {run_s:.1f} s")
    return metrics, info


# ------------------------------------------------------------------------ the entry point
@dataclasses.dataclass
class SweepResult:
    """Rows (one per real run), the summary, per-outer timings and metrics (``[R, ...]``)."""

    workdir: pathlib.Path
    rows: list[dict]
    summary: dict
    timings: list[dict]
    metrics: list[Any]
    spec: SweepSpec


def check_new_sweep_dir(workdir: str | pathlib.Path) -> None:
    """Refuses a directory that holds files (a lock file alone is another sweep's: the lock then
    names it); a path through a regular file is refused by :func:`claim_workdir`."""
    w = pathlib.Path(workdir)
    if w.is_dir() and any(p.name != LOCK_NAME for p in w.iterdir()):
        raise SweepExistsError(f"sweep directory {workdir} exists and is not empty; choose a new "
                               f"--workdir (nothing there was changed)")


def claim_sweep_dir(workdir: str | pathlib.Path) -> WorkdirLock:
    """Creates the sweep directory and takes its lock (before compiling): an unwritable path, a
    directory in use by another sweep or run, or one that holds files is refused in one line."""
    check_new_sweep_dir(workdir)
    lock = claim_workdir(workdir)
    try:
        check_new_sweep_dir(workdir)  # again, holding the lock
    except BaseException:
        lock.release()
        raise
    return lock


def device_info(mesh: Mesh) -> dict:
    d = mesh.devices.flat[0]
    return {"platform": d.platform, "device_kind": getattr(d, "device_kind", "unknown"),
            "num_devices": int(mesh.size), "process_count": jax.process_count(),
            "mesh": {"runs": int(mesh.size)}, "jax_version": jax.__version__}


def run_sweep(sweep: Any, workdir: str | pathlib.Path, *, overrides: Sequence[str] = (),
              devices: Sequence[jax.Device] | None = None, console=None,
              num_deployments: int | None = None, dataset: str | pathlib.Path | None = None,
              max_rows: int | None = None) -> SweepResult:
    """Runs a sweep and writes its files in ``workdir`` (process 0 only).

    With ``dataset`` every run is offline BREMEN on that dataset (its first ``max_rows`` rows):
    the same runs as ``bremen offline`` with each seed and point, vmapped as one program; the rows'
    ``return_d1`` is the last iterate's return, ``bc_return_d1`` the clone's, and ``sweep.json``
    and the summary name the dataset and its behaviour return.

    Args:
        sweep: sweep file path, name in :mod:`bremen_jax.configs.sweeps`, module or ``(cfg, spec)``.
        workdir: new or empty directory; gets sweep.json, runs.csv/.jsonl, summary.json/.md,
            metrics_outer<i>.npz and plots/.
        overrides: ``"field=value"`` for the base config (not for swept fields).
        devices: devices of the runs mesh (default: all, every process).
        console: ``rich.console.Console`` for progress and the summary table; None = silent.
        num_deployments: run only the first K' deployments of each run (benchmarks).
        dataset, max_rows: offline sweep (see above).
    Raises:
        SweepError / ConfigError (bad sweep), SweepExistsError, SweepMemoryError, RunDirError
        (a directory that cannot be written), WorkdirLocked (in use by another sweep or run).
    """
    cfg, spec = load_sweep(sweep, overrides)
    check_new_sweep_dir(workdir)
    plans = build_plans(cfg, spec)
    data = None if dataset is None else load_offline_data(plans, dataset, max_rows)
    mesh = make_runs_mesh(devices)
    for plan in plans:  # every outer value's memory estimate before compiling or writing
        estimate_memory(plan, mesh, data=data)
    lock = claim_sweep_dir(workdir) if jax.process_index() == 0 else None
    try:
        return _run_plans(sweep, cfg, spec, plans, mesh, pathlib.Path(workdir), overrides,
                          console, num_deployments, data)
    finally:
        if lock is not None:
            lock.release()


def _run_plans(sweep, cfg, spec: SweepSpec, plans: list[OuterPlan], mesh: Mesh,
               workdir: pathlib.Path, overrides: Sequence[str], console,
               num_deployments: int | None, data: OfflineData | None = None) -> SweepResult:
    """Compiles and runs every outer value in turn, writing the files (process 0)."""
    if "dynamics.num_active" in spec.fields and not jax.config.jax_threefry_partitionable:
        warnings.warn("jax_threefry_partitionable is off: members 0..k-1 of a masked ensemble "
                      "then get other random keys than a k-member ensemble (results are still "
                      "valid, but not equal to runs built with exactly k members)")
    writer = jax.process_index() == 0
    meta = {"config": json.loads(cfg.to_json()), "sweep": spec.raw, "seeds": list(spec.seeds),
            "points": jsonable(list(spec.points)), "outer": jsonable(list(spec.outer)),
            "device": device_info(mesh), "overrides": list(overrides),
            "num_deployments": num_deployments,
            "offline": None if data is None else data.info(), "source": str(getattr(sweep, "__file__", sweep))
            if not isinstance(sweep, tuple) else "(cfg, spec)"}
    if writer:
        report.write_json(workdir / "sweep.json", {**meta, "finished": False})
    log = console.print if console is not None else None
    rows, timings, metrics = [], [], []
    for plan in plans:
        m, info = execute_plan(plan, mesh, num_deployments, log, data)
        metrics.append(m)
        timings.append(info)
        rows += report.run_rows(plan, spec, m, offset=len(rows))
        if writer:
            report.write_metrics(workdir / f"metrics_outer{plan.index}.npz", m, plan)
    summary = report.summarize(rows, spec, timings,
                               offline=None if data is None else data.info())
    if writer:
        report.write_json(workdir / "sweep.json", {**meta, "finished": True, "timings": timings})
        report.write_outputs(workdir, rows, summary)
        if console is not None:
            report.print_summary(summary, console)
    return SweepResult(workdir=workdir, rows=rows, summary=summary, timings=timings,
                       metrics=metrics, spec=spec)
