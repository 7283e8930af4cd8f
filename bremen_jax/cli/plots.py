"""``bremen plot``: learning curves of run directories (:mod:`bremen_jax.run.plots`)."""

from __future__ import annotations

import argparse
import pathlib

from bremen_jax.cli.common import CliError, add_command


def cmd_plot(args: argparse.Namespace) -> int:
    if args.out is None:
        if len(args.run_dirs) > 1:
            raise CliError("--out FILE is required with several run directories (e.g. "
                           "--out curves.png; .png, .svg or .pdf)")
        args.out = str(pathlib.Path(args.run_dirs[0]) / "curves.png")
    from bremen_jax.run.plots import plot

    plot(args.run_dirs, args.out, title=args.title)
    print(f"wrote {args.out}")
    return 0


def register(sub) -> None:
    p = add_command(sub, "plot", cmd_plot, overrides=False,
                    help="learning curves of runs (png, svg or pdf)",
        description="Draw the learning curves of one or more work directories of `bremen train` "
                    "or `bremen offline`: (a) real return vs real samples (offline: vs TRPO "
                    "iterations) with the BC-init return of each deployment and every chunk's "
                    "evaluation, (b) imagined vs real return per TRPO chunk, (c) the dynamics "
                    "ensemble's validation error per deployment. Runs whose configs differ only "
                    "in the seed are drawn as mean ± std; other runs as separate lines.")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="work directory of a run")
    p.add_argument("--out", default=None,
                   help="output file; the format follows the suffix: .png, .svg or .pdf "
                        "(default with one RUN_DIR: RUN_DIR/curves.png)")
    p.add_argument("--title", default=None, help="figure title (default: task and run)")
