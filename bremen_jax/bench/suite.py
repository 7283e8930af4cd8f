"""Benchmark suites: ``bremen bench --suite quick|paper [options]`` (issue 7; in a checkout also
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
information). Results go to ``benchmarks/results/<device>-<date>-<suite>.json`` unless ``--out``;
the markdown report (:mod:`bremen_jax.bench.report`) is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import pathlib
import sys
import time
import traceback
from typing import Any, Sequence

import jax

# mujoco prints notices about optional backends on import: keep stdout for the markdown report
with contextlib.redirect_stdout(sys.stderr):
    from bremen_jax import config as config_lib
    from bremen_jax.algo.phases import make_phases
    from bremen_jax.bench import common, projection, report
    from bremen_jax.bench import phases as bench_phases
    from bremen_jax.bench.targets import evaluate_targets
    from bremen_jax.config import precision_context


@dataclasses.dataclass(frozen=True)
class Suite:
    config: str
    sizes: bench_phases.Sizes
    deployment: bool   # run a real deployment_step (else only with --full-deployment)
    peak_n: int | None = None  # matmul size of the peak measurement (None: 2048 CPU, 8192 else)


SUITES = {
    "quick": Suite("quick", bench_phases.Sizes(collect_steps=250, fit_rows=16_000, fit_epochs=5,
                                               fit_steps=20, bc_steps=1_000, bc_rows=16_000),
                   deployment=True),
    "paper": Suite("halfcheetah", bench_phases.Sizes(collect_steps=100, fit_rows=24_000,
                                                     fit_epochs=5, fit_steps=20, bc_steps=2_000,
                                                     bc_rows=200_000),
                   deployment=False),
    # the tests' smoke suite: the tiny ``test`` config (inverted_pendulum), seconds per phase
    "tiny": Suite("test", bench_phases.Sizes(collect_steps=10, fit_rows=400, fit_epochs=3,
                                             fit_steps=5, bc_steps=20, bc_rows=200, repeats=1),
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
              overrides: Sequence[str] = (), sizes: bench_phases.Sizes | None = None) -> dict:
    """Runs the suite and returns the result document (see the module docstring)."""
    spec = SUITES[suite]
    sizes = sizes or spec.sizes
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
    }
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
        doc["phases"] += results
        doc["projection"][p] = projection.project(results, static)
        doc["deployment_check"][p] = projection.deployment_check(results, static)
    doc["matmul_peak_end_gflops"] = {p: common.matmul_peak(p, spec.peak_n)["gflops"]
                                     for p in precisions}
    doc["device"]["load_avg_end"] = common.load_average()
    doc["targets"] = evaluate_targets(doc)
    doc["wall_s"] = time.perf_counter() - t0
    return doc


def _default_precisions() -> list[str]:
    return ["highest"] if jax.default_backend() == "cpu" else list(common.PRECISIONS)


def parse_args(argv: Sequence[str] | None, prog: str = "bremen bench"
               ) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=prog,
                                description="Benchmark suites of bremen_jax (issue 7).")
    p.add_argument("--suite", choices=sorted(SUITES), default="quick")
    p.add_argument("--phases", default=",".join(bench_phases.GROUPS),
                   help=f"comma-separated subset of {','.join(bench_phases.GROUPS)}")
    p.add_argument("--precision", default=None,
                   help="comma-separated subset of highest,tensorfloat32,bfloat16 (default: all "
                        "three on GPU/TPU, highest on CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per phase after warm-up")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/"
                                               "<device>-<date>-<suite>.json)")
    p.add_argument("--full-deployment", action="store_true",
                   help="also time one real deployment in the paper suite (hours on a CPU)")
    p.add_argument("--config", default=None, help="config name or file instead of the suite's")
    p.add_argument("--override", action="append", default=[], metavar="FIELD=VALUE",
                   help="config override (repeatable), e.g. backend=spring")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None, prog: str = "bremen bench") -> int:
    """Runs a suite, writes the JSON, prints the markdown report. Returns 0, or 1 if a phase
    failed, or 2 on bad arguments (``bremen bench ARGS`` is ``main(ARGS)``)."""
    args = parse_args(argv, prog)
    try:
        groups = bench_phases.resolve_groups([x for x in args.phases.split(",") if x])
        precisions = ([x for x in args.precision.split(",") if x] if args.precision
                      else _default_precisions())
        for x in precisions:
            if x not in common.PRECISIONS:
                raise ValueError(f"--precision: {x!r} is not one of {common.PRECISIONS}")
        if args.repeats is not None and args.repeats < 1:
            raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
        if not groups or not precisions:
            raise ValueError("--phases and --precision must name at least one entry")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    doc = run_suite(args.suite, groups, precisions, args.repeats, args.full_deployment,
                    args.config, args.override)
    doc["command"] = [*prog.split(), *(sys.argv[1:] if argv is None else argv)]
    out = args.out or common.default_out_path(doc["device"], args.suite, doc["date"])
    write_json(doc, out)
    print(report.render(doc, source=str(out)))
    print(f"wrote {out}", file=sys.stderr)
    return 1 if any("error" in r for r in doc["phases"]) else 0


def _json_default(x):
    if hasattr(x, "item"):
        return x.item()
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def write_json(doc: dict, path) -> None:
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=_json_default) + "\n")


def main_group(group: str, argv: Sequence[str] | None = None, prog: str = "bremen bench") -> int:
    """:func:`main` for one phase group, at the paper suite's sizes unless ``--suite`` is given
    (the single-benchmark scripts ``benchmarks/dynamics_fit.py``, ``trpo_iteration.py``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    suite = [] if "--suite" in argv else ["--suite", "paper"]
    return main([*suite, "--phases", group, *argv], prog=prog)


if __name__ == "__main__":
    sys.exit(main())
