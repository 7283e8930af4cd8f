"""Offline BREMEN vs behaviour and BC over dataset sizes (issue 6's offline table).

``python -m experiments.offline_table [--tasks halfcheetah,hopper] [--sizes 1000000,100000,50000]
[--policy medium] [--noise pure] [--workdir runs/offline_table] [--out FILE] [FIELD=VALUE ...]``

For each task one dataset of the largest size is collected with ``bremen collect`` semantics
(:func:`bremen_jax.datasets.make.collect_dataset`; its collection time is recorded) and every size
is its first ``N`` rows (whole episodes of the first environments, the same as collecting ``N``
rows). Each size then runs ``bremen offline`` (:func:`bremen_jax.run.run_offline`) with
the task's paper config under the compute reduction in :data:`CPU_OVERRIDES` (the paper runs a
5 x 2x1024 ensemble, 300K BC steps and 6,250 TRPO iterations of 50K imagined transitions) plus
any ``FIELD=VALUE`` given. Results (behaviour, BC, BREMEN after the last iteration and the best
evaluation along the way, normalised scores, wall times) go to one JSON, rewritten after every
run so that a partial table survives an interruption.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

CPU_OVERRIDES = [
    "dynamics.hidden_sizes=(256, 256)",  # paper 1024x1024
    "dynamics.max_epochs=100",           # paper 200 (early stopping, patience 20)
    "bc.num_steps=20000",                # paper 300K
    "imagine.batch_size=10000",          # paper 50K
    "imagine.horizon=250",               # paper 250 (halfcheetah) / 1000 (hopper)
    "trpo.iterations=200",               # paper 6,250 offline
    "trpo.chunk=25",
]
# 1M rows: fewer epochs so that a fit stays within minutes (17K minibatch steps per epoch-20)
LARGE_ROWS, LARGE_EPOCHS = 500_000, 20


def _parse(argv) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="halfcheetah,hopper")
    p.add_argument("--sizes", default="1000000,100000,50000")
    p.add_argument("--policy", default="medium")
    p.add_argument("--noise", default="pure")
    p.add_argument("--workdir", default="runs/offline_table")
    p.add_argument("--out", default=None, help="JSON (default benchmarks/results/"
                                               "cpu-<n>core-<date>-offline-table.json)")
    p.add_argument("overrides", nargs="*", help="extra config overrides FIELD=VALUE")
    return p.parse_args(argv)


def _header(args: argparse.Namespace, date: str) -> dict:
    """The JSON document without rows: device, versions, the settings shared by every row."""
    import jax

    return {"experiment": "offline BREMEN vs behaviour and BC over dataset sizes (issue 6)",
            "device": f"{jax.devices()[0].platform} ({os.cpu_count()} cores)",
            "jax": jax.__version__, "date": date, "policy": args.policy, "noise": args.noise,
            "compute_overrides": CPU_OVERRIDES + list(args.overrides),
            "large_dataset_epochs": {"rows_at_least": LARGE_ROWS, "max_epochs": LARGE_EPOCHS},
            "rows": []}


def _dataset(task: str, args: argparse.Namespace, rows: int, work: pathlib.Path
             ) -> tuple[pathlib.Path, dict]:
    """``(path, metadata)`` of the task's largest dataset (collected unless already there)."""
    from bremen_jax.datasets.make import collect_dataset

    data_path = work / f"{task}-{args.policy}-{args.noise}-{rows}.npz"
    if data_path.exists():
        from bremen_jax.data.dataset import dataset_info
        info = dataset_info(data_path)
    else:
        info = collect_dataset(task, args.policy, args.noise, rows, data_path)
    print(f"[{task}] dataset {data_path}: behaviour return {info['behavior_return']:.1f}, "
          f"timing {info['timing']}", flush=True)
    return data_path, info


def _config(task: str, rows: int, overrides: list[str]):
    """The task's paper config under :data:`CPU_OVERRIDES` (fewer epochs for large datasets)."""
    from bremen_jax import config as config_lib

    cfg = config_lib.load_config(task)
    over = list(CPU_OVERRIDES)
    if rows >= LARGE_ROWS:
        over.append(f"dynamics.max_epochs={LARGE_EPOCHS}")
    cfg = config_lib.apply_overrides(cfg, over + list(overrides))
    config_lib.validate(cfg)
    return cfg


def _norm(task: str, ret: float | None, refs: tuple[float, float]) -> float | None:
    from bremen_jax.datasets import scores

    return None if ret is None else round(scores.normalized_score(task, ret, references=refs), 1)


def _row(task: str, n: int, info: dict, s: dict, cfg, collect: dict, run_dir: pathlib.Path,
         wall: float) -> dict:
    """One table row from the dataset's metadata ``info`` and the run's summary ``s``."""
    from bremen_jax.datasets import scores

    refs = scores.reference_returns(task)
    return {"task": task, "size": n, "behavior_return": info["behavior_return"],
            "bc_return": s["bc_return"], "bremen_final": s["bremen_return"],
            "bremen_best": max(s["bremen_returns"]) if s["bremen_returns"] else None,
            "bremen_returns_every_25": s["bremen_returns"],
            "normalized": {"behavior": _norm(task, info["behavior_return"], refs),
                           "bc": _norm(task, s["bc_return"], refs),
                           "bremen_final": _norm(task, s["bremen_return"], refs)},
            "reference_returns": {"random": refs[0], "expert": refs[1]},
            "collect_largest": collect, "run_dir": str(run_dir),
            "wall_time_s": round(wall, 1), "phase_time_s": s["wall_time_s"],
            "target_kl": float(cfg.trpo.target_kl),
            "dynamics_max_epochs": int(cfg.dynamics.max_epochs)}


def main(argv=None) -> int:
    args = _parse(argv)
    from bremen_jax.run import run_offline

    sizes = sorted({int(s) for s in args.sizes.split(",") if s}, reverse=True)
    tasks = [t for t in args.tasks.split(",") if t]
    work = pathlib.Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d")
    out = pathlib.Path(args.out or f"benchmarks/results/cpu-{os.cpu_count()}core-{date}-"
                                   f"offline-table.json")
    doc = _header(args, date)

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")

    for task in tasks:
        data_path, info = _dataset(task, args, sizes[0], work)
        collect = {"rows": sizes[0], **info["timing"]}
        for n in sizes:
            cfg = _config(task, n, args.overrides)
            run_dir = work / f"{task}-{n}-{time.strftime('%H%M%S')}"
            t0 = time.perf_counter()
            s = run_offline(cfg, data_path, run_dir, max_rows=n, progress=False).summary
            wall = time.perf_counter() - t0
            row = _row(task, n, info, s, cfg, collect, run_dir, wall)
            doc["rows"].append(row)
            save()
            print(f"[{task} {n}] behaviour {row['behavior_return']:.1f} BC {row['bc_return']:.1f} "
                  f"BREMEN final {row['bremen_final']:.1f} best {row['bremen_best']:.1f} "
                  f"({wall:.0f} s)", flush=True)
    save()
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
