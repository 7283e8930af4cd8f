"""Dataset subcommands: ``tasks``, ``dataset-info``, ``collect``, ``import-dataset``,
``export-dataset``."""

from __future__ import annotations

import argparse

from bremen_jax.cli.common import CliError, add_command, fmt


def cmd_tasks(args: argparse.Namespace) -> int:
    from bremen_jax import envs

    print(f"{'task':<18} {'backend':<12} {'episode':>7}  unstable backends")
    for name in envs.list_tasks():
        info = envs.task_info(name)
        unstable = ", ".join(info.unstable_backends or ()) or "-"
        print(f"{name:<18} {info.default_backend or '?':<12} {info.episode_length or '?':>7}  "
              f"{unstable}")
    return 0


def cmd_dataset_info(args: argparse.Namespace) -> int:
    from bremen_jax.data import dataset

    data, meta = dataset.load_dataset(args.file, task=args.task)
    print(f"{args.file}: {data.obs.shape[0]} transitions, obs_dim {data.obs.shape[1]}, "
          f"act_dim {data.action.shape[1]}")
    for key in sorted(meta):
        print(f"  {key}: {meta[key]}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    from bremen_jax.datasets.make import collect_dataset

    extra = {} if args.num_envs is None else {"num_envs": args.num_envs}
    info = collect_dataset(args.task, args.policy, args.noise, args.size, args.out,
                           seed=args.seed, backend=args.backend,
                           episode_length=args.episode_length, **extra)
    t = info["timing"]
    score = info.get("behavior_normalized_score")
    print(f"{args.out}: {info['size']} transitions of {args.task}, policy {args.policy}, "
          f"noise {info['noise']}; behaviour return {fmt(info['behavior_return'])} "
          f"(normalised {fmt(score)}), dataset return {fmt(info['dataset_return'])}; "
          f"collected in {t['collect_s']:.1f} s + compile {t['compile_s']:.1f} s "
          f"({t['steps_per_s']:,.0f} steps/s)")
    return 0


def cmd_import_dataset(args: argparse.Namespace) -> int:
    from bremen_jax.datasets.d4rl_io import import_dataset

    info = import_dataset(args.source, args.out, task=args.task, fmt=args.format)
    print(f"{args.out}: {info['size']} transitions imported from {args.source} "
          f"({info['behavior_policy'].get('imported_from', args.format)})")
    return 0


def cmd_export_dataset(args: argparse.Namespace) -> int:
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


def register(sub) -> None:
    p = add_command(sub, "tasks", cmd_tasks, overrides=False,
                    help="list the registered tasks")
    p = add_command(sub, "dataset-info", cmd_dataset_info, overrides=False,
                    help="validate a dataset file and print its metadata")
    p.add_argument("file", help="dataset file (.npz) written by bremen_jax")
    p.add_argument("--task", default=None, help="also check compatibility with this task")
    p = add_command(sub, "collect", cmd_collect, overrides=False,
                    help="collect an offline dataset (behaviour level or run, noise mixture)",
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
    p = add_command(sub, "import-dataset", cmd_import_dataset, overrides=False,
                    help="import a D4RL-format HDF5 file or a local Minari dataset")
    p.add_argument("source", help="HDF5 file (D4RL layout) or Minari dataset directory")
    p.add_argument("--out", required=True, help="dataset file (.npz) to create")
    p.add_argument("--task", required=True, help="task the data belongs to")
    p.add_argument("--format", choices=("auto", "d4rl", "minari"), default="auto")
    p = add_command(sub, "export-dataset", cmd_export_dataset, overrides=False,
                    help="write a dataset file in the D4RL HDF5 layout")
    p.add_argument("file", help="dataset file (.npz) written by bremen_jax")
    p.add_argument("--out", required=True, help="HDF5 file to create")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists (written atomically)")
