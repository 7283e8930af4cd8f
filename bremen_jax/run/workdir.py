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
import json
import pathlib
import signal
import threading
import time
from typing import Any

import ml_collections

from bremen_jax import config as config_lib
from bremen_jax.run import checkpoint as ckpt_lib
from bremen_jax.run.lock import WorkdirLock
from bremen_jax.run.logs import MetricWriter, read_jsonl
from bremen_jax.run.rows import Book, brief_record, build_summary, chunk_row, \
    deployment_record, metric

STREAMS = ("chunks", "deployments")


class RunExistsError(FileExistsError):
    """The work directory already holds a run (refused so that nothing written there is lost)."""


class RunDirError(ValueError):
    """The work directory cannot be created or written (checked before anything compiles)."""


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


def _read_json(path: pathlib.Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise config_lib.ConfigError(f"{path} is not a readable {what} ({e})") from None


def load_run_config(workdir: str | pathlib.Path) -> ml_collections.ConfigDict:
    """The config stored in a run's work directory."""
    path = pathlib.Path(workdir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"no run to resume in {workdir} (no config.json)")
    data = _read_json(path, "run config (JSON object)")
    if not isinstance(data, dict):
        raise config_lib.ConfigError(f"{path} must hold a JSON object, got {type(data).__name__}")
    flat = config_lib.flatten(data)
    # Sections added to the schema later (e.g. checkpoint.*) take their defaults.
    defaults = {k: v for k, v in config_lib.flatten(config_lib.default_config()).items()
                if k not in flat and config_lib.kind_of(k) == "host"}
    try:
        return config_lib.override(ml_collections.ConfigDict(data), defaults)
    except config_lib.ConfigError as e:
        raise config_lib.ConfigError(f"{path}: {e}") from None


def load_run_info(workdir: str | pathlib.Path) -> dict[str, Any]:
    """``run.json``: ``{"kind": "train" | "offline", ...}`` (train if absent: older runs)."""
    path = pathlib.Path(workdir) / "run.json"
    return _read_json(path, "run description") if path.is_file() else {"kind": "train"}


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


def truncate_logs(workdir: pathlib.Path, pos: tuple[int, int], n_chunks: int) -> None:
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
        self.every = int(cfg.checkpoint.every)
        self.ckpt = self.writer = self.lock = None
        stored = load_run_config(self.workdir) if resume else None
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.lock = WorkdirLock(self.workdir)
        except OSError as e:
            raise RunDirError(f"cannot write to the work directory {self.workdir}: "
                              f"{e.strerror or e}") from None
        try:
            self.diff = check_resume_config(stored, cfg) if resume else []
            if not resume:
                check_new_workdir(self.workdir)
        except BaseException:
            self.close()
            raise

    # -- before compiling ----------------------------------------------------------------------
    def stored_position(self) -> tuple[int, int] | None:
        """The latest checkpoint's position (reads JSON only), or None."""
        if not self.resume or not (self.workdir / "checkpoints").is_dir():
            return None
        with ckpt_lib.Checkpointer(self.workdir / "checkpoints") as ck:
            for step in reversed(ck.steps()):
                try:
                    p = ck.read_meta(step)["position"]
                    return int(p["deployment"]), int(p["chunk"])
                except ckpt_lib.CheckpointError:
                    continue
        return None

    def finished(self) -> RunResult | None:
        """A finished run's result (its summary): resume then does nothing and compiles nothing."""
        path = self.workdir / "summary.json"
        if self.stored_position() != (self.K, self.C) or not path.is_file():
            return None
        self.log(f"the run in {self.workdir} is finished (deployment {self.K}/{self.K}); "
                 f"nothing to do")
        return RunResult(state=None, metrics=[], summary=_read_json(path, "summary"))

    # -- files ----------------------------------------------------------------------------------
    def open(self, abstract_state) -> tuple[Any, tuple[int, int], Book]:
        """Opens the files; returns (restored state or None, position, book)."""
        self.ckpt = ckpt_lib.Checkpointer(self.workdir / "checkpoints",
                                          int(self.cfg.checkpoint.max_to_keep))
        state, pos, book = None, (0, self.C), Book()
        if self.resume and self.ckpt.latest_step() is not None:
            state, meta, skipped = self.ckpt.restore_intact(abstract_state,
                                                            expected_config=_cfg_dict(self.cfg))
            for line in skipped:
                self.log(f"{line}; resuming from an older checkpoint")
            pos = (int(meta["position"]["deployment"]), int(meta["position"]["chunk"]))
            book = Book(**meta["extra"]["book"])
        if self.resume:
            truncate_logs(self.workdir, pos, self.C)
            with open(self.workdir / "resumes.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps({"time": time.time(), "position": pos, "changed": self.diff})
                        + "\n")
        (self.workdir / "config.json").write_text(self.cfg.to_json(indent=2))
        (self.workdir / "run.json").write_text(json.dumps(self.info, indent=2))
        self.writer = MetricWriter(self.workdir)
        return state, pos, book

    def log(self, msg: str) -> None:
        if self.console is not None:
            self.console.print(msg)

    def end_preamble(self, d: int, pre: dict, book: Book) -> None:
        book.pre, book.returns = pre, []

    def end_chunk(self, d: int, c: int, improve, ev, book: Book) -> dict:
        """Writes chunk ``c``'s row (and, after the last chunk, the deployment's row)."""
        row = chunk_row(self.static, d, c, improve, ev)
        self.writer.write("chunks", row["iteration"], row)
        book.returns.append(metric(row, "eval/return_mean"))
        if c == self.C:
            rec = deployment_record(d, d * self.samples, book.pre, book.returns)
            times = {f"time/{k}_s": v for k, v in book.timings.items()}
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
        with deferred_interrupt():
            self.ckpt.save(pos[0] * (self.C + 1) + pos[1], state,
                           position={"deployment": pos[0], "chunk": pos[1]},
                           config=_cfg_dict(self.cfg),
                           extra={"book": dataclasses.asdict(book)})

    def close(self) -> None:
        """Closes writers and checkpoints and frees the lock (idempotent; also after an error)."""
        try:
            if self.writer is not None:
                self.writer.close()
            if self.ckpt is not None:
                self.ckpt.close()
        finally:
            self.writer = self.ckpt = None
            if self.lock is not None:
                self.lock.release()

    def finish(self, state, metrics, pos, book: Book, driver: str) -> RunResult:
        self.close()
        summary = build_summary(self.static, book, pos, self.K, self.C, driver, self.samples)
        (self.workdir / "summary.json").write_text(json.dumps(summary, indent=2))
        return RunResult(state=state, metrics=metrics, summary=summary)
