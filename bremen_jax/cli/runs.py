"""``bremen train`` and ``bremen offline``: new runs and ``--resume``, via :mod:`bremen_jax.run`."""

from __future__ import annotations

import argparse
import pathlib
import time
from typing import Sequence

from bremen_jax.cli.common import CliError, add_command, check_task, fmt, load_cfg

# `bremen train` runs quick_tuned (quick's sizes, four measured fixes, twice the real batch, the
# original's early-stopping patience, the paper's H = 250 with H = 100 in deployments 1-2; see its
# docstring; `--config quick` is the original algorithm); `bremen offline` keeps quick: offline,
# the consistent ratios and the disagreement penalty measured worse (README, "Offline results").
DEFAULT_CONFIG = {"train": "quick_tuned", "offline": "quick"}


def _add_run_flags(p: argparse.ArgumentParser, command: str) -> None:
    """The flags ``train`` and ``offline`` share."""
    p.add_argument("--config", default=None,
                   help="config name in bremen_jax/configs or a .py file with get_config() "
                        f"(default: {DEFAULT_CONFIG[command]}; with --resume: the config stored "
                        f"in --workdir)")
    p.add_argument("--workdir", default=None,
                   help=f"output directory (default: runs/{command}-<config>-<timestamp>); must "
                        f"not hold a run unless --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --workdir from its latest intact checkpoint")
    p.add_argument("--seed", type=int, default=None, help="the run's seed (config field seed)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _resumed_config(args: argparse.Namespace, overrides: Sequence[str], kind: str):
    """The stored config of the run in ``--workdir`` with explicit ``--config.F=V`` changes."""
    from bremen_jax import config as config_lib
    from bremen_jax.run import load_run_config, load_run_info
    from bremen_jax.run.checkpoint import config_diff

    if args.workdir is None:
        raise CliError("--resume needs --workdir DIR (the run to continue)")
    stored = load_run_config(args.workdir)
    info = load_run_info(args.workdir)
    if info.get("kind", "train") != kind:
        raise CliError(f"the run in {args.workdir} is a `bremen {info.get('kind')}` run; "
                       f"continue it with `bremen {info.get('kind')} --resume`")
    if args.config is not None:
        diff = config_diff(stored.to_dict(), config_lib.load_config(args.config).to_dict())
        if diff:
            raise CliError(
                f"--config {args.config} differs from the config of the run in {args.workdir} "
                f"({'; '.join(diff)}); leave out --config to resume with the stored config, "
                f"or change fields explicitly with --config.FIELD=VALUE")
    cfg = config_lib.apply_overrides(stored, overrides)
    config_lib.validate(cfg)
    check_task(cfg)
    return cfg, info


def _config(args: argparse.Namespace, overrides: Sequence[str], kind: str):
    """(config, run info) of a new run or of the run to resume; checks the work directory."""
    from bremen_jax.run import check_new_workdir

    overrides = list(overrides) + ([] if args.seed is None else [f"seed={args.seed}"])
    if args.resume:
        return _resumed_config(args, overrides, kind)
    args.config = args.config or DEFAULT_CONFIG[kind]
    if args.workdir is None:
        args.workdir = str(pathlib.Path("runs") / f"{kind}-{pathlib.Path(args.config).stem}-"
                                                  f"{time.strftime('%Y%m%d-%H%M%S')}")
    cfg = load_cfg(args, overrides)
    check_new_workdir(args.workdir)
    return cfg, {}


def _console(args: argparse.Namespace, what: str):
    from rich.console import Console

    from bremen_jax.run.compile import enable_persistent_cache

    enable_persistent_cache()
    console = Console()
    console.print(f"bremen {what}, workdir {args.workdir}{' (resumed)' if args.resume else ''}")
    return console


def _write_curves(workdir: str, result, console) -> None:
    """``RUN_DIR/curves.png`` (:mod:`bremen_jax.run.plots`) when this session ran something (or
    the file is missing); a plotting failure never loses the run: one warning line."""
    path = pathlib.Path(workdir) / "curves.png"
    if result.state is None and path.is_file():
        return
    try:
        from bremen_jax.run.plots import plot

        plot([workdir], path)
        console.print(f"learning curves: {path}")
    except Exception as e:  # noqa: BLE001 - never lose a finished run to a plot
        console.print(f"warning: could not draw {path}: {type(e).__name__}: "
                      f"{' '.join(str(e).split())}")


def cmd_offline(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from bremen_jax.datasets.scores import scores_or_none
    from bremen_jax.run import run_offline

    cfg, info = _config(args, overrides, "offline")
    dataset = args.dataset or info.get("dataset")
    if dataset is None:
        raise CliError("--dataset FILE is required (unless --resume)")
    if not pathlib.Path(dataset).is_file():   # before the banner and the compile
        raise FileNotFoundError(f"{dataset}: no such dataset file")
    console = _console(args, f"offline: {cfg.task} ({cfg.backend}) on {dataset}")
    result = run_offline(cfg, dataset, args.workdir, max_rows=info.get("max_rows"),
                         resume=args.resume, console=console, progress=not args.no_progress,
                         score_fn=scores_or_none)
    _write_curves(args.workdir, result, console)
    s = result.summary
    print(f"behavior return {fmt(s['behavior_return'])}  BC {fmt(s['bc_return'])}  "
          f"BREMEN {fmt(s['bremen_return'])}  (summary: {args.workdir}/summary.json)")
    if s.get("normalized_scores"):
        print("normalised scores (100 = the shipped expert, 0 = uniform random): "
              + ", ".join(f"{k} {fmt(v)}" for k, v in s["normalized_scores"].items()))
    return 0 if s["finished"] else 1


def cmd_train(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from bremen_jax.run import run_compiled, run_host
    from bremen_jax.run.display import print_summary

    cfg, _ = _config(args, overrides, "train")
    console = _console(args, f"train: {cfg.task} ({cfg.backend}), {args.driver} driver")
    if args.driver == "host":
        result = run_host(cfg, args.workdir, resume=args.resume, console=console,
                          progress=not args.no_progress)
    else:
        result = run_compiled(cfg, args.workdir, resume=args.resume, console=console)
    print_summary(result.summary, console)
    _write_curves(args.workdir, result, console)
    console.print(f"summary: {pathlib.Path(args.workdir) / 'summary.json'}")
    return 0 if result.summary["finished"] else 1


def register(sub) -> None:
    p = add_command(sub, "train", cmd_train, overrides=True,
                    help="recursive (deployment-efficient) BREMEN in a Brax task",
        description="Run K deployments: collect real data with the current policy, fit the "
                    "ensemble, clone the policy, improve it with TRPO on imagined rollouts. "
                    "Writes config.json, chunks/deployments.{csv,jsonl}, tb/, checkpoints/, "
                    "summary.json and curves.png (`bremen plot`) in --workdir. Override any "
                    "config field with --config.FIELD=VALUE. Ctrl-C stops at once; --resume "
                    "continues.")
    _add_run_flags(p, "train")
    p.add_argument("--driver", choices=("host", "compiled"), default="host",
                   help="host: Python loop over compiled phases with progress, logs and "
                        "checkpoints per TRPO chunk; compiled: the whole run as one XLA program")
    p = add_command(sub, "offline", cmd_offline, overrides=True,
                    help="offline BREMEN on a dataset file",
        description="Fit the ensemble on DATASET, clone the behaviour policy, re-initialise the "
                    "target policy from the clone and improve it with TRPO on imagined rollouts: "
                    "the run loop of `train` with one deployment (same files, checkpoints and "
                    "--resume). Override any config field with --config.FIELD=VALUE.")
    _add_run_flags(p, "offline")
    p.add_argument("--dataset", default=None,
                   help="dataset file (.npz) written by bremen_jax (with --resume: the run's)")
