"""Sweep throughput vs the number of runs in one compiled program (issue 5, DESIGN §6-§7).

``python -m benchmarks.sweep_scaling [--config quick] [--runs 1,2,4,8] [--deployments 1]
[--devices N] [--out FILE] [FIELD=VALUE ...]``

For each run count ``R`` the benchmark runs one sweep of ``R`` seeds of the config (one
``jit(vmap(train))`` program, :func:`bremen_jax.sweep.run_sweep`) and records the AOT compile
time, the wall time of the program (ended by ``block_until_ready``) and the throughput in runs
per hour. Throughput grows with ``R`` until the device saturates; the speed-up column is
``throughput(R) / throughput(first R measured)``.

``--deployments D`` (default 1) runs only the first ``D`` of the config's ``K`` deployments of
each run (same buffer capacity and shapes as the full run). Runs/hour of the full run are
extrapolated as ``measured x D / K``: later deployments fit the ensemble on more data, so the
extrapolation is an upper bound; ``--deployments K`` measures whole runs.

``--devices N`` re-runs this script in a subprocess with
``XLA_FLAGS=--xla_force_host_platform_device_count=N`` (N fake CPU devices sharing the same
cores: it measures the sharding overhead, not a speed-up). Each measurement is one execution
(the quick config takes minutes per run); the 1-minute load average before and after is
recorded because the machine may be shared.

Writes ``benchmarks/results/<device>-<date>-sweep-scaling[-<config>].json`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from bremen_jax.cli.common import ArgumentParser  # one-line usage errors

CHILD_ENV = "BREMEN_SWEEP_SCALING_CHILD"
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def device_label(num_devices: int) -> str:
    import jax

    dev = jax.devices()[0]
    if dev.platform == "cpu":
        label = f"cpu-{os.cpu_count()}core"
        return label if num_devices == 1 else f"{label}-{num_devices}dev"
    kind = getattr(dev, "device_kind", dev.platform).lower().replace(" ", "-")
    return kind if num_devices == 1 else f"{kind}-x{num_devices}"


def measure(config: str, overrides: list[str], runs: list[int], deployments: int) -> dict:
    import jax

    from bremen_jax.bench.common import device_info
    from bremen_jax import config as config_lib
    from bremen_jax import sweep

    cfg = config_lib.apply_overrides(config_lib.load_config(config), overrides)
    static, _ = config_lib.split(cfg)
    K = static.deploy.num_deployments
    if not 1 <= deployments <= K:
        raise ValueError(f"--deployments must be in [1, {K}] for config {config!r}, "
                         f"got {deployments}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for R in runs:
            load0 = os.getloadavg()[0]
            result = sweep.run_sweep((cfg, {"seeds": R}), pathlib.Path(tmp) / f"r{R}",
                                     num_deployments=deployments)
            (t,) = result.timings
            rph = R / t["run_s"] * 3600
            rows.append({
                "runs": R, "padded_runs": t["padded_runs"], "devices": t["devices"],
                "compile_s": t["compile_s"], "run_s": t["run_s"],
                "seconds_per_run": t["run_s"] / R,
                "runs_per_hour_measured": rph,
                "runs_per_hour_full_run_extrapolated": rph * deployments / K,
                "memory_per_device_bytes": (t["memory_compiled"] or {}).get("need_bytes"),
                "run_state_bytes": t["memory_estimate"]["run_state_bytes"],
                "final_return_mean": result.summary["points"][0]["final_return_mean"],
                "load_avg_1min_before": load0, "load_avg_1min_after": os.getloadavg()[0],
            })
            print(f"R={R:3d}: compile {t['compile_s']:7.1f} s, run {t['run_s']:8.1f} s, "
                  f"{rph:9.1f} runs/hour ({deployments} deployment(s))", flush=True)
    for r in rows:  # runs/hour relative to the first (smallest) run count measured
        r["throughput_vs_first"] = r["runs_per_hour_measured"] / rows[0]["runs_per_hour_measured"]
    return {
        "benchmark": "sweep_scaling", "config": config, "overrides": overrides,
        "device": device_info(), "device_label": device_label(jax.device_count()),
        "precision": static.precision, "date": time.strftime("%Y-%m-%d"),
        "num_deployments": K, "deployments_measured": deployments,
        "extrapolation": (f"runs_per_hour_full_run_extrapolated = measured x {deployments}/{K}; "
                          f"later deployments fit the ensemble on more data, so this is an "
                          f"upper bound" if deployments < K else "whole runs measured"),
        "note": "one execution per run count (no repeats); compile = AOT lower().compile()",
        "results": rows,
    }


def markdown(result: dict) -> str:
    lines = [f"Sweep scaling, `{result['config']}` config, {result['device_label']} "
             f"({result['deployments_measured']}/{result['num_deployments']} deployments "
             f"measured)", "",
             "| runs | compile s | run s | s / run | runs/hour (measured) | runs/hour (full, "
             f"extrapolated) | vs {result['results'][0]['runs']} run(s) |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in result["results"]:
        lines.append(f"| {r['runs']} | {r['compile_s']:.1f} | {r['run_s']:.1f} | "
                     f"{r['seconds_per_run']:.1f} | {r['runs_per_hour_measured']:.1f} | "
                     f"{r['runs_per_hour_full_run_extrapolated']:.1f} | "
                     f"{r['throughput_vs_first']:.2f}x |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="quick", help="config name or path (default: quick)")
    p.add_argument("--runs", default="1,2,4,8", help="comma-separated run counts")
    p.add_argument("--deployments", type=int, default=1,
                   help="deployments measured per run (default 1; the rest is extrapolated)")
    p.add_argument("--devices", type=int, default=None,
                   help="N fake CPU devices (re-runs this script in a subprocess)")
    p.add_argument("--out", default=None, help="output JSON (default: benchmarks/results/...)")
    p.add_argument("overrides", nargs="*", help="config overrides FIELD=VALUE")
    args = p.parse_args(argv)
    runs = [int(x) for x in args.runs.split(",") if x.strip()]
    if not runs or min(runs) <= 0:
        p.error(f"--runs must be positive ints, got {args.runs!r}")
    if args.devices is not None and os.environ.get(CHILD_ENV) != "1":
        if args.devices <= 0:
            p.error("--devices must be > 0")
        env = dict(os.environ, JAX_PLATFORMS="cpu", **{CHILD_ENV: "1"})
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count="
                            f"{args.devices}").strip()
        argv = list(sys.argv[1:] if argv is None else argv)
        return subprocess.call([sys.executable, "-m", "benchmarks.sweep_scaling", *argv],
                               env=env, cwd=pathlib.Path(__file__).resolve().parent.parent)
    result = measure(args.config, list(args.overrides), runs, args.deployments)
    if args.devices is not None and result["device"]["num_devices"] != args.devices:
        print(f"expected {args.devices} devices, got {result['device']['num_devices']}",
              file=sys.stderr)
        return 1
    name = pathlib.Path(args.config).stem
    out = pathlib.Path(args.out) if args.out else RESULTS / (
        f"{result['device_label']}-{result['date']}-sweep-scaling"
        f"{'' if name == 'quick' else '-' + name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
