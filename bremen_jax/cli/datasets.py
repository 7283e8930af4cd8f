"""Dataset subcommands: ``tasks``, ``dataset-info``, ``collect``, ``import-dataset``,
``export-dataset``."""

from __future__ import annotations

import argparse

from bremen_jax.cli.common import CliError, add_command, fmt


def _task_row(name: str) -> list[str]:
    """One row of ``bremen tasks``: sizes from the built task (on its default backend), the
    pinned reference returns (``-`` when none)."""
    from bremen_jax import envs
    from bremen_jax.datasets.scores import reference_returns

    info = envs.task_info(name)
    task = envs.make_task(name, backend=info.default_backend or "generalized")
    try:
        r_random, r_expert = (f"{r:.1f}" for r in reference_returns(name))
    except ValueError:
        r_random = r_expert = "-"
    return [name, str(task.obs_size), str(task.action_size), task.backend,
            str(task.episode_length), r_random, r_expert,
            ", ".join(info.unstable_backends or ()) or "-"]


def cmd_tasks(args: argparse.Namespace) -> int:
    from bremen_jax import envs

    header = ["task", "obs", "act", "backend", "episode", "R_random", "R_expert",
              "unstable backends"]
    rows = [header] + [_task_row(name) for name in envs.list_tasks()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for r in rows:
        cells = [c.ljust(w) if i in (0, 3, 7) else c.rjust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        print("  ".join(cells).rstrip())
    print("\nobs/act: observation/action sizes; backend: the Brax backend of the shipped configs "
          "and datasets;\nepisode: steps per real episode; R_random/R_expert: the returns that "
          "score 0 and 100 (normalised scores)")
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
    from bremen_jax.run.compile import enable_persistent_cache

    enable_persistent_cache()
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
    import pathlib

    from bremen_jax import envs
    from bremen_jax.datasets.d4rl_io import import_dataset

    if pathlib.Path(args.out).exists():   # the output and the task before loading the input
        raise CliError(f"--out {args.out} already exists; refusing to overwrite it")
    envs.task_info(args.task)
    info = import_dataset(args.source, args.out, task=args.task, fmt=args.format)
    print(f"{args.out}: {info['size']} transitions imported from {args.source} "
          f"({info['behavior_policy'].get('imported_from', args.format)})")
    return 0


def cmd_export_dataset(args: argparse.Namespace) -> int:
    import pathlib

    if not args.overwrite and pathlib.Path(args.out).exists():   # before loading the input
        raise CliError(f"--out {args.out} already exists; refusing to overwrite it (pass "
                       f"--overwrite to replace it)")
    from bremen_jax.data import dataset
    from bremen_jax.datasets.d4rl_io import export_d4rl_hdf5

    data, meta = dataset.load_dataset(args.file)
    path = export_d4rl_hdf5(data, args.out, meta, overwrite=args.overwrite)
    print(f"{path}: {data.obs.shape[0]} transitions in the D4RL HDF5 layout")
    return 0


def register(sub) -> None:
    p = add_command(sub, "tasks", cmd_tasks, overrides=False,
                    help="list the registered tasks: sizes, backend, episode length, "
                         "reference returns")
    p = add_command(sub, "dataset-info", cmd_dataset_info, overrides=False,
                    help="validate a dataset file and print its metadata")
    p.add_argument("file", help="dataset file (.npz) written by bremen_jax")
    p.add_argument("--task", default=None, metavar="TASK",
                   help="also check that the file fits this task (see `bremen tasks`)")
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
    p.add_argument("--size", type=int, required=True, metavar="N", help="number of transitions")
    p.add_argument("--out", required=True, metavar="FILE", help="dataset file (.npz) to create")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="seed of the episodes and the noise")
    p.add_argument("--num-envs", type=int, default=None, metavar="N",
                   help="most parallel environments per collection call (default: 128)")
    p.add_argument("--backend", default=None,
                   help="Brax backend (default: the behaviour's, else the task's)")
    p.add_argument("--episode-length", type=int, default=1000, metavar="N",
                   help="steps per episode before the time limit")
    p = add_command(sub, "import-dataset", cmd_import_dataset, overrides=False,
                    help="import a D4RL-format HDF5 file or a local Minari dataset")
    p.add_argument("source", help="HDF5 file (D4RL layout) or Minari dataset directory")
    p.add_argument("--out", required=True, metavar="FILE",
                   help="dataset file (.npz) to create (never overwritten)")
    p.add_argument("--task", required=True, help="task the data belongs to (see `bremen tasks`)")
    p.add_argument("--format", choices=("auto", "d4rl", "minari"), default="auto",
                   help="auto: a directory is a Minari dataset, a file D4RL HDF5")
    p = add_command(sub, "export-dataset", cmd_export_dataset, overrides=False,
                    help="write a dataset file in the D4RL HDF5 layout")
    p.add_argument("file", help="dataset file (.npz) written by bremen_jax")
    p.add_argument("--out", required=True, metavar="FILE", help="HDF5 file to create")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists (written atomically)")
