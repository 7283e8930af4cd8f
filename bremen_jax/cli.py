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


def _check_workdir(path: str, marker: str) -> None:
    import pathlib

    p = pathlib.Path(path)
    if (p / marker).exists():
        raise CliError(f"work directory {path} already holds a run ({marker}); choose a new "
                       f"--workdir (nothing there was changed)")


def _cmd_offline(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from bremen_jax.algo.offline import run_offline

    cfg = _load_cfg(args, overrides)
    _check_workdir(args.workdir, "offline.jsonl")
    summary = run_offline(cfg, args.dataset, args.workdir)
    print(f"behavior return {summary['behavior_return']}  BC {summary['bc_return']:.2f}  "
          f"BREMEN {summary['bremen_return']:.2f}  (summary: {args.workdir}/summary.json)")
    return 0


def _cmd_train(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    import pathlib
    import time

    from rich.console import Console

    from bremen_jax import config as config_lib
    from bremen_jax.algo import deployment
    from bremen_jax.checkpoint import config_diff

    console = Console()
    if args.resume:
        if args.workdir is None:
            raise CliError("--resume needs --workdir DIR (the run to continue)")
        workdir = args.workdir
        stored = deployment.load_run_config(workdir)
        if args.config is not None:
            diff = config_diff(stored.to_dict(), config_lib.load_config(args.config).to_dict())
            if diff:
                raise CliError(
                    f"--config {args.config} differs from the config of the run in {workdir} "
                    f"({'; '.join(diff)}); leave out --config to resume with the stored config, "
                    f"or change fields explicitly with --config.FIELD=VALUE")
        cfg = config_lib.apply_overrides(stored, overrides)
        config_lib.validate(cfg)
    else:
        args.config = args.config or "quick"
        cfg = _load_cfg(args, overrides)
        workdir = args.workdir or str(pathlib.Path("runs") / (
            f"{pathlib.Path(args.config).stem}-{time.strftime('%Y%m%d-%H%M%S')}"))
        deployment.check_new_workdir(workdir)
    console.print(f"bremen train: {cfg.task} ({cfg.backend}), {args.driver} driver, "
                  f"workdir {workdir}{' (resumed)' if args.resume else ''}")
    if args.driver == "host":
        result = deployment.run_host(cfg, workdir, resume=args.resume, console=console,
                                     progress=not args.no_progress)
    else:
        result = deployment.run_compiled(cfg, workdir, resume=args.resume, console=console)
    console.print(f"summary: {pathlib.Path(workdir) / 'summary.json'}")
    return 0 if result.summary["finished"] else 1


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
    p.add_argument("--config", default="default",
                   help="config name in experiments/configs or a .py file with get_config()")
    p.add_argument("--dataset", required=True, help="dataset file (.npz) written by bremen_jax")
    p.add_argument("--workdir", required=True, help="output directory (must not hold a run)")
    handlers["offline"] = _cmd_offline

    p = sub.add_parser(
        "train", help="recursive (deployment-efficient) BREMEN in a Brax task",
        description="Run K deployments: collect real data with the current policy, fit the "
                    "ensemble, clone the policy, improve it with TRPO on imagined rollouts. "
                    "Writes config.json, chunks/deployments.{csv,jsonl}, tb/, checkpoints/ and "
                    "summary.json in --workdir. Override any config field with "
                    "--config.FIELD=VALUE.")
    p.add_argument("--config", default=None,
                   help="config name in experiments/configs or a .py file with get_config() "
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
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
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
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        print(f"bremen {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
