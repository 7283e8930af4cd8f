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
    return parser, handlers


def main(argv: Sequence[str] | None = None) -> int:
    parser, handlers = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return handlers[args.command](args)
    except CliError as e:
        print(f"bremen {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError) as e:
        print(f"bremen {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
