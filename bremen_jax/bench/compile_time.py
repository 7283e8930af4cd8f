"""The compile-time suite: what each command compiles, cold and warm
(``python -m benchmarks.compile_time``; the library part lives here, next to the other suites).

Every measurement runs a real command in a subprocess (``python -m bremen_jax.cli ...``) with
``JAX_LOG_COMPILES=1`` and its own persistent compilation cache (``BREMEN_JAX_CACHE=DIR``, see
:mod:`bremen_jax.run.compile`): *cold* with an empty cache, *warm* a second invocation with the same
cache. From JAX's log lines (:func:`parse_compile_log`) it records which programs compiled, how
many times, and per program the seconds of tracing, lowering to StableHLO and XLA compilation (a
persistent-cache load is timed as "XLA compilation" too, and counted in ``cache_hits``); from
``JAX_DUMP_IR_TO`` (cold only) the StableHLO size of each program; from the run's own files its
``compile_time_s``. The JSON (``benchmarks/results/compile-<device>-<date>.json``) holds every
measurement and the issue's targets with their verdicts (:data:`TARGETS`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Sequence

COMMANDS = ("train_host", "train_compiled", "offline", "collect", "sweep", "evaluate")
CONFIGS = ("test", "quick")
PHASES = ("cold", "warm")
SMALL_S = 0.1     # programs whose trace + lower + compile seconds are below this are pooled
_NUM = r"([0-9.]+(?:[eE][-+]?[0-9]+)?)"
_TRACE = re.compile(r"Finished tracing (\S+) for jit in " + _NUM + " sec")
_LOWER = re.compile(r"Finished jaxpr to MLIR module conversion \w+\((.*)\) in " + _NUM + " sec")
_XLA = re.compile(r"Finished XLA compilation of \w+\((.*)\) in " + _NUM + " sec")
_HIT = re.compile(r"Persistent compilation cache hit for '(?:jit_)?([^']*)'")
_DUMP = re.compile(r"jax_ir\d+_(?:jit_)?(.*)_compile\.mlir$")

# (command, config, cold|warm, measured quantity, limit in seconds): the targets on CPU
TARGETS = (
    ("train_host", "test", "cold", "compile_s", 20.0),
    ("train_compiled", "test", "cold", "compile_s", 40.0),
    ("train_host", "test", "warm", "compile_s", 3.0),
    ("train_host", "quick", "cold", "compile_s", 30.0),
    ("train_compiled", "quick", "cold", "compile_s", 60.0),
    # `bremen train`'s default since 2026-12-03 (quick's sizes, fixes on; not in CONFIGS,
    # measure it with --configs quick_tuned --commands train_host)
    ("train_host", "quick_tuned", "cold", "compile_s", 30.0),
    ("sweep", "test", "cold", "wall_s", 60.0),
)


@dataclasses.dataclass
class Program:
    """One program name's compile work in one command (seconds summed over its compilations)."""

    name: str
    compiles: int = 0        # "Finished XLA compilation" lines (cache loads included)
    traces: int = 0
    cache_hits: int = 0
    trace_s: float = 0.0
    lower_s: float = 0.0
    xla_s: float = 0.0
    hlo_bytes: int | None = None

    @property
    def total_s(self) -> float:
        return self.trace_s + self.lower_s + self.xla_s

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.update({k: round(d[k], 3) for k in ("trace_s", "lower_s", "xla_s")},
                 total_s=round(self.total_s, 3))
        return d


def parse_compile_log(text: str) -> dict[str, Program]:
    """Per program name, the compile work in a log written with ``JAX_LOG_COMPILES=1``.

    Reads the lines ``Finished tracing NAME for jit in S sec``, ``Finished jaxpr to MLIR module
    conversion jit(NAME) in S sec``, ``Finished XLA compilation of jit(NAME) in S sec`` and
    ``Persistent compilation cache hit for 'jit_NAME'``; other lines are ignored.
    """
    out: dict[str, Program] = {}

    def prog(name: str) -> Program:
        return out.setdefault(name, Program(name))

    for line in text.splitlines():
        if m := _TRACE.search(line):
            p = prog(m[1])
            p.traces += 1
            p.trace_s += float(m[2])
        elif m := _LOWER.search(line):
            prog(m[1]).lower_s += float(m[2])
        elif m := _XLA.search(line):
            p = prog(m[1])
            p.compiles += 1
            p.xla_s += float(m[2])
        elif m := _HIT.search(line):
            prog(m[1]).cache_hits += 1
    return out


def hlo_sizes(dump_dir: str | os.PathLike) -> dict[str, int]:
    """Bytes of StableHLO per program name in a ``JAX_DUMP_IR_TO`` folder (summed over dumps)."""
    sizes: dict[str, int] = {}
    for f in sorted(pathlib.Path(dump_dir).glob("*.mlir")):
        if m := _DUMP.match(f.name):
            sizes[m[1]] = sizes.get(m[1], 0) + f.stat().st_size
    return sizes


def summarize_programs(programs: dict[str, Program], small_s: float = SMALL_S) -> dict:
    """The programs worth naming (largest first), the pooled small ones, totals, and the names
    compiled more than once (``repeated``: the first place to look for a recompile)."""
    big = sorted((p for p in programs.values() if p.total_s >= small_s),
                 key=lambda p: -p.total_s)
    small = [p for p in programs.values() if p.total_s < small_s]
    return {
        "total_s": round(sum(p.total_s for p in programs.values()), 3),
        "xla_s": round(sum(p.xla_s for p in programs.values()), 3),
        "compiles": sum(p.compiles for p in programs.values()),
        "cache_hits": sum(p.cache_hits for p in programs.values()),
        "programs": [p.as_dict() for p in big],
        "small": {"names": len(small), "compiles": sum(p.compiles for p in small),
                  "seconds": round(sum(p.total_s for p in small), 3)},
        "repeated": {p.name: p.compiles for p in big if p.compiles > 1},
    }


# ----------------------------------------------------------------------------- the commands
def command_argv(command: str, config: str, work: pathlib.Path, phase: str) -> list[str] | None:
    """The ``bremen`` arguments of one measurement (None: the command does not apply)."""
    out = work / f"{command}-{config}-{phase}"
    if command in ("train_host", "train_compiled"):
        return ["train", "--config", config, "--workdir", str(out), "--no-progress",
                "--driver", command.split("_")[1]]
    if command == "offline":
        return ["offline", "--config", config, "--dataset", str(work / f"data-{config}.npz"),
                "--workdir", str(out), "--no-progress"]
    if command == "collect":
        task, backend, size = _collect_args(config)
        return ["collect", "--task", task, "--policy", "random", "--size", str(size),
                "--backend", backend, "--out", str(out) + ".npz"]
    if command == "sweep":
        return ["sweep", "--config", "test", "--workdir", str(out)] if config == "test" else None
    if command == "evaluate":
        return ["evaluate", str(work / f"train_host-{config}-cold")]
    raise ValueError(f"unknown command {command!r}; expected one of {COMMANDS}")


def _collect_args(config: str) -> tuple[str, str, int]:
    from bremen_jax.config import load_config

    cfg = load_config(config)
    return cfg.task, cfg.backend, 2 * int(cfg.deploy.batch_size)


def own_compile_s(command: str, out: pathlib.Path, stdout: str) -> float | None:
    """The command's own compile seconds (summary.json, sweep.json, collect's line)."""
    try:
        if command.startswith("train") or command == "offline":
            return json.loads((out / "summary.json").read_text())["compile_time_s"]["total"]
        if command == "sweep":
            return sum(t["compile_s"] for t in
                       json.loads((out / "sweep.json").read_text())["timings"])
    except (OSError, KeyError, ValueError, TypeError):
        return None
    m = re.search(r"compile " + _NUM + " s", stdout)
    return float(m[1]) if m else None


def available(command: str) -> bool:
    """Whether ``bremen <command>`` exists in this install (``evaluate`` is newer)."""
    if command != "evaluate":
        return True
    r = subprocess.run([sys.executable, "-m", "bremen_jax.cli", "evaluate", "--help"],
                       capture_output=True, text=True, timeout=120)
    return r.returncode == 0


def measure(argv: Sequence[str], cache: pathlib.Path, log: pathlib.Path,
            dump: pathlib.Path | None = None, timeout: float = 3600.0) -> dict:
    """Runs ``bremen *argv`` in a subprocess with ``cache`` as its persistent compile cache and
    the compile log on; returns rc, wall seconds, the load average and the parsed programs."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}
    env.update(BREMEN_JAX_CACHE=str(cache), JAX_LOG_COMPILES="1")
    if dump is not None:
        env.update(JAX_DUMP_IR_TO=str(dump), JAX_INCLUDE_DEBUG_INFO_IN_DUMPS="0")
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "bremen_jax.cli", *argv], env=env,
                           capture_output=True, text=True, timeout=timeout)
        rc, stdout, stderr = r.returncode, r.stdout, r.stderr
    except subprocess.TimeoutExpired as e:
        rc, stdout, stderr = "timeout", _text(e.stdout), _text(e.stderr)
    wall = time.perf_counter() - t0
    log.write_text(stderr)
    programs = parse_compile_log(stderr)
    if dump is not None:
        for name, size in hlo_sizes(dump).items():
            if name in programs:
                programs[name].hlo_bytes = size
    res = {"rc": rc, "wall_s": round(wall, 3), "load_avg_1min": round(load, 2),
           **summarize_programs(programs), "stdout_tail": stdout[-600:]}
    if rc != 0:
        res["stderr_tail"] = "\n".join(line for line in stderr.splitlines()
                                       if "Finished " not in line and "Compiling " not in line
                                       )[-1500:]
    return res


def _text(x) -> str:
    return x.decode(errors="replace") if isinstance(x, bytes) else (x or "")


# ----------------------------------------------------------------------------- the suite
def _order(commands: Sequence[str]) -> list[str]:
    """Collect before offline (its dataset), train_host before evaluate (its run)."""
    return sorted(commands, key=COMMANDS.index)


def _setup(command: str, config: str, work: pathlib.Path, done: set, timeout: float) -> None:
    """Makes offline's dataset / evaluate's run when collect / train_host were not measured."""
    need = {"offline": "collect", "evaluate": "train_host"}.get(command)
    if need is None or (need, config) in done:
        return
    argv = command_argv(need, config, work, "cold")
    if need == "collect":
        argv[argv.index("--out") + 1] = str(work / f"data-{config}.npz")
    measure(argv, work / f"cache-setup-{config}", work / f"setup-{need}-{config}.log",
            timeout=timeout)


def run_measurements(configs: Sequence[str], commands: Sequence[str], work: pathlib.Path,
                     hlo: bool = True, timeout: float = 3600.0, log=print,
                     phases: Sequence[str] = PHASES, progress=None) -> list[dict]:
    """Cold then warm (or only ``phases``), per (command, config), each in a fresh cache folder
    under ``work``; ``progress(rows)`` after each measurement (the rows so far)."""
    progress = progress or (lambda rows: None)
    rows, done = [], set()
    for config in configs:
        for command in _order(commands):
            base = {"command": command, "config": config}
            argv = command_argv(command, config, work, "cold")
            if argv is None or not available(command):
                rows.append({**base, "status": "not available" if argv else "not applicable"})
                continue
            _setup(command, config, work, done, timeout)
            cache = work / f"cache-{command}-{config}"
            for phase in [p for p in PHASES if p in phases]:
                argv = command_argv(command, config, work, phase)
                dump = work / f"hlo-{command}-{config}" if hlo and phase == "cold" else None
                res = measure(argv, cache, work / f"{command}-{config}-{phase}.log", dump, timeout)
                out = pathlib.Path(argv[argv.index("--workdir") + 1]) if "--workdir" in argv \
                    else None
                res["own_compile_s"] = own_compile_s(command, out, res["stdout_tail"]) \
                    if out else own_compile_s(command, work, res["stdout_tail"])
                rows.append({**base, "phase": phase, "argv": ["bremen", *argv], **res})
                log(f"{command} {config} {phase}: rc {res['rc']}, wall {res['wall_s']:.1f} s, "
                    f"compile {res['own_compile_s']} s (log {res['total_s']:.1f} s, "
                    f"{res['compiles']} compiles, {res['cache_hits']} cache hits), "
                    f"load {res['load_avg_1min']}")
                progress(rows)
            if command == "collect":  # the cold dataset feeds offline
                shutil.copy(work / f"collect-{config}-cold.npz", work / f"data-{config}.npz")
            done.add((command, config))
    return rows


def merge_rows(earlier: Sequence[dict], new: Sequence[dict]) -> list[dict]:
    """``earlier`` 's rows, except those ``new`` measured again (same command, config, phase),
    then ``new`` 's."""
    def key(r):
        return r["command"], r["config"], r.get("phase")

    again = {key(r) for r in new}
    return [r for r in earlier if key(r) not in again] + list(new)


def verdicts(rows: Sequence[dict], cores: int | None = None) -> list[dict]:
    """Each target of :data:`TARGETS`: met / missed (with why) / not measured."""
    cores = cores or os.cpu_count() or 1
    out = []
    for command, config, phase, what, limit in TARGETS:
        row = next((r for r in rows if (r["command"], r["config"], r.get("phase")) ==
                    (command, config, phase) and r.get("rc") == 0), None)
        t = {"command": command, "config": config, "phase": phase, "measure": what,
             "limit_s": limit}
        if row is None:
            out.append({**t, "verdict": "not measured"})
            continue
        value = row["wall_s"] if what == "wall_s" else (row["own_compile_s"] or row["total_s"])
        t["value_s"] = round(value, 2)
        if value <= limit:
            out.append({**t, "verdict": "met"})
            continue
        top = row["programs"][0] if row["programs"] else None
        why = [f"{value:.1f} s > {limit:g} s"]
        if row["load_avg_1min"] > cores:  # the suite's own previous command stays under this
            why.append(f"load average {row['load_avg_1min']} on {cores} cores (other jobs)")
        if top:
            why.append(f"largest program {top['name']}: {top['total_s']:.1f} s "
                       f"(XLA {top['xla_s']:.1f} s)")
        out.append({**t, "verdict": "missed", "why": "; ".join(why)})
    return out


def parse_args(argv: Sequence[str] | None, prog: str) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog, description="Compile time per command, cold (empty "
                                "persistent cache) and warm (second invocation), from JAX's "
                                "compile log; JSON with the targets' verdicts.")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated configs")
    p.add_argument("--commands", default=",".join(COMMANDS),
                   help=f"comma-separated subset of {','.join(COMMANDS)}")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/"
                                               "compile-<device>-<date>.json)")
    p.add_argument("--phases", default=",".join(PHASES),
                   help="comma-separated subset of cold,warm (warm needs cold's cache)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: the test config's host-driver train only")
    p.add_argument("--no-hlo", action="store_true", help="skip the StableHLO size dumps")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds per command")
    p.add_argument("--keep", default=None, help="keep the work folder (logs, caches) here")
    p.add_argument("--merge", default=None, metavar="JSON",
                   help="keep this earlier result's measurements (those measured again are "
                        "replaced) and judge the targets over both")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, prog: str = "python -m benchmarks.compile_time"
         ) -> int:
    """Runs the suite, writes the JSON and prints the verdicts; 2 on bad arguments."""
    args = parse_args(argv, prog)
    configs = ["test"] if args.quick else [c for c in args.configs.split(",") if c]
    commands = ["train_host"] if args.quick else [c for c in args.commands.split(",") if c]
    phases = [p for p in args.phases.split(",") if p]
    bad = [c for c in commands if c not in COMMANDS]
    if bad or not commands or not configs:
        print(f"{prog}: error: --commands: expected a subset of {','.join(COMMANDS)}, got "
              f"{args.commands!r}", file=sys.stderr)
        return 2
    if not phases or any(p not in PHASES for p in phases) or phases == ["warm"]:
        print(f"{prog}: error: --phases: expected cold or cold,warm (warm reuses cold's cache), "
              f"got {args.phases!r}", file=sys.stderr)
        return 2
    from bremen_jax.bench import common

    earlier = None
    if args.merge:
        try:
            earlier = json.loads(pathlib.Path(args.merge).read_text())
            assert earlier.get("suite") == "compile" and isinstance(earlier["measurements"], list)
        except (OSError, ValueError, KeyError, AssertionError) as e:
            print(f"{prog}: error: --merge {args.merge}: expected a compile suite JSON "
                  f"({type(e).__name__}: {e})", file=sys.stderr)
            return 2
    info = common.device_info()
    command = [*prog.split(), *(sys.argv[1:] if argv is None else argv)]
    out = pathlib.Path(args.out or common.RESULTS_DIR /
                       f"compile-{common.device_slug(info)}-{common.today()}.json")

    def document(new_rows: list[dict], finished: bool) -> dict:
        rows = list(new_rows)
        if earlier is not None:
            rows = merge_rows(earlier["measurements"], rows)
        doc = {"suite": "compile", "date": common.today(), "device": info, "command": command,
               "targets": verdicts(rows, info.get("cpu_count")), "measurements": rows,
               "finished": finished}
        if earlier is not None:  # every invocation whose measurements are kept
            doc["commands"] = [*(earlier.get("commands") or [earlier.get("command")]), command]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")
        return doc

    work = pathlib.Path(args.keep or tempfile.mkdtemp(prefix="bremen-compile-"))
    work.mkdir(parents=True, exist_ok=True)
    try:  # the document so far after each measurement: a time-boxed run keeps what it measured
        rows = run_measurements(configs, commands, work, not args.no_hlo, args.timeout,
                                log=lambda s: print(s, file=sys.stderr, flush=True),
                                phases=phases, progress=lambda rows: document(rows, False))
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    doc = document(rows, True)
    for t in doc["targets"]:
        print(f"{t['command']:15s} {t['config']:6s} {t['phase']:5s} {t['measure']:10s} "
              f"<= {t['limit_s']:5.1f} s: {t.get('value_s', '-')!s:>8} {t['verdict']}"
              f"{'  (' + t['why'] + ')' if 'why' in t else ''}")
    print(f"wrote {out}", file=sys.stderr)
    return 0 if all(r.get("rc", 0) == 0 for r in rows) else 1
