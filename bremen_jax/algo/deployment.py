"""The recursive (deployment-efficient) BREMEN loop and its two drivers (DESIGN §3, reference §8).

One deployment = ``collect -> fit_dynamics -> fit_bc -> evaluate`` (the BC-init return, metrics
only) ``-> (trpo_iterations / trpo_chunk) x [improve(chunk) -> evaluate]``, all phases from
:mod:`bremen_jax.algo.phases`. Both drivers run these same functions in the same order, so for the
same key and config they draw the same keys and produce the same numbers:

* :func:`run_host` — a Python loop over AOT-compiled phases (each compiled once, ``improve``
  with a static chunk): progress bar, metrics per TRPO chunk (``chunks``) and per deployment
  (``deployments``), a checkpoint after every deployment preamble and every chunk, exact resume.
* :func:`make_train` — ``train(key, hp) -> (state, metrics)``: ``lax.scan`` over the K deployments
  of :func:`deployment_step` (chunks an inner scan), one XLA program with no Python control flow on
  traced values, so ``jax.vmap(train)`` over (keys, hp) works. :func:`run_compiled` runs it and
  writes the same files as the host driver.

Schedule position ``(d, c)``: deployment ``d`` (1-based; ``state.deployment``) has finished its
preamble and ``c`` of its ``C`` chunks; ``(0, C)`` is a fresh run and ``(K, C)`` a finished one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import pathlib
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from bremen_jax import checkpoint as ckpt_lib
from bremen_jax import config as config_lib
from bremen_jax.algo.phases import Phases, RunState, make_phases
from bremen_jax.data import buffer as buffer_lib
from bremen_jax.logs import MetricWriter, read_jsonl, to_python
from bremen_jax.types import Metrics, PRNGKey

PHASES = ("init", "collect", "fit_dynamics", "fit_bc", "evaluate", "improve")
STREAMS = ("chunks", "deployments")


class RunExistsError(FileExistsError):
    """The work directory already holds a run (refused so that nothing written there is lost)."""


def num_chunks(static: config_lib.StaticConfig) -> int:
    """C: TRPO chunks per deployment (``trpo_iterations / trpo_chunk``)."""
    return static.trpo_iterations // static.trpo_chunk


def precision_context(precision: str):
    """``jax.default_matmul_precision`` for tracing (nothing for ``"default"``)."""
    if precision == "default":
        return contextlib.nullcontext()
    return jax.default_matmul_precision(precision)


# ------------------------------------------------------------------------ the pure deployment
def _bc_eval(m: Metrics) -> Metrics:
    return {"bc_" + k: v for k, v in m.items()}  # eval/x -> bc_eval/x


def deployment_step(phases: Phases, state: RunState, hp: config_lib.HParams
                    ) -> tuple[RunState, Metrics]:
    """One deployment (pure; jit or scan it). Metrics ``{"preamble", "improve", "eval"}``:
    ``preamble`` = collect/, dynamics/ (``[E]`` per member), bc/, bc_eval/ metrics; ``improve``
    leaves ``[C, trpo_chunk]``; ``eval`` leaves ``[C]``."""
    s = phases.static
    state, m_collect = phases.collect(state, hp)
    state, m_dyn = phases.fit_dynamics(state, hp)
    state, m_bc = phases.fit_bc(state, hp)
    state, m_bc_eval = phases.evaluate(state, hp)

    def chunk(state, _):
        state, m_imp = phases.improve(state, hp, s.trpo_chunk)
        state, m_ev = phases.evaluate(state, hp)
        return state, (m_imp, m_ev)

    state, (m_imp, m_ev) = jax.lax.scan(chunk, state, None, length=num_chunks(s))
    preamble = {**m_collect, **m_dyn, **m_bc, **_bc_eval(m_bc_eval)}
    return state, {"preamble": preamble, "improve": m_imp, "eval": m_ev}


def make_continue(phases: Phases, num_deployments: int
                  ) -> Callable[[RunState, config_lib.HParams], tuple[RunState, Metrics]]:
    """``run(state, hp)``: ``num_deployments`` deployments as one ``lax.scan``; metrics have
    leaves ``[K, ...]``."""
    step = functools.partial(deployment_step, phases)

    def run(state: RunState, hp: config_lib.HParams) -> tuple[RunState, Metrics]:
        return jax.lax.scan(lambda st, _: step(st, hp), state, None, length=num_deployments)

    return run


def make_train(phases: Phases, num_deployments: int | None = None
               ) -> Callable[[PRNGKey, config_lib.HParams], tuple[RunState, Metrics]]:
    """The compiled driver: ``train(key, hp) -> (final_state, metrics)`` (leaves ``[K, ...]``).

    Pure and ``vmap``-able over ``(keys, hp)``; trace it inside :func:`precision_context`.
    """
    run = make_continue(phases, num_deployments or phases.static.num_deployments)

    def train(key: PRNGKey, hp: config_lib.HParams) -> tuple[RunState, Metrics]:
        return run(phases.init(key), hp)

    return train


def unstack(metrics: Metrics, n: int) -> list[Metrics]:
    """``[K, ...]`` metrics -> a list of K per-deployment trees (NumPy)."""
    host = jax.device_get(metrics)
    return [jax.tree.map(lambda x: np.asarray(x)[i], host) for i in range(n)]


# ------------------------------------------------------------------------ host-side rows
def chunk_row(static, d: int, c: int, improve: Metrics, ev: Metrics) -> dict[str, Any]:
    """Row of the ``chunks`` stream for chunk ``c`` (1-based) of deployment ``d``."""
    improve = {k: np.asarray(v) for k, v in improve.items()}
    row = {"deployment": d, "chunk": c, "iteration": (d - 1) * static.trpo_iterations
           + c * static.trpo_chunk, **{k: v[-1] for k, v in improve.items()},
           "imagined_return_mean": improve["imagined_return"].mean(), **ev}
    return to_python(row)


def preamble_row(preamble: Metrics, num_active: int) -> dict[str, Any]:
    """Scalars of a deployment's preamble (per-member vectors -> mean over active members)."""
    out = {}
    for k, v in preamble.items():
        a = np.asarray(v)
        if a.ndim == 0:
            out[k] = a
        elif k.startswith("dynamics/"):
            out[k] = a[:num_active].astype(np.float64).mean()
    return to_python(out)


def _metric(row: dict, key: str) -> float | None:
    v = row.get(key)
    return None if v is None else float(v)


def deployment_record(static, d: int, pre: dict, returns: list) -> dict[str, Any]:
    """Row of the ``deployments`` stream: the preamble scalars, the BC-init return, the return
    after the last chunk, ``env_steps`` (real transitions so far; evaluations not counted)."""
    return {"deployment": d, "env_steps": d * static.deploy_batch,
            "bc_return": _metric(pre, "bc_eval/return_mean"),
            "return": returns[-1] if returns else _metric(pre, "bc_eval/return_mean"), **pre}


def _session_metrics(pre: Metrics, improve: list, ev: list) -> Metrics:
    stack = lambda xs: jax.tree.map(lambda *a: np.stack(a), *xs)  # noqa: E731
    return {"preamble": pre, "improve": stack(improve), "eval": stack(ev)}


# ------------------------------------------------------------------------ compiled phases
@dataclasses.dataclass(frozen=True, eq=False)
class HostPhases:
    """AOT-compiled phases of the host driver (each compiled once; ``compile_s`` per phase)."""

    phases: Phases
    fns: dict[str, Callable]
    compile_s: dict[str, float]


_HOST_CACHE: dict[Any, HostPhases] = {}


def compile_host_phases(static: config_lib.StaticConfig, hp: config_lib.HParams,
                        phases: Phases | None = None) -> HostPhases:
    """Lowers and compiles every phase once (state donated); cached per (static, hp shapes)."""
    hp_abs = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype), hp)
    cache_key = (static, jax.tree_util.tree_structure(hp_abs), tuple(jax.tree.leaves(hp_abs)))
    if phases is None and cache_key in _HOST_CACHE:
        return _HOST_CACHE[cache_key]
    phases = phases or make_phases(static)
    key_abs = jax.eval_shape(jax.random.key, 0)
    state_abs = jax.eval_shape(phases.init, key_abs)
    body = {"collect": phases.collect, "fit_dynamics": phases.fit_dynamics,
            "fit_bc": phases.fit_bc, "evaluate": phases.evaluate,
            "improve": functools.partial(phases.improve, num_iterations=static.trpo_chunk)}
    fns, compile_s = {}, {}
    with precision_context(static.precision):
        t0 = time.perf_counter()
        fns["init"] = jax.jit(phases.init).lower(key_abs).compile()
        compile_s["init"] = time.perf_counter() - t0
        for name, fn in body.items():
            t0 = time.perf_counter()
            fns[name] = jax.jit(fn, donate_argnums=0).lower(state_abs, hp_abs).compile()
            compile_s[name] = time.perf_counter() - t0
    out = HostPhases(phases=phases, fns=fns, compile_s=compile_s)
    _HOST_CACHE.clear()  # keep only the latest configuration's executables
    _HOST_CACHE[cache_key] = out
    return out


# ------------------------------------------------------------------------ work directory
@dataclasses.dataclass
class RunResult:
    """What a driver returns: final state, this session's per-deployment metrics, the summary."""

    state: RunState
    metrics: list[Metrics]
    summary: dict[str, Any]


def holds_run(workdir: str | pathlib.Path) -> bool:
    w = pathlib.Path(workdir)
    return ((w / "config.json").exists() or any((w / f"{s}.jsonl").exists() for s in STREAMS)
            or ((w / "checkpoints").is_dir() and any((w / "checkpoints").iterdir())))


def check_new_workdir(workdir: str | pathlib.Path) -> None:
    """Raises :class:`RunExistsError` when ``workdir`` already holds a run."""
    if holds_run(workdir):
        raise RunExistsError(f"work directory {workdir} already holds a run; choose a new "
                             f"--workdir or continue it with --resume (nothing was changed)")


def load_run_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no run to resume in {workdir} (no config.json)")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def _cfg_dict(cfg: ml_collections.ConfigDict) -> dict:
    return json.loads(cfg.to_json())


def check_resume_config(stored: ml_collections.ConfigDict, cfg: ml_collections.ConfigDict
                        ) -> list[str]:
    """Fields that differ (``"f: old -> new"``); raises ConfigError if any sets a shape/schedule."""
    diff = ckpt_lib.config_diff(_cfg_dict(stored), _cfg_dict(cfg))
    static_old = config_lib.split(stored)[0]
    fixed = []
    for line in diff:
        field = line.split(":", 1)[0]
        one = config_lib.apply_overrides(stored, [f"{field}={_get(cfg, field)!r}"])
        if field == "seed" or config_lib.split(one)[0] != static_old:
            fixed.append(line)
    if fixed:
        raise config_lib.ConfigError(
            "cannot resume with a different value of fields that set shapes, trip counts or the "
            "seed ([static] in experiments/configs/default.py):\n  " + "\n  ".join(fixed))
    return diff


def _get(cfg, dotted: str):
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


def _truncate_logs(workdir: pathlib.Path, pos: tuple[int, int], n_chunks: int) -> None:
    """Drops log rows written after checkpoint ``pos`` (a crash between log and checkpoint)."""
    for stream in STREAMS:
        path = workdir / f"{stream}.jsonl"
        if not path.exists():
            continue
        rows = read_jsonl(path)
        at = (lambda r: (r["deployment"], r["chunk"])) if stream == "chunks" else \
            (lambda r: (r["deployment"], n_chunks))
        keep = [r for r in rows if at(r) <= pos]
        if len(keep) == len(rows):
            continue
        path.write_text("".join(json.dumps(r) + "\n" for r in keep))
        csv_path = workdir / f"{stream}.csv"
        if csv_path.exists():
            lines = csv_path.read_text().splitlines(keepends=True)
            csv_path.write_text("".join(lines[:1 + len(keep)]))


@dataclasses.dataclass
class _Book:
    """Host-side bookkeeping carried in the checkpoint's JSON (a resumed run's files are whole)."""

    records: list = dataclasses.field(default_factory=list)   # finished deployments
    pre: dict = dataclasses.field(default_factory=dict)       # current deployment's preamble
    returns: list = dataclasses.field(default_factory=list)   # its chunk returns so far
    timings: dict = dataclasses.field(default_factory=dict)   # cumulative seconds per phase
    compile_s: dict = dataclasses.field(default_factory=dict)
    wall_s: float = 0.0


def _step_of(pos: tuple[int, int], n_chunks: int) -> int:
    return pos[0] * (n_chunks + 1) + pos[1]


class _Run:
    """Work-directory plumbing shared by both drivers (config, writer, checkpoints, resume)."""

    def __init__(self, cfg, workdir, resume: bool, max_to_keep: int, console):
        self.cfg, self.static, self.hp = cfg, *config_lib.split(cfg)
        self.workdir = pathlib.Path(workdir)
        s = self.static
        self.C, self.K = num_chunks(s), s.num_deployments
        buffer_lib.check_fits(s.buffer_capacity, s.deploy_batch, self.K, self.K)
        self.console = console
        self.diff: list[str] = []
        if resume:
            self.diff = check_resume_config(load_run_config(self.workdir), cfg)
        else:
            check_new_workdir(self.workdir)
        self.resume = resume
        self.max_to_keep = max_to_keep

    def open(self, abstract_state, boundary_only: bool = False
             ) -> tuple[Any, tuple[int, int], _Book]:
        """Opens the files; returns (restored state or None, position, book). With
        ``boundary_only`` a checkpoint inside a deployment is refused (before anything changes)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ckpt = ckpt_lib.Checkpointer(self.workdir / "checkpoints", self.max_to_keep)
        state, pos, book = None, (0, self.C), _Book()
        if self.resume and self.ckpt.latest_step() is not None:
            state, meta = self.ckpt.restore(abstract_state, expected_config=_cfg_dict(self.cfg))
            pos = (int(meta["position"]["deployment"]), int(meta["position"]["chunk"]))
            book = _Book(**meta["extra"]["book"])
            if boundary_only and pos[1] != self.C:
                raise ValueError(
                    f"the latest checkpoint in {self.workdir} is inside deployment {pos[0]} "
                    f"(chunk {pos[1]}/{self.C}); the compiled driver resumes only at deployment "
                    f"boundaries: continue with --driver host")
        if self.resume:
            _truncate_logs(self.workdir, pos, self.C)
            with open(self.workdir / "resumes.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"time": time.time(), "position": pos, "changed": self.diff})
                        + "\n")
        (self.workdir / "config.json").write_text(self.cfg.to_json(indent=2))
        self.writer = MetricWriter(self.workdir)
        return state, pos, book

    def log(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg)

    def end_chunk(self, d: int, c: int, improve: Metrics, ev: Metrics, book: _Book) -> dict:
        row = chunk_row(self.static, d, c, improve, ev)
        self.writer.write("chunks", row["iteration"], row)
        book.returns.append(_metric(row, "eval/return_mean"))
        if c == self.C:
            rec = deployment_record(self.static, d, book.pre, book.returns)
            times = {f"time/{k}_s": v for k, v in book.timings.items()}
            self.writer.write("deployments", d, {**rec, **times})
            book.records.append({k: rec[k] for k in ("deployment", "env_steps", "bc_return",
                                                     "return")}
                                | {"random_return": rec.get("collect/return_mean")}
                                | {"chunk_returns": list(book.returns)})
            self.log(f"deployment {d}/{self.K}: return {rec['return']:.2f} (BC init "
                     f"{rec['bc_return']:.2f}), {rec['env_steps']} real steps")
        return row

    def save(self, state, pos: tuple[int, int], book: _Book) -> None:
        self.ckpt.save(_step_of(pos, self.C), state,
                       position={"deployment": pos[0], "chunk": pos[1]},
                       config=_cfg_dict(self.cfg), extra={"book": dataclasses.asdict(book)})

    def finish(self, state, metrics, pos, book: _Book, driver: str) -> RunResult:
        self.writer.close()
        self.ckpt.close()
        summary = build_summary(self.static, book, pos, self.K, self.C, driver)
        (self.workdir / "summary.json").write_text(json.dumps(summary, indent=2))
        if self.console is not None:
            print_summary(summary, self.console)
        return RunResult(state=state, metrics=metrics, summary=summary)


def run_host(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, *, resume: bool = False,
             stop_at: tuple[int, int] | None = None, progress: bool = True, console=None,
             max_to_keep: int = 3) -> RunResult:
    """The host driver: runs (or, with ``resume``, continues) the run in ``workdir``.

    Args:
        cfg: validated config (with ``resume``: the stored one, possibly with HParam changes).
        workdir: gets config.json, chunks/deployments.{csv,jsonl}, tb/, checkpoints/, summary.json.
        stop_at: position ``(deployment, chunk)`` after whose checkpoint to stop (interruptions).
        progress: show a rich progress bar (needs ``console``).
        console: ``rich.console.Console`` for progress, log lines and the summary; None = silent.
    Returns:
        :class:`RunResult`; ``metrics`` holds the deployments run whole in this session.
    Raises:
        RunExistsError, ConfigError, CheckpointError, ValueError (buffer too small).
    """
    run = _Run(cfg, workdir, resume, max_to_keep, console)
    s, hp, C, K = run.static, run.hp, run.C, run.K
    t_start = time.perf_counter()
    host = compile_host_phases(s, hp)
    fns = host.fns
    state_abs = jax.eval_shape(host.phases.init, jax.eval_shape(jax.random.key, 0))
    state, pos, book = run.open(state_abs)
    book.compile_s = {k: round(v, 3) for k, v in host.compile_s.items()}
    if state is None:
        state = fns["init"](jax.random.key(run.cfg.seed))
    num_active = int(hp.dynamics.num_active)
    metrics, cur = [], None

    def call(name, *args):
        t0 = time.perf_counter()
        out = jax.block_until_ready(fns[name](*args))
        book.timings[name] = book.timings.get(name, 0.0) + time.perf_counter() - t0
        return out[0], jax.device_get(out[1])

    bar = _progress(console) if progress and console is not None else None
    with bar if bar is not None else contextlib.nullcontext():
        if bar is not None:
            t_dep = bar.add_task("deployments", total=K, completed=pos[0] - (pos[1] < C))
            t_ph = bar.add_task("phases", total=4 + C, completed=4 + pos[1] if pos[1] < C else 0)
        while pos != (K, C):
            d, c = pos
            if c == C:
                d, c = d + 1, 0
                parts = {}
                for name in ("collect", "fit_dynamics", "fit_bc", "evaluate"):
                    if bar is not None:
                        bar.update(t_ph, description=f"deployment {d}: {name}",
                                   completed=len(parts))
                    state, parts[name] = call(name, state, hp)
                pre = {**parts["collect"], **parts["fit_dynamics"], **parts["fit_bc"],
                       **_bc_eval(parts["evaluate"])}
                book.pre, book.returns = preamble_row(pre, num_active), []
                cur = (pre, [], [])
                latest = book.pre.get("bc_eval/return_mean")
            else:
                if bar is not None:
                    bar.update(t_ph, description=f"deployment {d}: TRPO chunk {c + 1}/{C}")
                state, m_imp = call("improve", state, hp)
                state, m_ev = call("evaluate", state, hp)
                c += 1
                row = run.end_chunk(d, c, m_imp, m_ev, book)
                latest = row.get("eval/return_mean")
                if cur is not None:
                    cur[1].append(m_imp)
                    cur[2].append(m_ev)
                    if c == C:
                        metrics.append(_session_metrics(*cur))
            pos = (d, c)
            book.wall_s += time.perf_counter() - t_start
            t_start = time.perf_counter()
            run.save(state, pos, book)
            if bar is not None:
                bar.update(t_dep, completed=d - (c < C),
                           description=f"deployments (return {_fmt(latest)})")
                bar.update(t_ph, completed=4 + c)
            if stop_at is not None and pos == tuple(stop_at):
                break
    return run.finish(state, metrics, pos, book, "host")


def run_compiled(cfg: ml_collections.ConfigDict, workdir: str | pathlib.Path, *,
                 resume: bool = False, console=None, max_to_keep: int = 3) -> RunResult:
    """The compiled driver: the remaining deployments as one XLA program (:func:`make_train`).

    Writes the same files as :func:`run_host` after the program returns, and one checkpoint of
    the final state. ``resume`` continues from a checkpoint at a deployment boundary only.
    """
    run = _Run(cfg, workdir, resume, max_to_keep, console)
    s, hp, C, K = run.static, run.hp, run.C, run.K
    phases = make_phases(s)
    key = jax.random.key(run.cfg.seed)
    t_start = time.perf_counter()
    state0, pos, book = run.open(jax.eval_shape(phases.init, key), boundary_only=True)
    n = K - pos[0]
    state, per = state0, []
    if n > 0:
        fn, compile_s = _compile_train(phases, n, key if state0 is None else state0, hp)
        book.compile_s = {"train": round(compile_s, 3)}
        run.log(f"compiled {n} deployment(s) as one program in {book.compile_s['train']:.1f} s")
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(fn(key if state0 is None else state0, hp))
        book.timings["train"] = book.timings.get("train", 0.0) + time.perf_counter() - t0
        per = unstack(metrics, n)
        for i, m in enumerate(per):
            d = pos[0] + i + 1
            book.pre, book.returns = preamble_row(m["preamble"], int(hp.dynamics.num_active)), []
            for c in range(C):
                run.end_chunk(d, c + 1, jax.tree.map(lambda x: x[c], m["improve"]),
                              jax.tree.map(lambda x: x[c], m["eval"]), book)
        pos = (K, C)
        book.wall_s += time.perf_counter() - t_start
        run.save(state, pos, book)
    return run.finish(state, per, pos, book, "compiled")


_TRAIN_CACHE: dict[Any, Callable] = {}


def _compile_train(phases: Phases, n: int, first, hp) -> tuple[Callable, float]:
    """AOT-compiles ``train(key, hp)`` (``first`` a key) or ``continue(state, hp)`` for ``n``
    deployments; the latest executable (and its compile seconds) is cached per (static, n, kind,
    hp shapes)."""
    fresh = ckpt_lib.is_prng_key(first)
    cache_key = (phases.static, n, fresh,
                 tuple((np.shape(x), np.asarray(x).dtype) for x in jax.tree.leaves(hp)))
    if cache_key not in _TRAIN_CACHE:
        t0 = time.perf_counter()
        with precision_context(phases.static.precision):
            if fresh:
                fn = jax.jit(make_train(phases, n)).lower(first, hp).compile()
            else:
                fn = jax.jit(make_continue(phases, n), donate_argnums=0).lower(first, hp).compile()
        _TRAIN_CACHE.clear()
        _TRAIN_CACHE[cache_key] = (fn, time.perf_counter() - t0)
    return _TRAIN_CACHE[cache_key]


# ------------------------------------------------------------------------ display and summary
def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _progress(console):
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn,
                               TextColumn, TimeElapsedColumn)

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(), console=console)


def build_summary(static, book: _Book, pos, K: int, C: int, driver: str) -> dict[str, Any]:
    """``summary.json``: returns per deployment, samples, wall time by phase, compile time."""
    recs = book.records
    return {
        "task": static.task, "backend": static.backend, "driver": driver,
        "finished": tuple(pos) == (K, C), "position": {"deployment": pos[0], "chunk": pos[1]},
        "deployments": len(recs), "num_deployments": K,
        "env_steps": recs[-1]["env_steps"] if recs else 0,
        # The original's TotalSamples counts the model's training split only (reference §8).
        "train_samples": len(recs) * buffer_lib.split_sizes(static.deploy_batch,
                                                            static.val_fraction)[0],
        "random_policy_return": recs[0]["random_return"] if recs else None,
        "returns": [r["return"] for r in recs], "bc_returns": [r["bc_return"] for r in recs],
        "per_deployment": recs,
        "wall_time_s": {"total": round(book.wall_s, 3),
                        **{k: round(v, 3) for k, v in book.timings.items()}},
        "compile_time_s": {"total": round(sum(book.compile_s.values()), 3), **book.compile_s},
    }


def print_summary(summary: dict[str, Any], console) -> None:
    """A rich table of the summary (one row per deployment, then timings)."""
    from rich.table import Table

    t = Table(title=f"BREMEN {summary['task']} ({summary['driver']} driver)")
    for col in ("deployment", "real steps", "BC-init return", "return"):
        t.add_column(col, justify="right")
    for r in summary["per_deployment"]:
        t.add_row(str(r["deployment"]), str(r["env_steps"]), _fmt(r["bc_return"]),
                  _fmt(r["return"]))
    console.print(t)
    console.print(f"random policy return {_fmt(summary['random_policy_return'])}; "
                  f"deployments {summary['deployments']}/{summary['num_deployments']}; "
                  f"real steps {summary['env_steps']}")
    wall = ", ".join(f"{k} {v:.1f}s" for k, v in summary["wall_time_s"].items())
    comp = ", ".join(f"{k} {v:.1f}s" for k, v in summary["compile_time_s"].items())
    console.print(f"wall time: {wall}\ncompile time: {comp}")
