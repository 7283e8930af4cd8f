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
made in :mod:`bremen_jax.sweep.report`, devices, padding and free memory are in
:mod:`bremen_jax.sweep.devices`, what a resumed sweep must match in :mod:`bremen_jax.sweep.resume`;
this module holds the memory estimate, the compiled program and :func:`run_sweep`, which with
``checkpoint_every`` runs an outer value as calls of k deployments (:func:`make_sweep_init`,
:func:`make_sweep_continue`) with every run's state checkpointed between them, and with
``resume`` continues an interrupted sweep.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import pathlib
import shutil
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
from bremen_jax.run.checkpoint import CheckpointError, Checkpointer
from bremen_jax.run.compile import compile_cached
from bremen_jax.run.lock import LOCK_NAME, WorkdirLock
from bremen_jax.run.workdir import claim_workdir
from bremen_jax.sweep import report
from bremen_jax.sweep.devices import (check_memory, gather, global_array, local_runs,
                                      make_runs_mesh, pad_runs, padded_size, run_state_bytes,
                                      tree_nbytes, wait_for_all_processes)
from bremen_jax.sweep.offline import OfflineData, load_offline_data, plan_phases
from bremen_jax.sweep.resume import CHECKPOINTS, check_same_sweep, read_unfinished
from bremen_jax.sweep.spec import (OuterPlan, SweepError, SweepSpec, build_plans, jsonable,
                                   load_sweep)
from bremen_jax.types import Transition

__all__ = ["PROGRAM_NAME", "STATE_COPIES", "SweepExistsError", "SweepResult", "compile_sweep",
           "compile_sweep_steps", "estimate_memory", "execute_plan", "make_sweep_continue",
           "make_sweep_init", "make_sweep_program", "run_sweep"]

PROGRAM_NAME = "bremen_sweep"   # the jitted program's name (compile logs / monitoring events)
_BARRIERS = itertools.count()   # barrier names: every process calls them in the same order
STATE_COPIES = 2                # pre-compile estimate: the scan carries the state in and out


class SweepExistsError(FileExistsError):
    """The sweep directory already holds files (refused so that nothing there is lost)."""


# ------------------------------------------------------------------------ the compiled program
def make_sweep_init(phases: Phases, offline: bool = False):
    """``bremen_sweep_init(seeds [R] int32[, data]) -> states``: every run's initial ``RunState``
    (leaves ``[R, ...]``), ``key = jax.random.key(seed)`` made inside the program (so the inputs
    are plain arrays); ``offline``: ``data`` (flat ``[N, ...]`` :class:`Transition`) fills every
    run's buffer."""
    schedule = Schedule(phases, offline=offline)
    if offline:
        def bremen_sweep_init(seeds, data):
            return jax.vmap(lambda seed: schedule.init(jax.random.key(seed), data))(seeds)
    else:
        def bremen_sweep_init(seeds):
            return jax.vmap(lambda seed: schedule.init(jax.random.key(seed)))(seeds)
    return bremen_sweep_init


def make_sweep_continue(phases: Phases, num_deployments: int, offline: bool = False):
    """``bremen_sweep_continue(states, hp: HParams [R]) -> (states, metrics)``: the next
    ``num_deployments`` deployments of every run (:func:`~bremen_jax.algo.schedule.make_continue`
    vmapped); metric leaves ``[R, num_deployments, ...]``."""
    run = make_continue(Schedule(phases, offline=offline), num_deployments)

    def bremen_sweep_continue(states, hp):
        return jax.vmap(run)(states, hp)

    return bremen_sweep_continue


def make_sweep_program(phases: Phases, num_deployments: int | None = None,
                       offline: bool = False):
    """``bremen_sweep(seeds [R] int32, hp: HParams [R]) -> metrics`` (leaves ``[R, K, ...]``):
    :func:`make_sweep_init` then :func:`make_sweep_continue` over all ``K`` deployments, one
    program (:func:`~bremen_jax.algo.schedule.make_train`'s ``train`` over the runs).

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
    if offline and num_deployments not in (None, 1):
        raise ValueError(f"an offline sweep has one deployment, got {num_deployments}")
    k = 1 if offline else num_deployments or Schedule(phases).num_deployments
    init, run = make_sweep_init(phases, offline), make_sweep_continue(phases, k, offline)
    if offline:
        def bremen_sweep(seeds, hp, data):  # noqa: F811 - the program's name, either way
            return run(init(seeds, data), hp)[1]
    else:
        def bremen_sweep(seeds, hp):
            return run(init(seeds), hp)[1]
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


def _plain(tree: Any) -> Any:
    """``ShapeDtypeStruct`` s without sharding or layout (from a compiled program's
    ``out_info``)."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def compile_sweep_steps(phases: Phases, mesh: Mesh, hp: config_lib.HParams, num_runs_padded: int,
                        chunks: Sequence[int]) -> tuple[Any, dict[int, Any], float, bool]:
    """The checkpointed sweep's programs (online): ``bremen_sweep_init`` and one
    ``bremen_sweep_continue`` per chunk length in ``chunks`` (state donated), sharded and cached
    like :func:`compile_sweep`: ``(init, {length: continue}, seconds, all_cached)``. Their
    ``out_info`` give the states' and metrics' shapes."""
    runs = NamedSharding(mesh, PartitionSpec("runs"))
    hp_abs = jax.tree.map(lambda x: jax.ShapeDtypeStruct((num_runs_padded,), np.asarray(x).dtype),
                          hp)
    seeds_abs = jax.ShapeDtypeStruct((num_runs_padded,), np.int32)
    key = ("sweep", phases.static, tuple(d.id for d in mesh.devices.flat), phases.capacity,
           phases.max_segments, phases.task.name)
    opts = dict(precision=phases.static.precision, effort=phases.static.compile_effort,
                persist=registry.is_builtin(phases.task.name), out_shardings=runs)
    init = compile_cached(key + ("init",), make_sweep_init(phases), seeds_abs,
                          in_shardings=(runs,), **opts)
    states_abs = _plain(init.fn.out_info)
    steps, seconds, cached = {}, 0.0 if init.cached else init.seconds, init.cached
    for n in sorted(set(chunks)):
        exe = compile_cached(key + ("continue", n), make_sweep_continue(phases, n), states_abs,
                             hp_abs, in_shardings=(runs, runs), donate_argnums=0, **opts)
        steps[n] = exe.fn
        seconds += 0.0 if exe.cached else exe.seconds
        cached = cached and exe.cached
    return init.fn, steps, seconds, cached


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
                 data: OfflineData | None = None, checkpoints: Checkpointer | None = None,
                 every: int = 1, partial: pathlib.Path | None = None) -> tuple[Any, dict]:
    """Checks memory, compiles (once) and runs one outer value (offline on ``data`` when given).
    Returns (metrics with NumPy leaves ``[R, ...]`` (padding dropped), info: timings, padding,
    memory).

    With ``checkpoints`` (online only; one process) the runs go ``every`` deployments per call
    (:func:`compile_sweep_steps`) and after each call but the last every run's state and the
    metrics so far are saved there; when it already holds a checkpoint the runs continue from its
    newest intact one (same numbers as running through: the same programs, the same states).
    With ``partial`` as well, the metrics of the deployments done so far (``[R, done, ...]``) are
    written there (:func:`report.write_metrics`) before each checkpoint, so that an interrupted
    outer value can be looked at (``experiments.learning_details``) without its checkpoint.
    """
    devices = list(mesh.devices.flat)
    n_dev, R = len(devices), plan.num_runs
    R_pad = padded_size(R, n_dev)
    per_dev = R_pad // n_dev
    phases = plan_phases(plan, data)
    pre = estimate_memory(plan, mesh, phases, data)
    chunked = checkpoints is not None and data is None
    if chunked:
        K = num_deployments or Schedule(phases).num_deployments
        every = max(1, min(every, K))
        init, steps, compile_s, cached = compile_sweep_steps(phases, mesh, plan.hp, R_pad,
                                                             (every, K % every or every))
        sizes = [compiled_bytes(f) for f in steps.values()]
        need = None if None in sizes else max(sizes)
    else:
        compiled, compile_s, cached = compile_sweep(phases, mesh, plan.hp, R_pad,
                                                    num_deployments,
                                                    None if data is None else data.batch)
        need = compiled_bytes(compiled)
    post = None if need is None else check_memory(
        need, devices, f"{per_dev} runs, the compiled program's memory_analysis()", per_dev)
    runs = NamedSharding(mesh, PartitionSpec("runs"))
    seeds = global_array(pad_runs(plan.seeds, R_pad), runs)
    hp = jax.tree.map(lambda x: global_array(x, runs), pad_runs(plan.hp, R_pad))
    args = (seeds, hp)
    if data is not None:
        everywhere = NamedSharding(mesh, PartitionSpec())
        args += (jax.tree.map(lambda x: global_array(np.asarray(x), everywhere), data.batch),)
    wait_for_all_processes(f"bremen_sweep_compiled_{next(_BARRIERS)}")
    t0 = time.perf_counter()
    extra = {}
    if chunked:
        out, extra = _run_chunks(plan, phases, mesh, R_pad, init, steps, seeds, hp, K, every,
                                 checkpoints, log, partial, compile_s)
        compile_s += extra.pop("compile_s")
        run_s = extra["run_s"]
    else:
        out = jax.block_until_ready(compiled(*args))
        run_s = time.perf_counter() - t0
    metrics = jax.tree.map(lambda x: x[:R], gather(out))
    info = {"outer": plan.index, "values": jsonable(plan.values), "runs": R,
            "padded_runs": R_pad - R, "devices": n_dev, "runs_per_device": per_dev,
            "process": jax.process_index(),
            "process_runs": list(range(R)) if chunked else local_runs(out, R),
            "compile_s": round(compile_s, 3), "compile_cached": cached, "run_s": round(run_s, 3),
            "runs_per_hour": R / run_s * 3600 if run_s > 0 else None,
            "memory_estimate": pre, "memory_compiled": post, **extra}
    if log is not None:
        where = "" if jax.process_count() == 1 else (
            f" (process {jax.process_index()} of {jax.process_count()}: runs "
            f"{','.join(map(str, info['process_runs']))})")
        log(f"outer {plan.index + 1}: {R} runs (+{R_pad - R} padding) on {n_dev} "
            f"{devices[0].platform} device(s){where}: compile {compile_s:.1f} s"
            f"{' (cached)' if cached else ''}, run {run_s:.1f} s")
    return metrics, info


def _run_chunks(plan: OuterPlan, phases: Phases, mesh: Mesh, R_pad: int, init, steps: dict,
                seeds, hp, K: int, every: int, checkpoints: Checkpointer, log,
                partial: pathlib.Path | None = None,
                call_compile_s: float = 0.0) -> tuple[Any, dict]:
    """:func:`execute_plan`'s checkpointed loop: ``(metrics [R_pad, K, ...] as device or NumPy
    arrays, info)``; a checkpoint holds ``{"runs": states, "metrics": metrics}`` (the metrics of
    deployments not run yet are zeros) at step = deployments done, and in its metadata the time
    taken so far by every call that led to it (``extra["history"]``: ``compile_s`` per call,
    ``chunk_s`` = ``[deployments done after the chunk, seconds]`` per chunk), so that a resumed
    outer value reports the time of the calls before it (``info["history"]``, all calls, and
    ``info["earlier_s"]``: the earlier calls' compile + chunk seconds, None where a checkpoint
    without this record began the chain: ``history["unrecorded"]`` deployments)."""
    runs = NamedSharding(mesh, PartitionSpec("runs"))
    states_abs = _plain(init.out_info)
    metrics_abs = jax.tree.map(lambda x: jax.ShapeDtypeStruct((x.shape[0], K) + x.shape[2:],
                                                              x.dtype),
                               _plain(steps[every].out_info[1]))
    done, compile_s, ckpt_s, run_s, saved = 0, 0.0, 0.0, 0.0, 0
    info: dict[str, Any] = {"checkpoint_every": every}
    history: dict[str, list] = {"compile_s": [], "chunk_s": []}
    resuming = checkpoints.latest_step() is not None
    if resuming:
        with contextlib.suppress(CheckpointError):  # a damaged one: restore_intact says so
            was = checkpoints.read_meta()["extra"].get("padded_runs")
            if was is not None and was != R_pad:
                raise SweepError(
                    f"cannot resume outer value {plan.index}: its checkpoint "
                    f"({checkpoints.directory}) holds {was} runs with padding, this call "
                    f"{R_pad} on {mesh.size} device(s); resume on the device count the sweep "
                    f"began with (--num-devices)")
        t = time.perf_counter()
        tree, meta, skipped = checkpoints.restore_intact({"runs": states_abs,
                                                          "metrics": metrics_abs})
        done = int(meta["position"]["deployments"])
        old = meta.get("extra", {}).get("history")  # None: a checkpoint written before 12-07
        # "unrecorded": how many deployments ran in calls whose time no checkpoint holds
        history = old if old is not None else {**history, "unrecorded": done}  # fresh JSON
        info["earlier_s"] = None if history.get("unrecorded") else round(
            sum(history["compile_s"]) + sum(s for _, s in history["chunk_s"]), 3)
        states = jax.tree.map(lambda x: jax.device_put(x, runs), tree["runs"])
        metrics = jax.tree.map(np.array, tree["metrics"])
        ckpt_s += time.perf_counter() - t
        info["resumed_after_deployment"] = done
        if log is not None:
            for line in skipped:
                log(f"outer {plan.index + 1}: skipped a damaged checkpoint: {line}")
            log(f"outer {plan.index + 1}: continuing after deployment {done} of {K} "
                f"({checkpoints.directory})")
        if (K - done) % every:
            more = compile_sweep_steps(phases, mesh, plan.hp, R_pad, ((K - done) % every,))
            steps, compile_s = {**steps, **more[1]}, more[2]
    history["compile_s"].append(round(call_compile_s + compile_s, 3))
    if not resuming:
        t = time.perf_counter()
        states = init(seeds)
        metrics = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), metrics_abs)
        run_s += time.perf_counter() - t
    while done < K:
        n = min(every, K - done)
        t = time.perf_counter()
        states, m = steps[n](states, hp)
        m = gather(m)
        call_s = time.perf_counter() - t
        run_s += call_s
        for full, part in zip(jax.tree.leaves(metrics), jax.tree.leaves(m)):
            full[:, done:done + n] = part
        done += n
        history["chunk_s"].append([done, round(call_s, 3)])
        if done < K:
            t = time.perf_counter()
            if partial is not None:  # the deployments done, readable without the checkpoint
                report.write_metrics(partial, jax.tree.map(
                    lambda x: x[:plan.num_runs, :done], metrics), plan)
            checkpoints.save(done, {"runs": states, "metrics": metrics},
                             position={"outer": plan.index, "deployments": done},
                             extra={"padded_runs": R_pad, "devices": int(mesh.size),
                                    "history": history})
            ckpt_s += time.perf_counter() - t
            saved += 1
        if log is not None:
            log(f"outer {plan.index + 1}: deployment {done} of {K} done in {call_s:.1f} s, "
                f"{report.progress_text(m, plan.num_runs)}"
                + (", checkpoint saved" if done < K else ""))
    info.update(run_s=run_s, checkpoint_s=round(ckpt_s, 3), checkpoints_saved=saved,
                compile_s=compile_s, history=history)
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
              max_rows: int | None = None, checkpoint_every: int | None = None,
              resume: bool = False) -> SweepResult:
    """Runs a sweep and writes its files in ``workdir`` (process 0 only).

    With ``dataset`` every run is offline BREMEN on that dataset (its first ``max_rows`` rows):
    the same runs as ``bremen offline`` with each seed and point, vmapped as one program; the rows'
    ``return_d1`` is the last iterate's return, ``bc_return_d1`` the clone's, and ``sweep.json``
    and the summary name the dataset and its behaviour return.

    Faults: each outer value's metrics are written as soon as it ends, and ``sweep.json`` records
    the outer values done. With ``checkpoint_every = k`` (online sweeps) an outer value runs ``k``
    deployments per compiled call and every run's state is checkpointed after each call (orbax,
    checksummed, in ``checkpoints/outer<i>``; removed once the outer value is done), the metrics
    of the deployments done before it (``metrics_outer<i>.partial.npz``, likewise). ``resume``
    continues an interrupted sweep in ``workdir``: outer values done are read back, the others
    continue from their newest intact checkpoint (or start again), with the same numbers as a
    sweep that ran through with the same ``checkpoint_every``; the sweep file, overrides, dataset
    and ``num_deployments`` must be the same (a one-line :class:`SweepError` names what differs).
    A finished sweep is read back without compiling.

    Args:
        sweep: sweep file path, name in :mod:`bremen_jax.configs.sweeps`, module or ``(cfg, spec)``.
        workdir: new or empty directory (or, with ``resume``, an interrupted sweep's); gets
            sweep.json, runs.csv/.jsonl, summary.json/.md, metrics_outer<i>.npz and plots/.
        overrides: ``"field=value"`` for the base config (not for swept fields).
        devices: devices of the runs mesh (default: all, every process).
        console: ``rich.console.Console`` for progress and the summary table; None = silent.
        num_deployments: run only the first K' deployments of each run (benchmarks).
        dataset, max_rows: offline sweep (see above).
        checkpoint_every: deployments per compiled call between checkpoints (None: one call per
            outer value, no checkpoint; ignored offline, one deployment). One process only.
        resume: continue the sweep in ``workdir`` (see above). One process only.
    Raises:
        SweepError / ConfigError (bad sweep, or nothing to resume), SweepExistsError,
        SweepMemoryError, RunDirError (a directory that cannot be written), WorkdirLocked (in use
        by another sweep or run), CheckpointError (no intact checkpoint to continue from).
    """
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool)
                                         or not isinstance(checkpoint_every, int)
                                         or checkpoint_every < 1):
        raise SweepError(f"checkpoint_every must be an int >= 1 (deployments per checkpoint), "
                         f"got {checkpoint_every!r}")
    if (checkpoint_every or resume) and jax.process_count() > 1:
        raise SweepError("checkpoints and resume are for one-process sweeps: a multi-process "
                         "sweep writes its files from process 0 only (run without "
                         "--checkpoint-every/--resume, or on one host)")
    cfg, spec = load_sweep(sweep, overrides)
    old = read_unfinished(workdir) if resume else None
    if not resume:
        check_new_sweep_dir(workdir)
    plans = build_plans(cfg, spec)
    data = None if dataset is None else load_offline_data(plans, dataset, max_rows)
    mesh = make_runs_mesh(devices)
    for plan in plans:  # every outer value's memory estimate before compiling or writing
        estimate_memory(plan, mesh, data=data)
    lock = None
    if jax.process_index() == 0:
        lock = claim_workdir(workdir) if resume else claim_sweep_dir(workdir)
    try:
        return _run_plans(sweep, cfg, spec, plans, mesh, pathlib.Path(workdir), overrides,
                          console, num_deployments, data, checkpoint_every, old)
    finally:
        if lock is not None:
            lock.release()


def _run_plans(sweep, cfg, spec: SweepSpec, plans: list[OuterPlan], mesh: Mesh,
               workdir: pathlib.Path, overrides: Sequence[str], console,
               num_deployments: int | None, data: OfflineData | None = None,
               checkpoint_every: int | None = None, old: dict | None = None) -> SweepResult:
    """Compiles and runs every outer value in turn (or reads back those an interrupted sweep,
    ``old`` its ``sweep.json``, finished), writing the files (process 0)."""
    if "dynamics.num_active" in spec.fields and not jax.config.jax_threefry_partitionable:
        warnings.warn("jax_threefry_partitionable is off: members 0..k-1 of a masked ensemble "
                      "then get other random keys than a k-member ensemble (results are still "
                      "valid, but not equal to runs built with exactly k members)")
    writer = jax.process_index() == 0
    if old is not None and checkpoint_every is None:  # go on as the sweep began
        was = old.get("checkpoint_every")
        checkpoint_every = was if isinstance(was, int) and not isinstance(was, bool) and was >= 1 \
            else None
    meta = {"config": json.loads(cfg.to_json()), "sweep": spec.raw, "seeds": list(spec.seeds),
            "points": jsonable(list(spec.points)), "outer": jsonable(list(spec.outer)),
            "device": device_info(mesh), "overrides": list(overrides),
            "num_deployments": num_deployments,
            "offline": None if data is None else data.info(),
            "source": str(getattr(sweep, "__file__", sweep))
            if not isinstance(sweep, tuple) else "(cfg, spec)",
            "checkpoint_every": checkpoint_every}
    done_before = {}
    if old is not None:
        check_same_sweep(old, meta, workdir)
        done_before = {t["outer"]: t for t in old.get("timings") or []
                       if isinstance(t, dict) and isinstance(t.get("outer"), int)}
        meta["resumes"] = int(old.get("resumes") or 0) + 1
    # progress lines unwrapped (soft_wrap), so that a log file keeps one line per event
    log = None if console is None else (lambda text: console.print(text, soft_wrap=True))
    rows, timings, metrics = [], [], []
    if writer:
        report.write_json(workdir / "sweep.json", {**meta, "finished": False, "timings": timings})
    for plan in plans:
        path = workdir / f"metrics_outer{plan.index}.npz"
        partial = report.partial_metrics_path(workdir, plan.index)
        if plan.index in done_before and path.is_file():
            try:
                m = report.read_metrics(path, plan)
            except ValueError as e:
                raise SweepError(f"cannot resume {workdir}: {e}") from None
            info = done_before[plan.index]
            if log is not None:
                log(f"outer {plan.index + 1}: done before, read back from {path.name}")
        else:
            ckpt_dir = workdir / CHECKPOINTS / f"outer{plan.index}"
            ckpt = (Checkpointer(ckpt_dir, max_to_keep=2)
                    if writer and data is None and (checkpoint_every or ckpt_dir.is_dir())
                    else None)
            try:
                m, info = execute_plan(plan, mesh, num_deployments, log, data, ckpt,
                                       checkpoint_every or 1, partial)
            finally:
                if ckpt is not None:
                    ckpt.close()
            if writer:
                report.write_metrics(path, m, plan)
                partial.unlink(missing_ok=True)
        metrics.append(m)
        timings.append(info)
        rows += report.run_rows(plan, spec, m, offset=len(rows))
        if writer:
            report.write_json(workdir / "sweep.json", {**meta, "finished": False,
                                                       "timings": timings})
            shutil.rmtree(workdir / CHECKPOINTS / f"outer{plan.index}", ignore_errors=True)
    summary = report.summarize(rows, spec, timings,
                               offline=None if data is None else data.info())
    if writer:
        shutil.rmtree(workdir / CHECKPOINTS, ignore_errors=True)
        report.write_json(workdir / "sweep.json", {**meta, "finished": True, "timings": timings})
        report.write_outputs(workdir, rows, summary)
        if console is not None:
            report.print_summary(summary, console)
    return SweepResult(workdir=workdir, rows=rows, summary=summary, timings=timings,
                       metrics=metrics, spec=spec)
