"""The host driver: a Python loop over the schedule's AOT-compiled steps.

Like Brax's training loop around its compiled epoch, this loop knows nothing of what a step does
or in which order steps come: it compiles each :class:`~bremen_jax.algo.schedule.Step` of
:meth:`Schedule.preamble_steps` / :meth:`Schedule.chunk_steps` once (state donated), calls them
in the order given, and between calls writes log rows, checkpoints (``checkpoint.every``) and
progress. After each call it says once how many non-finite updates the phase rejected, and stops
the run (:class:`~bremen_jax.run.errors.NonFiniteError`) when a collection saw non-finite actions. Online (:func:`run_host`) and offline (:mod:`bremen_jax.run.offline`) runs both go
through :func:`drive`.
"""

from __future__ import annotations

import contextlib
import pathlib
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from bremen_jax import config as config_lib
from bremen_jax.algo.phases import make_phases
from bremen_jax.algo.schedule import Schedule, collect_metrics
from bremen_jax.data import buffer as buffer_lib
from bremen_jax.envs import registry
from bremen_jax.run import display
from bremen_jax.run.compile import Job, compile_many
from bremen_jax.run.errors import check_actions, nonfinite_lines
from bremen_jax.run.rows import Book, metric, preamble_row
from bremen_jax.run.workdir import Interrupted, Run, RunResult


def schedule_key(schedule: Schedule) -> tuple:
    """What determines a schedule's compiled programs (besides argument shapes)."""
    p = schedule.phases
    return (p.static, schedule.offline, p.capacity, p.max_segments, p.task.name)


def builtin_task(schedule: Schedule) -> bool:
    """Whether the schedule's task is a built-in one (code in this package, so :func:`schedule_key`
    and the argument shapes determine its programs: they may be stored on disk, see
    :class:`~bremen_jax.run.compile.Job`)."""
    return registry.is_builtin(schedule.phases.task.name)


def compile_steps(schedule: Schedule, hp, init_args: tuple, console=None
                  ) -> tuple[dict[str, Callable], dict[str, float]]:
    """AOT-compiles ``init`` and every step (each name once; XLA compiles them in parallel
    threads, :func:`~bremen_jax.run.compile.compile_many`); returns (executables, seconds)."""
    key, precision = schedule_key(schedule), schedule.phases.static.precision
    state_abs = jax.eval_shape(schedule.init, *init_args)
    todo = {"init": (schedule.init, init_args, (), "other")}
    for step in schedule.preamble_steps() + schedule.chunk_steps():
        todo.setdefault(step.name, (step.fn, (state_abs, hp), 0, step.kind))
    persist = builtin_task(schedule)
    effort = schedule.phases.static.compile_effort
    jobs = [Job((key, name), fn, args, precision, donate, persist=persist, effort=effort,
                kind=kind)
            for name, (fn, args, donate, kind) in todo.items()]
    with display.compiling(console, f"{len(jobs)} programs ({', '.join(todo)})"):
        out = compile_many(jobs)
    return ({name: c.fn for name, c in zip(todo, out)},
            {name: round(c.seconds, 3) for name, c in zip(todo, out)})


def _stack(xs: list) -> Any:
    return jax.tree.map(lambda *a: np.stack(a), *xs)


def drive(run: Run, schedule: Schedule, init_args: tuple, *, stop_at=None,
          progress: bool = True) -> RunResult:
    """Runs (or continues) ``schedule`` in ``run``'s work directory; see :func:`run_host`.
    The work directory is closed (logs, checkpoints, lock) whatever happens."""
    try:
        return _drive(run, schedule, init_args, stop_at, progress)
    finally:
        run.close()


def _drive(run: Run, schedule: Schedule, init_args: tuple, stop_at, progress: bool) -> RunResult:
    K, C = schedule.num_deployments, schedule.num_chunks
    done = run.finished()
    if done is not None:
        return done
    t_start = time.perf_counter()
    fns, compile_s = compile_steps(schedule, run.hp, init_args, run.console)
    run.log(f"compiled {len(fns)} programs in {sum(compile_s.values()):.1f} s")
    state, pos, book = run.open(jax.eval_shape(schedule.init, *init_args))
    book.compile_s = compile_s
    if state is None:
        state = fns["init"](*init_args)
    loop = _Loop(run, schedule, fns, book)
    bar = display.progress(run.console) if progress and run.console is not None else None
    try:
        with bar if bar is not None else contextlib.nullcontext():
            loop.bar = bar and _Bars(bar, K, C, len(schedule.preamble_steps()), pos)
            while pos != (K, C):
                state, pos = loop.advance(state, pos)
                book.wall_s += time.perf_counter() - t_start
                t_start = time.perf_counter()
                if run.wants_checkpoint(pos) or pos == (K, C) or pos == tuple(stop_at or ()):
                    run.save(state, pos, book)
                    loop.saved = pos
                if stop_at is not None and pos == tuple(stop_at):
                    break
    except KeyboardInterrupt:
        d, c = loop.saved or pos
        where = f"deployment {d}, chunk {c}" if d > 0 else "the start (no checkpoint yet)"
        raise Interrupted(f"interrupted; continue from {where} with --resume --workdir "
                          f"{run.workdir}") from None
    return run.finish(state, loop.metrics, pos, book, "host")


class _Bars:
    """The two progress bars (deployments; steps of the current deployment)."""

    def __init__(self, bar, K: int, C: int, n_pre: int, pos):
        self.bar, self.C, self.n_pre = bar, C, n_pre
        d, c = pos
        self.dep = bar.add_task("deployments", total=K, completed=d - (c < C))
        self.steps = bar.add_task("steps", total=n_pre + C, completed=n_pre + c if c < C else 0)

    def step(self, d: int, what: str, done: int) -> None:
        self.bar.update(self.steps, description=f"deployment {d}: {what}", completed=done)

    def moved(self, pos, latest) -> None:
        d, c = pos
        self.bar.update(self.dep, completed=d - (c < self.C),
                        description=f"deployments (return {display.fmt(latest)})")
        self.bar.update(self.steps, completed=self.n_pre + c)


class _Loop:
    """One move of the host loop: a deployment's preamble or one chunk, with its log rows."""

    def __init__(self, run: Run, schedule: Schedule, fns: dict, book: Book):
        self.run, self.schedule, self.fns, self.book = run, schedule, fns, book
        self.C = schedule.num_chunks
        self.metrics: list = []
        self.cur = None
        self.bar = None
        self.saved = None

    def _call(self, name: str, state):
        t0 = time.perf_counter()
        state, m = jax.block_until_ready(self.fns[name](state, self.run.hp))
        self.book.timings[name] = self.book.timings.get(name, 0.0) + time.perf_counter() - t0
        return state, jax.device_get(m)

    def _steps(self, steps, state, d: int, done: int):
        out: dict = {}
        for i, step in enumerate(steps):
            if self.bar:
                self.bar.step(d, step.name, done + i)
            state, m = self._call(step.name, state)
            for line in nonfinite_lines(m):
                self.run.log(f"deployment {d}: {line}")
            check_actions(m, d, self.saved, self.run.workdir)  # before anything is saved
            collect_metrics(out, step, m)
        return state, out

    def advance(self, state, pos):
        if self.saved is None:
            self.saved = pos
        d, c = pos
        if c == self.C:
            d, c = d + 1, 0
            state, out = self._steps(self.schedule.preamble_steps(), state, d, 0)
            pre = out["preamble"]
            self.run.end_preamble(d, preamble_row(pre, int(self.run.hp.dynamics.num_active)),
                                  self.book)
            self.cur, latest = (pre, [], []), metric(self.book.pre, "bc_eval/return_mean")
        else:
            state, out = self._steps(self.schedule.chunk_steps(), state, d,
                                     len(self.schedule.preamble_steps()) + c)
            c += 1
            row = self.run.end_chunk(d, c, out["improve"], out["eval"], self.book)
            latest = metric(row, "eval/return_mean")
            if self.cur is not None:
                self.cur[1].append(out["improve"])
                self.cur[2].append(out["eval"])
                if c == self.C:
                    pre, imp, ev = self.cur
                    self.metrics.append({"preamble": pre, "improve": _stack(imp),
                                         "eval": _stack(ev)})
        if self.bar:
            self.bar.moved((d, c), latest)
        return state, (d, c)


def run_host(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, *, resume: bool = False,
             stop_at: tuple[int, int] | None = None, progress: bool = True,
             console=None) -> RunResult:
    """Recursive BREMEN with the host driver: runs (or, with ``resume``, continues) the run.

    Args:
        cfg: validated config (with ``resume``: the stored one, possibly with HParam changes).
        workdir: gets config.json, chunks/deployments.{csv,jsonl}, tb/, checkpoints/, summary.json.
        stop_at: position ``(deployment, chunk)`` after whose checkpoint to stop (interruptions).
        progress: show a rich progress bar (needs ``console``).
        console: ``rich.console.Console`` for progress, log lines; None = silent.
    Returns:
        :class:`RunResult`; ``metrics`` holds the deployments run whole in this session.
    Raises:
        RunExistsError, ConfigError, CheckpointError, ValueError (buffer too small), Interrupted,
        NonFiniteError (the policy produced a non-finite action: nothing of that deployment is
        saved, the last checkpoint stays the newest).
    """
    schedule, run = online(cfg, workdir, resume=resume, console=console)
    return drive(run, schedule, (jax.random.key(cfg.seed),), stop_at=stop_at, progress=progress)


def online(cfg, workdir, *, resume: bool, console=None) -> tuple[Schedule, Run]:
    """The online schedule and its work directory (checked, nothing written yet)."""
    static, _ = config_lib.split(cfg)
    schedule = Schedule(make_phases(static))
    K, C = schedule.num_deployments, schedule.num_chunks
    buffer_lib.check_fits(static.buffer_capacity, static.deploy.batch_size, K, K)
    run = Run(cfg, workdir, resume=resume, K=K, C=C,
              samples_per_deployment=static.deploy.batch_size, info={"kind": "train"},
              console=console)
    return schedule, run
