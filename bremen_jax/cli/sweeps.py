"""``bremen sweep`` and ``bremen bench`` (its flags: :func:`bremen_jax.bench.suite.add_arguments`,
which imports no JAX)."""

from __future__ import annotations

import argparse
import shlex
from typing import Sequence

from bremen_jax.bench import suite
from bremen_jax.cli.common import (CliError, add_command, add_sweep_checkpoint_flags,
                                   check_checkpoint_every)


def cmd_sweep(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    from rich.console import Console

    from bremen_jax import sweep
    from bremen_jax.run.compile import enable_persistent_cache

    enable_persistent_cache()
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
    if args.max_rows is not None and args.dataset is None:
        raise CliError("--max-rows needs --dataset (it limits the offline dataset's rows)")
    if args.max_rows is not None and args.max_rows < 1:
        raise CliError(f"--max-rows must be >= 1, got {args.max_rows}")
    check_checkpoint_every(args.checkpoint_every)
    console = Console()
    try:
        result = sweep.run_sweep(args.config, args.workdir, overrides=overrides, devices=devices,
                                 console=console, dataset=args.dataset, max_rows=args.max_rows,
                                 checkpoint_every=args.checkpoint_every, resume=args.resume)
    except KeyboardInterrupt:
        again = shlex.join(["bremen", *args.argv] + ([] if args.resume else ["--resume"]))
        raise KeyboardInterrupt(f"interrupted; the outer values done and the last checkpoint in "
                                f"{args.workdir} are kept: continue with '{again}'") from None
    console.print(f"results: {result.workdir / 'runs.csv'}, summary: "
                  f"{result.workdir / 'summary.md'}, plots: {result.workdir / 'plots'}")
    return 0


def cmd_bench(args: argparse.Namespace, overrides: Sequence[str]) -> int:
    return suite.run(args, overrides, ["bremen", *args.argv])


def register(sub) -> None:
    p = add_command(sub, "sweep", cmd_sweep, overrides=True,
                    help="many runs (seeds x hyperparameters x ensemble sizes) as one program",
        description="Run a sweep file (get_config()/base + get_sweep(); see docs/sweeps.md) as "
                    "one compiled, vmapped program per shape-changing ('outer') value, sharded "
                    "over the devices. Writes sweep.json, runs.csv/.jsonl, summary.json/.md and "
                    "plots/ in --workdir. --config.FIELD=VALUE changes the base config.")
    p.add_argument("--config", required=True,
                   help="sweep file (.py) or a name in bremen_jax/configs/sweeps")
    p.add_argument("--workdir", required=True, metavar="DIR",
                   help="new or empty output directory (with --resume: the sweep's)")
    p.add_argument("--num-devices", type=int, default=None, metavar="N",
                   help="use only the first N devices (default: all)")
    p.add_argument("--distributed", action="store_true",
                   help="call jax.distributed.initialize() first (multi-host; see docs/sweeps.md)")
    p.add_argument("--dataset", default=None, metavar="FILE.npz",
                   help="offline sweep: every run is offline BREMEN on this dataset (as "
                        "'bremen offline'), seeds and points vmapped")
    p.add_argument("--max-rows", type=int, default=None, metavar="N",
                   help="with --dataset: use only its first N rows")
    add_sweep_checkpoint_flags(p)
    p = add_command(sub, "bench", cmd_bench, overrides=True,
                    help="time every phase of a deployment against the matmul peak",
        description="Benchmark suites: each phase of a BREMEN deployment (collection, ensemble "
                    "fit, BC, TRPO with imagined rollouts, evaluation, one deployment) compiled "
                    "and timed at each matmul precision, against the measured matmul peak, and "
                    "the paper run's wall time projected from them. Writes the results as JSON "
                    "and prints a markdown report. --config.FIELD=VALUE changes the suite's "
                    "config.")
    suite.add_arguments(p)
