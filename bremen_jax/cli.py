"""The ``bremen`` command line.

Each subcommand lives in its own function ``_cmd_<name>`` registered in ``_build_parser``; a
subcommand's heavy imports happen inside it so that ``bremen --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def _cmd_tasks(args: argparse.Namespace) -> int:
    from bremen_jax import envs

    for name in envs.list_tasks():
        print(name)
    return 0


def _cmd_dataset_info(args: argparse.Namespace) -> int:
    from bremen_jax.data import dataset

    data, meta = dataset.load_dataset(args.file, task=args.task)
    print(f"{args.file}: {data.obs.shape[0]} transitions, obs_dim {data.obs.shape[1]}, "
          f"act_dim {data.action.shape[1]}")
    for key in sorted(meta):
        print(f"  {key}: {meta[key]}")
    return 0


def _split_overrides(unknown: Sequence[str]) -> list[str]:
    """``--config.a.b=v`` / ``--config.a.b v`` flags -> ``["a.b=v", ...]``; anything else is an error."""
    out, i = [], 0
    unknown = list(unknown)
    while i < len(unknown):
        arg = unknown[i]
        if not arg.startswith("--config."):
            raise CliError(f"unrecognized argument {arg!r}; config fields are overridden as "
                           f"--config.FIELD=VALUE (e.g. --config.trpo.target_kl=0.05)")
        body = arg[len("--config."):]
        if "=" not in body:
            if i + 1 >= len(unknown):
                raise CliError(f"{arg} needs a value (--config.FIELD=VALUE)")
            body = f"{body}={unknown[i + 1]}"
            i += 1
        out.append(body)
        i += 1
    return out


def _load_cfg(args: argparse.Namespace, overrides: Sequence[str]):
    from bremen_jax import config as config_lib

    cfg = config_lib.load_config(args.config)
    cfg = config_lib.apply_overrides(cfg, overrides)
    config_lib.validate(cfg)
    return cfg


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
    return cfg, info


def _new_config(args: argparse.Namespace, overrides: Sequence[str], default: str):
    from bremen_jax.run import check_new_workdir

    args.config = args.config or default
    cfg = _load_cfg(args, overrides)
    check_new_workdir(args.workdir)
    return cfg


def _default_workdir(args: argparse.Namespace, command: str) -> None:
    import pathlib
    import time

    if args.workdir is None and not args.resume:
        name = pathlib.Path(args.config or "quick").stem
        args.workdir = str(pathlib.Path("runs") / f"{command}-{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def _cmd_offline(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from rich.console import Console

    from bremen_jax.datasets.scores import scores_or_none
    from bremen_jax.run import run_offline
    from bremen_jax.run.compile import enable_persistent_cache

    _default_workdir(args, "offline")
    if args.resume:
        cfg, info = _resumed_config(args, overrides, "offline")
        dataset, max_rows = args.dataset or info["dataset"], info.get("max_rows")
    else:
        if args.dataset is None:
            raise CliError("--dataset FILE is required (unless --resume)")
        cfg, dataset, max_rows = _new_config(args, overrides, "quick"), args.dataset, None
    enable_persistent_cache()
    console = Console()
    console.print(f"bremen offline: {cfg.task} ({cfg.backend}) on {dataset}, workdir "
                  f"{args.workdir}{' (resumed)' if args.resume else ''}")
    result = run_offline(cfg, dataset, args.workdir, max_rows=max_rows, resume=args.resume,
                         console=console, progress=not args.no_progress, score_fn=scores_or_none)
    summary = result.summary
    print(f"behavior return {_fmt(summary['behavior_return'])}  BC {_fmt(summary['bc_return'])}  "
          f"BREMEN {_fmt(summary['bremen_return'])}  (summary: {args.workdir}/summary.json)")
    sc = summary.get("normalized_scores")
    if sc:
        print("normalised scores (100 = the shipped expert, 0 = uniform random): "
              + ", ".join(f"{k} {_fmt(v)}" for k, v in sc.items()))
    return 0 if summary["finished"] else 1


def _cmd_train(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    import pathlib

    from rich.console import Console

    from bremen_jax.run import run_compiled, run_host
    from bremen_jax.run.compile import enable_persistent_cache
    from bremen_jax.run.display import print_summary

    _default_workdir(args, "train")
    if args.resume:
        cfg, _ = _resumed_config(args, overrides, "train")
    else:
        cfg = _new_config(args, overrides, "quick")
    enable_persistent_cache()
    console = Console()
    console.print(f"bremen train: {cfg.task} ({cfg.backend}), {args.driver} driver, "
                  f"workdir {args.workdir}{' (resumed)' if args.resume else ''}")
    if args.driver == "host":
        result = run_host(cfg, args.workdir, resume=args.resume, console=console,
                          progress=not args.no_progress)
    else:
        result = run_compiled(cfg, args.workdir, resume=args.resume, console=console)
    print_summary(result.summary, console)
    console.print(f"summary: {pathlib.Path(args.workdir) / 'summary.json'}")
    return 0 if result.summary["finished"] else 1


def _cmd_collect(args: argparse.Namespace) -> int:
    from bremen_jax.datasets.make import collect_dataset

    extra = {} if args.num_envs is None else {"num_envs": args.num_envs}
    info = collect_dataset(args.task, args.policy, args.noise, args.size, args.out,
                           seed=args.seed, backend=args.backend,
                           episode_length=args.episode_length, **extra)
    t = info["timing"]
    score = info.get("behavior_normalized_score")
    print(f"{args.out}: {info['size']} transitions of {args.task}, policy {args.policy}, "
          f"noise {info['noise']}; behaviour return {_fmt(info['behavior_return'])} "
          f"(normalised {_fmt(score)}), dataset return {_fmt(info['dataset_return'])}; "
          f"collected in {t['collect_s']:.1f} s + compile {t['compile_s']:.1f} s "
          f"({t['steps_per_s']:,.0f} steps/s)")
    return 0


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def _cmd_import_dataset(args: argparse.Namespace) -> int:
    from bremen_jax.datasets.d4rl_io import import_dataset

    info = import_dataset(args.source, args.out, task=args.task, fmt=args.format)
    print(f"{args.out}: {info['size']} transitions imported from {args.source} "
          f"({info['behavior_policy'].get('imported_from', args.format)})")
    return 0


def _cmd_export_dataset(args: argparse.Namespace) -> int:
    import pathlib

    from bremen_jax.data import dataset
    from bremen_jax.datasets.d4rl_io import export_d4rl_hdf5

    data, meta = dataset.load_dataset(args.file)
    if not args.overwrite and pathlib.Path(args.out).exists():
        raise CliError(f"--out {args.out} already exists; refusing to overwrite it (pass "
                       f"--overwrite to replace it)")
    path = export_d4rl_hdf5(data, args.out, meta, overwrite=args.overwrite)
    print(f"{path}: {data.obs.shape[0]} transitions in the D4RL HDF5 layout")
    return 0


def _cmd_sweep(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from rich.console import Console

    from bremen_jax import sweep

    if args.distributed:
        pid, count = sweep.initialize_distributed()
        print(f"bremen sweep: process {pid} of {count}")
    import jax

    devices = None
    if args.num_devices is not None:
        if args.num_devices < 1 or args.num_devices > len(jax.devices()):
            raise CliError(f"--num-devices must be in 1..{len(jax.devices())} (the devices "
                           f"present), got {args.num_devices}")
        devices = jax.devices()[:args.num_devices]
    console = Console()
    result = sweep.run_sweep(args.config, args.workdir, overrides=overrides, devices=devices,
                             console=console)
    console.print(f"results: {result.workdir / 'runs.csv'}, summary: "
                  f"{result.workdir / 'summary.md'}, plots: {result.workdir / 'plots'}")
    return 0


def _build_parser() -> tuple[argparse.ArgumentParser, dict[str, Callable]]:
    parser = argparse.ArgumentParser(
        prog="bremen",
        description="BREMEN (Behavior-Regularized Model-ENsemble) in JAX.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    handlers: dict[str, Callable] = {}

    p = sub.add_parser("tasks", help="list the registered tasks")
    handlers["tasks"] = _cmd_tasks

    p = sub.add_parser("dataset-info", help="validate a dataset file and print its metadata")
    p.add_argument("file", help="dataset file (.npz) written by bremen_jax")
    p.add_argument("--task", default=None, help="also check compatibility with this task")
    handlers["dataset-info"] = _cmd_dataset_info

    p = sub.add_parser(
        "offline", help="offline BREMEN on a dataset file",
        description="Fit the ensemble on DATASET, clone the behaviour policy, re-initialise the "
                    "target policy from the clone and improve it with TRPO on imagined rollouts. "
                    "Override any config field with --config.FIELD=VALUE.")
    p.add_argument("--config", default=None,
                   help="config name in bremen_jax/configs or a .py file with get_config() "
                        "(default: quick; with --resume: the config stored in --workdir)")
    p.add_argument("--dataset", default=None,
                   help="dataset file (.npz) written by bremen_jax (with --resume: the run's)")
    p.add_argument("--workdir", default=None,
                   help="output directory (default: runs/offline-<config>-<timestamp>); must not "
                        "hold a run unless --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --workdir from its latest checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    handlers["offline"] = _cmd_offline

    p = sub.add_parser(
        "train", help="recursive (deployment-efficient) BREMEN in a Brax task",
        description="Run K deployments: collect real data with the current policy, fit the "
                    "ensemble, clone the policy, improve it with TRPO on imagined rollouts. "
                    "Writes config.json, chunks/deployments.{csv,jsonl}, tb/, checkpoints/ and "
                    "summary.json in --workdir. Override any config field with "
                    "--config.FIELD=VALUE.")
    p.add_argument("--config", default=None,
                   help="config name in bremen_jax/configs or a .py file with get_config() "
                        "(default: quick; with --resume: the config stored in --workdir)")
    p.add_argument("--workdir", default=None,
                   help="output directory (default: runs/<config>-<timestamp>); must not hold "
                        "a run unless --resume")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --workdir from its latest checkpoint")
    p.add_argument("--driver", choices=("host", "compiled"), default="host",
                   help="host: Python loop over jitted phases with progress, logs and "
                        "checkpoints per TRPO chunk; compiled: the whole run as one XLA program")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    handlers["train"] = _cmd_train

    p = sub.add_parser(
        "collect", help="collect an offline dataset (behaviour level or run, noise mixture)",
        description="Collect SIZE transitions of TASK with a shipped behaviour policy "
                    "(random/medium/expert), a D4RL-style mixture (medium-replay, medium-expert) "
                    "or a `bremen train` run directory, under one of the original's noise "
                    "mixtures, and write a dataset file with its metadata (never overwrites).")
    p.add_argument("--task", required=True, help="task name (see `bremen tasks`)")
    p.add_argument("--policy", required=True,
                   help="random | medium | expert | medium-replay | medium-expert | RUN_DIR")
    p.add_argument("--noise", default=None,
                   help="pure (default) | eps1 | eps3 | gaussian1 | gaussian3 | random")
    p.add_argument("--size", type=int, required=True, help="number of transitions")
    p.add_argument("--out", required=True, help="dataset file (.npz) to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num-envs", type=int, default=None,
                   help="parallel environments per collection call")
    p.add_argument("--backend", default=None, help="Brax backend (default: the behaviour's)")
    p.add_argument("--episode-length", type=int, default=1000)
    handlers["collect"] = _cmd_collect

    p = sub.add_parser("import-dataset",
                       help="import a D4RL-format HDF5 file or a local Minari dataset")
    p.add_argument("source", help="HDF5 file (D4RL layout) or Minari dataset directory")
    p.add_argument("--out", required=True, help="dataset file (.npz) to create")
    p.add_argument("--task", required=True, help="task the data belongs to")
    p.add_argument("--format", choices=("auto", "d4rl", "minari"), default="auto")
    handlers["import-dataset"] = _cmd_import_dataset

    p = sub.add_parser("export-dataset", help="write a dataset file in the D4RL HDF5 layout")
    p.add_argument("file", help="dataset file (.npz) written by bremen_jax")
    p.add_argument("--out", required=True, help="HDF5 file to create")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists (written atomically)")
    handlers["export-dataset"] = _cmd_export_dataset

    p = sub.add_parser(
        "sweep", help="many runs (seeds x hyperparameters x ensemble sizes) as one program",
        description="Run a sweep file (get_config()/base + get_sweep(); see docs/sweeps.md) as "
                    "one compiled, vmapped program per shape-changing ('outer') value, sharded "
                    "over the devices. Writes sweep.json, runs.csv/.jsonl, summary.json/.md and "
                    "plots/ in --workdir. --config.FIELD=VALUE changes the base config.")
    p.add_argument("--config", required=True,
                   help="sweep file (.py) or a name in bremen_jax/configs/sweeps")
    p.add_argument("--workdir", required=True, help="new or empty output directory")
    p.add_argument("--num-devices", type=int, default=None,
                   help="use only the first N devices (default: all)")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host; see docs/sweeps.md)")
    handlers["sweep"] = _cmd_sweep

    sub.add_parser("bench", help="benchmark suites of bremen_jax.bench (bremen bench --help)",
                   add_help=False)
    handlers["bench"] = None
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # every flag belongs to the benchmark runner
        from bremen_jax.bench import suite

        return suite.main(argv[1:], prog="bremen bench")
    parser, handlers = _build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        handler = handlers[args.command]
        if handler.__code__.co_argcount == 2:
            return handler(args, _split_overrides(unknown))
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        return handler(args)
    except CliError as e:
        print(f"bremen {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        msg = str(e) or "interrupted"
        print(f"bremen {args.command}: {msg}", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"bremen {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
