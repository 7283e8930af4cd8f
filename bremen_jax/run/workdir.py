"""A run's work directory: config, logs, checkpoints, resume (shared by every driver).

Layout::

    <workdir>/config.json        the validated config (resume reads it back)
              run.json           what kind of run (train | offline) and its inputs (dataset path)
              chunks.{csv,jsonl} one row per TRPO chunk       deployments.{csv,jsonl} one per deployment
              tb/                TensorBoard                  checkpoints/<step>/  orbax, whole RunState
              resumes.jsonl      one line per --resume        summary.json  at the end of a session

Schedule position ``(d, c)``: deployment ``d`` (1-based) has finished its preamble and ``c`` of its
``C`` chunks; ``(0, C)`` is a fresh run and ``(K, C)`` a finished one. Checkpoint step
``d * (C + 1) + c``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import pathlib
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any, Callable

import ml_collections

from bremen_jax import config as config_lib
from bremen_jax.config.schema import BACKWARD_COMPATIBLE, STORED_DEFAULTS
from bremen_jax.run import checkpoint as ckpt_lib
from bremen_jax.run.files import (STREAMS, RunFileError, atomic_write, read_json_object,
                                  truncate_logs)
from bremen_jax.run.io_errors import silence_background_errors
from bremen_jax.run.lock import WorkdirLock, WorkdirLocked
from bremen_jax.run.logs import MetricWriter
from bremen_jax.run.rows import (Book, brief_record, build_summary, chunk_row, deployment_record,
                                 metric)


class RunExistsError(FileExistsError):
    """The work directory already holds a run (refused so that nothing written there is lost)."""


class RunDirError(ValueError):
    """The work directory cannot be created or written (checked before anything compiles)."""


class RunWriteError(RunDirError):
    """Writing the work directory failed mid-run (disk full, permission lost): the run stopped,
    its last checkpoint is intact and ``--resume`` continues (the message says from where)."""

    # After a failed orbax save, orbax's non-daemon signalling threads wait minutes for signals
    # that never come, holding the interpreter's exit: the command line exits at once instead.
    abandon_threads = True


def _blocking_file(path: pathlib.Path) -> pathlib.Path | None:
    """The first existing non-directory on the way to ``path`` (``path`` itself included)."""
    for p in reversed((path, *path.parents)):
        if p.exists() and not p.is_dir():
            return p
    return None


def claim_workdir(workdir: str | pathlib.Path) -> WorkdirLock:
    """Creates ``workdir`` (with parents) and takes its lock: a directory that cannot be created
    or written is refused here, before anything compiles, in one line (:class:`RunDirError`);
    another live holder with :class:`~bremen_jax.run.lock.WorkdirLocked`. The directories it
    creates are removed again by the lock's release when nothing was written in them."""
    w = pathlib.Path(workdir)
    a = w.absolute()
    created = [d for d in (a, *a.parents) if not d.exists()]
    try:
        w.mkdir(parents=True, exist_ok=True)
        return WorkdirLock(w, created=tuple(created))
    except WorkdirLocked:
        raise
    except OSError as e:
        block = _blocking_file(w)
        why = (f"{block} is a file, not a directory" if block is not None
               else e.strerror or str(e))
        raise RunDirError(f"cannot use {w} as the work directory: {why}; expected a directory "
                          f"that can be created and written (nothing was changed)") from None


class Interrupted(KeyboardInterrupt):
    """Ctrl-C: the run stopped; its last checkpoint is intact (the message says where)."""


@dataclasses.dataclass
class RunResult:
    """What a driver returns: final state (None if nothing ran), this session's per-deployment
    metrics, the summary."""

    state: Any
    metrics: list
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
    """The config stored in a run's work directory."""
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no run to resume in {workdir} (no config.json)")
    data = read_json_object(path, "the run's config")
    flat = config_lib.flatten(data)
    # Fields added to the schema later take their defaults where those change nothing of the run:
    # host fields (e.g. checkpoint.*) and the schema's BACKWARD_COMPATIBLE ones.
    defaults = {k: STORED_DEFAULTS.get(k, v)
                for k, v in config_lib.flatten(config_lib.default_config()).items()
                if k not in flat and (config_lib.kind_of(k) == "host"
                                      or k in BACKWARD_COMPATIBLE)}
    try:
        cfg = config_lib.override(ml_collections.ConfigDict(data), defaults)
        config_lib.validate(cfg)
    except config_lib.ConfigError as e:
        raise config_lib.ConfigError(f"{path}: {e}") from None
    return cfg


def load_run_info(workdir: str | pathlib.Path) -> dict[str, Any]:
    """``run.json``: ``{"kind": "train" | "offline", ...}`` (train if absent: older runs)."""
    path = pathlib.Path(workdir) / "run.json"
    if not path.is_file():
        return {"kind": "train"}
    info = read_json_object(path, "the run's description")
    if info.get("kind", "train") not in ("train", "offline"):
        raise RunFileError(f"{path} names the run kind {info.get('kind')!r}; expected "
                           f"'train' or 'offline'")
    return info


def _cfg_dict(cfg: ml_collections.ConfigDict) -> dict:
    return json.loads(cfg.to_json())


def check_resume_config(stored: ml_collections.ConfigDict, cfg: ml_collections.ConfigDict
                        ) -> list[str]:
    """Fields that differ (``"f: old -> new"``); raises ConfigError if any is static or the seed."""
    diff = ckpt_lib.config_diff(_cfg_dict(stored), _cfg_dict(cfg))
    fixed = [line for line in diff if _fixed(line.split(":", 1)[0])]
    if fixed:
        raise config_lib.ConfigError(
            "cannot resume with a different value of fields that set shapes, trip counts or the "
            "seed (static fields of the config schema): " + "; ".join(fixed))
    return diff


def _fixed(field: str) -> bool:
    return field == "seed" or config_lib.is_static(field)


@contextlib.contextmanager
def deferred_interrupt():
    """Holds Ctrl-C back while the body runs (a checkpoint write), then delivers it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    hit = []
    old = signal.signal(signal.SIGINT, lambda *a: hit.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if hit:
        raise KeyboardInterrupt


def _position(meta: dict, where: pathlib.Path) -> tuple[int, int]:
    """``(deployment, chunk)`` of a checkpoint's metadata (damaged if it has none)."""
    p = meta.get("position", {})
    d, c = p.get("deployment"), p.get("chunk")
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (d, c)):
        raise ckpt_lib.DamagedCheckpointError(f"checkpoint {where} is damaged: its metadata "
                                              f"holds no position (deployment, chunk)")
    return d, c


def _book(meta: dict, where: pathlib.Path) -> Book:
    try:
        return Book(**meta["extra"]["book"])
    except (KeyError, TypeError):
        raise ckpt_lib.DamagedCheckpointError(f"checkpoint {where} is damaged: its metadata "
                                              f"holds no run book") from None


class Run:
    """The work directory of one run session (both drivers, online and offline).

    Args:
        cfg: validated config (with ``resume``: the stored one, possibly with HParam changes).
        workdir: the run's directory.
        resume: continue the run in ``workdir`` (else ``workdir`` must not hold a run).
        K, C: deployments and chunks per deployment of the schedule.
        samples_per_deployment: real transitions each deployment adds (offline: the dataset rows).
        info: ``run.json`` content (``{"kind": ..., ...}``).
        console: ``rich.console.Console`` for log lines, or None.
    """

    def __init__(self, cfg, workdir, *, resume: bool, K: int, C: int,
                 samples_per_deployment: int, info: dict, console=None):
        self.cfg = cfg
        self.static, self.hp = config_lib.split(cfg)
        self.workdir = pathlib.Path(workdir)
        self.K, self.C, self.resume, self.console = K, C, resume, console
        self.samples = samples_per_deployment
        self.info = info
        # ``summary -> more fields`` added to summary.json (offline: dataset, BC and BREMEN returns)
        self.summary_extra: Callable[[dict], dict] | None = None
        self.every = int(cfg.checkpoint.every)
        self.ckpt = self.writer = self.lock = None
        self.saved: tuple[int, int] | None = None  # the newest checkpoint on disk
        self.failed = False                         # a write failed (reported once)
        stored = load_run_config(self.workdir) if resume else None
        self.lock = claim_workdir(self.workdir)
        try:
            self.diff = check_resume_config(stored, cfg) if resume else []
            if not resume:
                check_new_workdir(self.workdir)
        except BaseException:
            self.close()
            raise

    # -- before compiling ----------------------------------------------------------------------
    def stored_position(self) -> tuple[int, int] | None:
        """The latest readable checkpoint's position (reads JSON only), or None. Raises
        :class:`~bremen_jax.run.checkpoint.DamagedCheckpointError` (nothing moved) when there
        are checkpoints but none has readable metadata."""
        if not self.resume or not (self.workdir / "checkpoints").is_dir():
            return None
        damaged = []
        with ckpt_lib.Checkpointer(self.workdir / "checkpoints") as ck:
            for step in reversed(ck.steps()):
                try:
                    return _position(ck.read_meta(step), ck.directory / str(step))
                except ckpt_lib.CheckpointError as e:
                    damaged.append(str(e))
        if damaged:
            raise ckpt_lib.DamagedCheckpointError(
                f"no checkpoint of the run can be read: {'; '.join(damaged)}; nothing was "
                f"changed (move {self.workdir / 'checkpoints'} aside to start the run again)")
        return None

    def finished(self) -> RunResult | None:
        """A finished run's result (its summary): resume then does nothing and compiles nothing."""
        path = self.workdir / "summary.json"
        if self.stored_position() != (self.K, self.C) or not path.is_file():
            return None
        summary = read_json_object(path, "the run's summary")
        self.log(f"the run in {self.workdir} is finished (deployment {self.K}/{self.K}); "
                 f"nothing to do")
        return RunResult(state=None, metrics=[], summary=summary)

    # -- files ----------------------------------------------------------------------------------
    def open(self, abstract_state) -> tuple[Any, tuple[int, int], Book]:
        """Opens the files; returns (restored state or None, position, book)."""
        with self.writing("the checkpoint folder"):
            self.ckpt = ckpt_lib.Checkpointer(self.workdir / "checkpoints",
                                              int(self.cfg.checkpoint.max_to_keep))
        state, pos, book = None, (0, self.C), Book()
        if self.resume and self.ckpt.latest_step() is not None:
            state, meta, skipped = self.ckpt.restore_intact(abstract_state,
                                                            expected_config=_cfg_dict(self.cfg))
            for line in skipped:
                self.log(f"{line}; resuming from an older checkpoint")
            pos = self.saved = _position(meta, self.ckpt.directory)
            book = _book(meta, self.ckpt.directory)
        with self.writing("the run's files"):
            if self.resume:
                truncate_logs(self.workdir, pos, self.C)
                with open(self.workdir / "resumes.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps({"time": time.time(), "position": pos,
                                        "changed": self.diff}) + "\n")
            atomic_write(self.workdir / "config.json", self.cfg.to_json(indent=2))
            atomic_write(self.workdir / "run.json", json.dumps(self.info, indent=2))
            self.writer = MetricWriter(self.workdir)
        return state, pos, book

    @contextlib.contextmanager
    def writing(self, what: str) -> Iterator[None]:
        """A failed write in the body (disk full, permission lost) becomes one
        :class:`RunWriteError` saying what failed, which checkpoint is intact and how to go on."""
        try:
            yield
        except OSError as e:
            self.failed = True
            silence_background_errors()
            d, c = self.saved or (0, 0)
            kept = (f"its last checkpoint (deployment {d}, chunk {c}) is intact" if self.saved
                    else "it has no checkpoint yet")
            fix = {errno.ENOSPC: "free space", errno.EDQUOT: "free space"}.get(
                e.errno, "make it writable again")
            then = (f"continue with --resume --workdir {self.workdir}"
                    if (self.workdir / "config.json").is_file() else "start it again")
            raise RunWriteError(f"cannot write {what} in {self.workdir}: "
                                f"{e.strerror or e}; the run stopped and {kept}; {fix}, then "
                                f"{then}") from None

    def log(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg)

    def end_preamble(self, d: int, pre: dict, book: Book) -> None:
        book.pre, book.returns = pre, []

    def end_chunk(self, d: int, c: int, improve, ev, book: Book) -> dict:
        """Writes chunk ``c``'s row (and, after the last chunk, the deployment's row)."""
        row = chunk_row(self.static, d, c, improve, ev)
        with self.writing("the chunk log"):  # TensorBoard: every TRPO iteration of the chunk
            self.writer.write("chunks", row["iteration"], row, tb_skip=improve)
            self.writer.write_series("improve", row["iteration"], improve)
        book.returns.append(metric(row, "eval/return_mean"))
        if c == self.C:
            rec = deployment_record(d, d * self.samples, book.pre, book.returns)
            times = {f"time/{k}_s": v for k, v in book.timings.items()}
            with self.writing("the deployment log"):
                self.writer.write("deployments", d, {**rec, **times})
            book.records.append(brief_record(rec, book.returns))
            self.log(f"deployment {d}/{self.K}: return {rec['return']:.2f} (BC init "
                     f"{rec['bc_return']:.2f}), {rec['env_steps']} real steps")
        return row

    def wants_checkpoint(self, pos: tuple[int, int]) -> bool:
        """After every preamble, every ``checkpoint.every``-th chunk and the last chunk."""
        c = pos[1]
        return c == 0 or c == self.C or c % self.every == 0

    def save(self, state, pos: tuple[int, int], book: Book) -> None:
        what = f"the checkpoint of deployment {pos[0]}, chunk {pos[1]}"
        with deferred_interrupt(), self.writing(what):
            self.ckpt.save(pos[0] * (self.C + 1) + pos[1], state,
                           position={"deployment": pos[0], "chunk": pos[1]},
                           config=_cfg_dict(self.cfg),
                           extra={"book": dataclasses.asdict(book)})
        self.saved = pos

    def close(self) -> None:
        """Closes writers and checkpoints and frees the lock (idempotent; also after an error;
        after a failed write, errors of the closing are not raised again)."""
        failed_before = self.failed
        try:
            with self.writing("the logs and checkpoints"):
                try:
                    if self.writer is not None:
                        self.writer.close()
                finally:
                    if self.ckpt is not None:
                        self.ckpt.close()
        except RunWriteError:
            if not failed_before:
                raise
        finally:
            self.writer = self.ckpt = None
            if self.lock is not None:
                self.lock.release()

    def finish(self, state, metrics, pos, book: Book, driver: str) -> RunResult:
        summary = build_summary(self.static, book, pos, self.K, self.C, driver, self.samples)
        if self.summary_extra is not None:
            summary.update(self.summary_extra(summary))
        try:
            with self.writing("summary.json"):
                atomic_write(self.workdir / "summary.json", json.dumps(summary, indent=2))
        finally:
            self.close()
        return RunResult(state=state, metrics=metrics, summary=summary)
