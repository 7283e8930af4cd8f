"""Benchmark suites: ``bremen bench --suite quick|paper [options]`` (in a checkout also
``python -m benchmarks.run``).

* ``quick`` (a few minutes on a 2-core CPU): the ``quick`` config's sizes (3 x 200x200 ensemble,
  64x64 policy, 10K imagined transitions at H = 100, 16 envs), collection of 16 envs x 250 steps,
  a whole fit of 16K rows x 5 epochs, 1,000 BC steps, and one real deployment of the quick config.
* ``paper``: the paper's HalfCheetah sizes (reference/bremen-algorithm.md §8-§9): 5 x 2x1024
  ensemble at batch 1000, 200-200 policy, 50K imagined transitions at H = 250, BC batch 256,
  200 envs; collection of 200 envs x 100 steps, a whole fit of 24K rows x 5 epochs, 2,000 BC steps
  on 200K rows. The full deployment (hours on a CPU) runs only with ``--full-deployment``; the run
  is projected from the phases instead (:mod:`bremen_jax.bench.projection`).
* ``tiny``: the tests' ``test`` config (inverted_pendulum, tiny networks); checks the machinery.

Every phase runs at each precision of ``--precision`` (default: all three on GPU/TPU, ``highest``
on CPU); the matmul peak is measured per precision at the start (and again at the end, for
information). Results go to ``<device>-<date>-<suite>.json`` in the current directory, or in
``--out DIR`` (``--out FILE.json``: that file); the markdown report
(:mod:`bremen_jax.bench.report`) is printed. Config fields are set with ``--config.FIELD=VALUE``
(``--override FIELD=VALUE`` still works for one release, with a deprecation notice).

Nothing heavy is imported with this module (``bremen bench --help`` is instant): JAX and the
benchmarks are imported when a suite runs.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import os
import pathlib
import sys
import time
import traceback
from typing import Any, Callable, Sequence

# bremen_jax.bench.phases.GROUPS and bench.common.PRECISIONS, named here so that the command
# line is built without importing JAX (a test checks that they agree)
PHASE_GROUPS = ("collection", "ensemble", "bc", "trpo", "evaluation", "deployment")
PRECISIONS = ("highest", "tensorfloat32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Suite:
    config: str
    sizes: dict        # keyword arguments of bremen_jax.bench.phases.Sizes
    deployment: bool   # run a real deployment_step (else only with --full-deployment)
    peak_n: int | None = None  # matmul size of the peak measurement (None: 2048 CPU, 8192 else)


SUITES = {
    "quick": Suite("quick", dict(collect_steps=250, fit_rows=16_000, fit_epochs=5, fit_steps=20,
                                 bc_steps=1_000, bc_rows=16_000),
                   deployment=True),
    "paper": Suite("halfcheetah", dict(collect_steps=100, fit_rows=24_000, fit_epochs=5,
                                       fit_steps=20, bc_steps=2_000, bc_rows=200_000),
                   deployment=False),
    # the tests' smoke suite: the tiny ``test`` config (inverted_pendulum), seconds per phase
    "tiny": Suite("test", dict(collect_steps=10, fit_rows=400, fit_epochs=3, fit_steps=5,
                               bc_steps=20, bc_rows=200, repeats=1),
                  deployment=True, peak_n=256),
}


# ---------------------------------------------------------------------------------- the run
def _log(t0: float, msg: str) -> None:
    print(f"[{time.perf_counter() - t0:7.1f} s] {msg}", file=sys.stderr, flush=True)


def _summary(r: dict) -> str:
    if "error" in r:
        return f"{r['name']}: ERROR {r['error']}"
    frac = "" if r["fraction_of_peak"] is None else f", {100 * r['fraction_of_peak']:.0f}% of peak"
    return (f"{r['name']}: compile {r['compile_s']:.2f} s, median {r['median_s']:.4f} s, "
            f"{r['throughput']:.4g} {r['throughput_unit']}{frac}")


def run_suite(suite: str, groups: Sequence[str], precisions: Sequence[str], repeats: int | None,
              full_deployment: bool = False, config: str | None = None,
              overrides: Sequence[str] = (), sizes: Any = None,
              progress: Callable[[dict], None] | None = None) -> dict:
    """Runs the suite and returns the result document (see the module docstring). ``sizes``: a
    :class:`bremen_jax.bench.phases.Sizes` instead of the suite's. ``progress(doc)`` is called
    with the document so far (``"finished": False``) after every phase group, so that a run
    stopped by a time limit keeps what it measured (a lent GPU's time-boxed check lost a whole
    190 s bench that way)."""
    import jax

    # mujoco prints notices about optional backends on import: keep stdout for the report
    with contextlib.redirect_stdout(sys.stderr):
        from bremen_jax import config as config_lib
        from bremen_jax.algo.phases import make_phases
        from bremen_jax.bench import common, projection
        from bremen_jax.bench import phases as bench_phases
        from bremen_jax.bench.targets import evaluate_targets
        from bremen_jax.config import precision_context

    spec = SUITES[suite]
    sizes = sizes or bench_phases.Sizes(**spec.sizes)
    if repeats is not None:
        sizes = dataclasses.replace(sizes, repeats=repeats)
    config = config or spec.config
    t0 = time.perf_counter()
    info = common.device_info()
    doc: dict[str, Any] = {
        "schema": 1, "suite": suite, "config": config, "overrides": list(overrides),
        "date": common.today(), "git": common.git_commit(), "jax_version": jax.__version__,
        "backend": jax.default_backend(), "device": {**info, "load_avg_start":
                                                      common.load_average()},
        "precision": list(precisions), "sizes": dataclasses.asdict(sizes),
        "matmul_peak": {}, "phases": [], "projection": {}, "deployment_check": {},
        "finished": False,
    }
    progress = progress or (lambda doc: None)
    for p in precisions:
        doc["matmul_peak"][p] = common.matmul_peak(p, spec.peak_n)
        _log(t0, f"matmul peak {p}: {doc['matmul_peak'][p]['gflops']:.1f} GFLOP/s")
    for p in precisions:
        cfg = config_lib.apply_overrides(config_lib.load_config(config),
                                         [f"precision={p}", *overrides])
        static, hp = config_lib.split(cfg)
        results = []
        with precision_context(p):
            b = bench_phases.make_bench(static, hp, make_phases(static), sizes, p,
                                        doc["matmul_peak"][p]["flops_per_s"])
            for g in groups:
                if g == "deployment" and not (spec.deployment or full_deployment):
                    continue
                try:
                    new = bench_phases.GROUPS[g](b)
                except Exception as e:  # noqa: BLE001 - record it, go on with the other phases
                    traceback.print_exc()
                    new = [{"name": g, "group": g, "precision": p,
                            "error": f"{type(e).__name__}: {e}"}]
                for r in new:
                    _log(t0, f"{p} {_summary(r)}")
                results += new
                doc["phases"] += new
                progress(doc)
        doc["projection"][p] = projection.project(results, static)
        doc["deployment_check"][p] = projection.deployment_check(results, static)
    doc["matmul_peak_end_gflops"] = {p: common.matmul_peak(p, spec.peak_n)["gflops"]
                                     for p in precisions}
    doc["device"]["load_avg_end"] = common.load_average()
    doc["targets"] = evaluate_targets(doc)
    doc["wall_s"] = time.perf_counter() - t0
    doc["finished"] = True
    return doc


# --------------------------------------------------------------------------- the command line
def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``bremen bench`` (besides ``--config.FIELD=VALUE``)."""
    p.add_argument("--suite", choices=sorted(SUITES), default="quick",
                   help="quick: the quick config, minutes on a CPU; paper: the paper's "
                        "HalfCheetah sizes; tiny: the test config, checks the machinery")
    p.add_argument("--phases", default=",".join(PHASE_GROUPS), metavar="LIST",
                   help=f"comma-separated subset of {','.join(PHASE_GROUPS)} (default: all)")
    p.add_argument("--precision", default=None, metavar="LIST",
                   help=f"comma-separated subset of {','.join(PRECISIONS)} (default: all "
                        "three on GPU/TPU, highest on CPU)")
    p.add_argument("--repeats", type=int, default=None, metavar="N",
                   help="timed calls per phase after the warm-up call (default: the suite's)")
    p.add_argument("--out", default=None, metavar="DIR|FILE.json",
                   help="where the JSON results go: a directory (file name "
                        "<device>-<date>-<suite>.json) or a .json file (default: the current "
                        "directory)")
    p.add_argument("--full-deployment", action="store_true",
                   help="also time one real deployment in the paper suite (hours on a CPU)")
    p.add_argument("--config", default=None,
                   help="config name or .py file instead of the suite's (quick: quick, paper: "
                        "halfcheetah, tiny: test)")
    p.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                   help="deprecated spelling of --config.FIELD=VALUE (removed in the next "
                        "release)")


def _out_path(out: str | None, name: str) -> pathlib.Path:
    """``--out``: a ``.json`` file, else a directory that gets ``name`` (default: the cwd)."""
    if out is not None and out.endswith(".json"):
        return pathlib.Path(out)
    return pathlib.Path(out or ".") / name


def _check_out(out: str | None) -> None:
    """Raises ValueError if ``--out`` cannot be written (before anything runs)."""
    path = pathlib.Path(out or ".")
    folder = path.parent if path.suffix == ".json" else path
    while not folder.exists() and folder != folder.parent:   # the part that exists
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ValueError(f"--out {out}: {folder} is not a writable directory; expected a "
                         f"directory or a .json file in one")


def check_args(args: argparse.Namespace, overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(phase groups, precisions)`` of ``args``; ValueError for bad flags, config fields, an
    unknown task or an unwritable ``--out``, before anything is measured."""
    from bremen_jax import config as config_lib
    from bremen_jax import envs
    from bremen_jax.bench.phases import resolve_groups

    groups = resolve_groups([x for x in args.phases.split(",") if x])
    precisions = [x for x in args.precision.split(",") if x] if args.precision else None
    for x in precisions or ():
        if x not in PRECISIONS:
            raise ValueError(f"--precision: {x!r} is not one of {PRECISIONS}")
    if args.repeats is not None and args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if not groups or precisions == []:
        raise ValueError("--phases and --precision must name at least one entry")
    cfg = config_lib.apply_overrides(config_lib.load_config(args.config
                                                            or SUITES[args.suite].config),
                                     overrides)
    config_lib.validate(cfg)
    if cfg.task not in envs.list_tasks():
        close = difflib.get_close_matches(str(cfg.task), envs.list_tasks(), n=1)
        raise ValueError(f"unknown task {cfg.task!r}; valid tasks: {', '.join(envs.list_tasks())}"
                         + (f"; did you mean {close[0]!r}?" if close else ""))
    _check_out(args.out)
    import jax

    default = ["highest"] if jax.default_backend() == "cpu" else list(PRECISIONS)
    return groups, precisions or default


def run(args: argparse.Namespace, overrides: Sequence[str], command: Sequence[str]) -> int:
    """Runs the suite of ``args``, writes the JSON, prints the markdown report. Returns 0, or 1
    if a phase failed; bad arguments raise ValueError (nothing runs)."""
    if args.override:
        print("bremen bench: --override FIELD=VALUE is deprecated and will be removed; use "
              "--config.FIELD=VALUE", file=sys.stderr)
    overrides = [*args.override, *overrides]
    groups, precisions = check_args(args, overrides)
    from bremen_jax.bench import common, report

    paths: list[pathlib.Path] = []

    def progress(doc: dict) -> None:  # the partial document, where the finished one will go
        if not paths:
            paths.append(_out_path(args.out, common.default_out_name(doc["device"], args.suite,
                                                                     doc["date"])))
        write_json({**doc, "command": list(command)}, paths[0])

    doc = run_suite(args.suite, groups, precisions, args.repeats, args.full_deployment,
                    args.config, overrides, progress=progress)
    doc["command"] = list(command)
    out = paths[0] if paths else _out_path(args.out, common.default_out_name(
        doc["device"], args.suite, doc["date"]))
    write_json(doc, out)
    print(report.render(doc, source=str(out)))
    print(f"wrote {out}", file=sys.stderr)
    return 1 if any("error" in r for r in doc["phases"]) else 0


def main(argv: Sequence[str] | None = None, prog: str = "bremen bench") -> int:
    """:func:`run` from a list of flags (no ``--config.FIELD=VALUE``: ``bremen bench`` takes
    those). Returns 0, 1 if a phase failed, or 2 on bad arguments (one line on stderr)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(prog=prog, description="Benchmark suites of bremen_jax.")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args, [], [*prog.split(), *argv])
    except (ValueError, FileNotFoundError) as e:
        print(f"{prog}: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


def _json_default(x):
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def write_json(doc: dict, path) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")
