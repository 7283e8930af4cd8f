"""The compiled driver: the remaining deployments as one XLA program.

:func:`~bremen_jax.algo.schedule.make_train` (a fresh run) or
:func:`~bremen_jax.algo.schedule.make_continue` (resumed at a deployment boundary) is compiled once
and run; afterwards the same log rows as the host driver's are written from its ``[K, ...]``
metrics, and one checkpoint of the final state.
"""

from __future__ import annotations

import pathlib
import time

import jax
import ml_collections
import numpy as np

from bremen_jax.algo.schedule import make_continue, make_train
from bremen_jax.run import display
from bremen_jax.run.compile import compile_cached
from bremen_jax.run.errors import check_actions, nonfinite_lines
from bremen_jax.run.host import builtin_task, online, schedule_key
from bremen_jax.run.rows import preamble_row
from bremen_jax.run.workdir import RunResult


def unstack(metrics, n: int) -> list:
    """``[K, ...]`` metrics -> a list of K per-deployment trees (NumPy)."""
    host = jax.device_get(metrics)
    return [jax.tree.map(lambda x: np.asarray(x)[i], host) for i in range(n)]


def _check(run, per: list, pos) -> None:
    """Reports each deployment's rejected updates; refuses a run that collected a non-finite
    action (:class:`~bremen_jax.run.errors.NonFiniteError`: nothing is written or saved)."""
    for i, m in enumerate(per):
        d = pos[0] + i + 1
        for line in nonfinite_lines({**m["preamble"], **m["improve"]}):
            run.log(f"deployment {d}: {line}")
        check_actions(m["preamble"], d, pos, run.workdir)


def run_compiled(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                 resume: bool = False, console=None) -> RunResult:
    """Runs (or continues, from a deployment boundary) the run in ``workdir`` as one program.

    Writes the same files as :func:`bremen_jax.run.host.run_host`.
    Raises:
        RunExistsError, ConfigError, CheckpointError, ValueError (resume inside a deployment),
        NonFiniteError (a deployment collected a non-finite action: no row is written and the
        final state is not saved).
    """
    schedule, run = online(cfg, workdir, resume=resume, console=console)
    try:
        return _run(schedule, run, cfg)
    finally:
        run.close()


def _run(schedule, run, cfg) -> RunResult:
    K, C = run.K, run.C
    done = run.finished()
    if done is not None:
        return done
    stored = run.stored_position()
    if stored is not None and stored[1] != C:
        raise ValueError(
            f"the latest checkpoint in {run.workdir} is inside deployment {stored[0]} (chunk "
            f"{stored[1]}/{C}); the compiled driver resumes only at deployment boundaries: "
            f"continue with --driver host")
    key = jax.random.key(cfg.seed)
    t_start = time.perf_counter()
    state0, pos, book = run.open(jax.eval_shape(schedule.init, key))
    n = K - pos[0]
    state, per = state0, []
    if n > 0:
        fresh = state0 is None
        fn = make_train(schedule, n) if fresh else make_continue(schedule, n)
        first = key if fresh else state0
        with display.compiling(run.console, f"{n} deployment(s) as one program"):
            exe = compile_cached((schedule_key(schedule), "train" if fresh else "continue", n),
                                 fn, first, run.hp, precision=run.static.precision,
                                 donate_argnums=() if fresh else 0,
                                 persist=builtin_task(schedule),
                                 effort=run.static.compile_effort)
        book.compile_s = {"train": round(exe.seconds, 3)}
        run.log(f"compiled {n} deployment(s) as one program in {exe.seconds:.1f} s")
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(exe.fn(first, run.hp))
        book.timings["train"] = book.timings.get("train", 0.0) + time.perf_counter() - t0
        per = unstack(metrics, n)
        _check(run, per, pos)
        for i, m in enumerate(per):
            d = pos[0] + i + 1
            run.end_preamble(d, preamble_row(m["preamble"], int(run.hp.dynamics.num_active)),
                             book)
            for c in range(C):
                run.end_chunk(d, c + 1, jax.tree.map(lambda x: x[c], m["improve"]),
                              jax.tree.map(lambda x: x[c], m["eval"]), book)
        pos = (K, C)
        book.wall_s += time.perf_counter() - t_start
        run.save(state, pos, book)
    return run.finish(state, per, pos, book, "compiled")
