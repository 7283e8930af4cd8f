"""Offline BREMEN vs behaviour and BC over dataset sizes (issues 6 and 11's offline table).

``python -m experiments.offline_table [--tasks halfcheetah,hopper] [--sizes 1000000,100000,50000]
[--policy medium] [--noise pure] [--seeds 5] [--protocol cpu|cpu-seeds] [--data-seed S]
[--workdir DIR] [--out FILE] [FIELD=VALUE ...]``

With ``--seeds N`` every (task, size) is one offline sweep (:func:`bremen_jax.sweep.run_sweep`
with ``dataset``): the N seeds are vmapped in one program, and the rows hold per-seed returns and
mean ± std (sample std) of behaviour, BC, BREMEN's last iterate and BREMEN's mean over its
evaluations (the expected return of a checkpoint drawn uniformly: a pick that needs no real
episode) and, where the runs log ``eval/model_return_min`` (``eval.member_rollouts > 0``, on in
``cpu-seeds``), BREMEN's *model-picked* checkpoint: among the BC init and every chunk's end, the
one whose imagined return under its most pessimistic ensemble member is highest
(:func:`model_picked`; no real episode either). ``--protocol cpu-seeds`` is the compute that
fits 5 seeds x 3 tasks x 3 sizes in about 1.5 hours of a 2-core CPU (:data:`PROTOCOLS`).
Without ``--seeds`` one run per row goes through ``bremen offline``'s host driver, as in the
first table.

For each task one dataset of the largest size is collected with ``bremen collect`` semantics
(:func:`bremen_jax.datasets.make.collect_dataset`; its collection time is recorded) and every size
is its first ``N`` rows (whole episodes of the first environments, the same as collecting ``N``
rows). The collection is seeded by ``--data-seed`` (default 0): on one machine the same seed
collects the same arrays, so a second draw of the dataset needs another seed (its file is named
``...-dataseedS.npz``; a file already there is reused only if it was collected with that seed).
Each size then runs ``bremen offline`` (:func:`bremen_jax.run.run_offline`) with
the task's paper config under the compute reduction in :data:`PROTOCOLS` (the paper runs a
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
from bremen_jax.cli.common import ArgumentParser  # one-line usage errors

PROTOCOL_CPU = [
    "dynamics.hidden_sizes=(256, 256)",  # paper 1024x1024
    "dynamics.max_epochs=100",           # paper 200 (early stopping, patience 20)
    "bc.num_steps=20000",                # paper 300K
    "imagine.batch_size=10000",          # paper 50K
    "imagine.horizon=250",               # paper 250 (halfcheetah) / 1000 (hopper)
    "trpo.iterations=200",               # paper 6,250 offline
    "trpo.chunk=25",
]
# 5 seeds vmapped on a 2-core CPU: about 2.5K ensemble minibatch steps per fit whatever the size,
# a 200-200 ensemble, 10K BC steps, 50 TRPO iterations of 5K imagined transitions, 10 evaluation
# episodes per checkpoint (every 25 iterations and after BC).
PROTOCOL_CPU_SEEDS = [
    "dynamics.hidden_sizes=(200, 200)",  # paper 1024x1024
    "bc.num_steps=10000",                # paper 300K
    "imagine.batch_size=5000",           # paper 50K
    "imagine.horizon=250",               # paper 250 (halfcheetah) / 1000 (hopper, walker2d)
    "trpo.iterations=50",                # paper 6,250 offline
    "trpo.chunk=25",
    "eval.num_episodes=10",
    "eval.member_rollouts=50",           # eval/model_return_min: the model-picked checkpoint
]
PROTOCOLS = {"cpu": PROTOCOL_CPU, "cpu-seeds": PROTOCOL_CPU_SEEDS}
# Ensemble epochs by dataset size: the first table keeps 100 (20 from 500K rows up, 17K minibatch
# steps at 1M); cpu-seeds keeps about 2.5K minibatch steps of 1,000 rows whatever the size.
EPOCHS = {"cpu": [(500_000, 20), (0, 100)],
          "cpu-seeds": [(500_000, 3), (100_000, 30), (0, 60)]}


def _parse(argv) -> argparse.Namespace:
    p = ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default="halfcheetah,hopper")
    p.add_argument("--sizes", default="1000000,100000,50000")
    p.add_argument("--policy", default="medium")
    p.add_argument("--noise", default="pure")
    p.add_argument("--workdir", default="runs/offline_table")
    p.add_argument("--seeds", type=int, default=None,
                   help="N seeds per row, vmapped in one offline sweep (default: one run per row "
                        "through the host driver, seed 0)")
    p.add_argument("--protocol", default="cpu", choices=sorted(PROTOCOLS))
    p.add_argument("--data-seed", type=_seed, default=0, metavar="S",
                   help="PRNG seed of the dataset collection (default 0); another seed is "
                        "another draw of the dataset from the same behaviour policy")
    p.add_argument("--out", default=None, help="JSON (default benchmarks/results/"
                                               "cpu-<n>core-<date>-offline-table.json)")
    p.add_argument("overrides", nargs="*", help="extra config overrides FIELD=VALUE")
    return p.parse_args(argv)


def _seed(text: str) -> int:
    """``--data-seed``'s type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _header(args: argparse.Namespace, date: str) -> dict:
    """The JSON document without rows: device, versions, the settings shared by every row."""
    import jax

    return {"experiment": "offline BREMEN vs behaviour and BC over dataset sizes (issue 6)",
            "device": f"{jax.devices()[0].platform} ({os.cpu_count()} cores)",
            "jax": jax.__version__, "date": date, "policy": args.policy, "noise": args.noise,
            "protocol": args.protocol, "seeds": args.seeds, "data_seed": args.data_seed,
            "compute_overrides": PROTOCOLS[args.protocol] + list(args.overrides),
            "dynamics_max_epochs_by_rows": [{"rows_at_least": r, "max_epochs": e}
                                            for r, e in EPOCHS[args.protocol]],
            "rows": []}


def _dataset(task: str, args: argparse.Namespace, rows: int, work: pathlib.Path
             ) -> tuple[pathlib.Path, dict]:
    """``(path, metadata)`` of the task's largest dataset (collected with ``args.data_seed``
    unless already there). Raises SystemExit when the file there was collected with another
    seed."""
    from bremen_jax.datasets.make import collect_dataset

    seed = args.data_seed
    data_path = work / (f"{task}-{args.policy}-{args.noise}-{rows}"
                        f"{f'-dataseed{seed}' if seed else ''}.npz")
    if data_path.exists():
        from bremen_jax.data.dataset import dataset_info
        info = dataset_info(data_path)
        if int(info.get("seed", 0)) != seed:
            raise SystemExit(f"{data_path}: collected with seed {info.get('seed')}, expected "
                             f"--data-seed {seed}; move the file or pass its seed")
    else:
        info = collect_dataset(task, args.policy, args.noise, rows, data_path, seed=seed)
    print(f"[{task}] dataset {data_path}: behaviour return {info['behavior_return']:.1f}, "
          f"timing {info['timing']}", flush=True)
    return data_path, info


def _config(task: str, rows: int, overrides: list[str], protocol: str = "cpu"):
    """The task's paper config under the protocol's overrides (fewer epochs for more rows)."""
    from bremen_jax import config as config_lib

    cfg = config_lib.load_config(task)
    over = list(PROTOCOLS[protocol])
    epochs = next(e for r, e in EPOCHS[protocol] if rows >= r)
    over.append(f"dynamics.max_epochs={epochs}")
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


def _stats(xs) -> dict:
    import numpy as np

    a = np.asarray([np.nan if x is None else x for x in xs], np.float64)
    return {"mean": round(float(a.mean()), 2),
            "std": round(float(a.std(ddof=1)) if a.size > 1 else 0.0, 2)}


def model_picked(metrics: dict) -> tuple[list[float], list[int]] | None:
    """Per seed, the real return of the checkpoint (BC init or a chunk's end) whose imagined
    return under the most pessimistic member (``eval/model_return_min``, fixed start states) is
    the highest, and its index (0 = BC init): a pick that needs no real episode. None when the
    run did not log the estimate (``eval.member_rollouts = 0``)."""
    import numpy as np

    pre, ev = metrics["preamble"], metrics["eval"]
    if "eval/model_return_min" not in ev:
        return None
    real = np.concatenate([np.asarray(pre["bc_eval/return_mean"])[:, :1],
                           np.asarray(ev["eval/return_mean"])[:, 0]], axis=1)        # [R, 1+C]
    est = np.concatenate([np.asarray(pre["bc_eval/model_return_min"])[:, :1],
                          np.asarray(ev["eval/model_return_min"])[:, 0]], axis=1)
    pick = np.argmax(np.where(np.isfinite(est), est, -np.inf), axis=1)
    return real[np.arange(len(pick)), pick].tolist(), pick.tolist()


def _seeded_row(task: str, n: int, info: dict, result, cfg, collect: dict,
                run_dir: pathlib.Path, wall: float) -> dict:
    """One table row from an offline sweep's per-seed rows: per-seed returns, mean ± std."""
    from bremen_jax.datasets import scores

    refs = scores.reference_returns(task)
    rows = result.rows
    per = {"bc": [r["bc_return_d1"] for r in rows],
           "bremen_final": [r["return_d1"] for r in rows],
           "bremen_mean": [r["mean_return"] for r in rows],
           "bremen_best": [r["best_return"] for r in rows]}
    picked = model_picked(result.metrics[0])
    if picked is not None:
        per["bremen_model_pick"] = picked[0]
    norm = {k: [_norm(task, x, refs) for x in v] for k, v in per.items()}
    (timing,) = result.timings
    return {"task": task, "size": n, "seeds": [r["seed"] for r in rows],
            "behavior_return": info["behavior_return"],
            "behavior_score": _norm(task, info["behavior_return"], refs),
            "returns": per, "scores": norm,
            "return_stats": {k: _stats(v) for k, v in per.items()},
            "score_stats": {k: _stats(v) for k, v in norm.items()},
            "evaluations": [result.metrics[0]["eval"]["eval/return_mean"][i, 0].tolist()
                            for i in range(len(rows))],
            "reference_returns": {"random": refs[0], "expert": refs[1]},
            "collect_largest": collect, "run_dir": str(run_dir),
            "wall_time_s": round(wall, 1), "compile_s": timing["compile_s"],
            "run_s": timing["run_s"], "target_kl": float(cfg.trpo.target_kl),
            "dynamics_max_epochs": int(cfg.dynamics.max_epochs),
            "dynamics_epochs_run": result.metrics[0]["preamble"]["dynamics/epochs"][:, 0]
            .tolist(),
            "model_pick_index": None if picked is None else picked[1]}


def markdown(doc: dict) -> str:
    """The seeded table: normalised score mean ± std (and raw returns) per task x size."""
    lines = [f"Offline BREMEN, {doc['seeds']} seeds, protocol `{doc['protocol']}` "
             f"({doc['device']}, {doc['date']}); normalised score mean ± std over seeds "
             f"(raw return in brackets).", "",
             "| task | rows | behaviour | BC | BREMEN last iterate | BREMEN mean over checkpoints "
             "| BREMEN model-picked | wall |", "|---|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(r, k):
        if k not in r["score_stats"]:
            return "–"
        sc, rt = r["score_stats"][k], r["return_stats"][k]
        return f"{sc['mean']:.1f} ± {sc['std']:.1f} ({rt['mean']:,.0f})"

    for r in doc["rows"]:
        lines.append(f"| {r['task']} | {r['size']:,} | {r['behavior_score']:.1f} "
                     f"({r['behavior_return']:,.0f}) | {cell(r, 'bc')} | {cell(r, 'bremen_final')} "
                     f"| {cell(r, 'bremen_mean')} | {cell(r, 'bremen_model_pick')} "
                     f"| {r['wall_time_s'] / 60:.1f} min |")
    return "\n".join(lines) + "\n"


def _run_seeded(task, n, args, data_path, work):
    """An offline sweep of ``args.seeds`` seeds on the first ``n`` rows: (result, cfg, dir)."""
    from bremen_jax import sweep

    cfg = _config(task, n, args.overrides, args.protocol)
    run_dir = work / f"{task}-{n}-seeds{args.seeds}-{time.strftime('%H%M%S')}"
    result = sweep.run_sweep((cfg, {"seeds": args.seeds}), run_dir, dataset=data_path,
                             max_rows=n)
    return result, cfg, run_dir


def main(argv=None) -> int:
    args = _parse(argv)
    from bremen_jax.run import run_offline

    sizes = sorted({int(s) for s in args.sizes.split(",") if s}, reverse=True)
    tasks = [t for t in args.tasks.split(",") if t]
    work = pathlib.Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    date = time.strftime("%Y-%m-%d")
    suffix = f"-{args.seeds}seeds" if args.seeds else ""
    out = pathlib.Path(args.out or f"benchmarks/results/cpu-{os.cpu_count()}core-{date}-"
                                   f"offline-table{suffix}.json")
    doc = _header(args, date)

    def save():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n")

    for task in tasks:
        data_path, info = _dataset(task, args, sizes[0], work)
        collect = {"rows": sizes[0], **info.get("timing", {})}
        for n in sizes:
            if args.seeds:
                t0 = time.perf_counter()
                result, cfg, run_dir = _run_seeded(task, n, args, data_path, work)
                row = _seeded_row(task, n, info, result, cfg, collect, run_dir,
                                  time.perf_counter() - t0)
                doc["rows"].append(row)
                save()
                st = row["return_stats"]
                print(f"[{task} {n}] behaviour {row['behavior_return']:.1f} BC "
                      f"{st['bc']['mean']:.1f}±{st['bc']['std']:.1f} BREMEN final "
                      f"{st['bremen_final']['mean']:.1f}±{st['bremen_final']['std']:.1f} mean "
                      f"{st['bremen_mean']['mean']:.1f}±{st['bremen_mean']['std']:.1f} "
                      f"({row['wall_time_s']:.0f} s)", flush=True)
                continue
            cfg = _config(task, n, args.overrides, args.protocol)
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
    if args.seeds:
        out.with_suffix(".md").write_text(markdown(doc))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
