"""The ``bremen`` command line.

Each subcommand's module registers its parser (``register(sub)``) with its handler
(``set_defaults(handler=..., takes_overrides=...)``); heavy imports happen inside the handlers so
that ``bremen --help`` is instant. User errors print one line (exit 2), Ctrl-C one line (exit 130);
``--debug`` (or ``BREMEN_DEBUG=1``) shows the traceback instead. Third-party start-up notices
(warp, MuJoCo and Brax deprecations) are silenced unless ``--verbose``
(:mod:`bremen_jax.cli.quiet`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from bremen_jax.cli import datasets, inspect, plots, runs, sweeps
from bremen_jax.cli.common import ArgumentParser, CliError, add_global_flags, long_options, \
    split_overrides, unrecognized
from bremen_jax.cli.quiet import quiet_third_party

__all__ = ["CliError", "build_parser", "main"]

# What a user can cause; anything else is a bug and keeps its traceback. FloatingPointError:
# bremen_jax.run.errors.NonFiniteError (a run stopped on non-finite actions; not imported here,
# so that `bremen --help` stays instant).
USER_ERRORS = (CliError, ValueError, FileNotFoundError, FileExistsError, PermissionError,
               FloatingPointError)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="bremen", description="BREMEN (Behavior-Regularized Model-ENsemble) in JAX.")
    add_global_flags(parser, default=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (runs, sweeps, datasets, inspect, plots):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command is None:
        if unknown:
            unrecognized(parser, unknown)
        parser.print_help()
        return 0
    if not args.takes_overrides and unknown:
        unrecognized(args.parser, unknown)
    debug = args.debug or os.environ.get("BREMEN_DEBUG", "") not in ("", "0")
    args.argv = argv
    if getattr(args, "fast_compile", False):
        os.environ["BREMEN_JAX_COMPILE"] = "fast"
    try:
        with quiet_third_party(verbose=args.verbose):
            if args.takes_overrides:
                return args.handler(args, split_overrides(unknown, long_options(args.parser)))
            return args.handler(args)
    except KeyboardInterrupt as e:
        if debug:
            raise
        print(f"bremen {args.command}: {str(e) or 'interrupted'}", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"bremen {args.command}: error: {' '.join(str(e).split())}", file=sys.stderr)
        if getattr(e, "abandon_threads", False):
            _STATE["abandon_threads"] = True
        return 2


_STATE = {"abandon_threads": False}


def console_main() -> None:
    """The ``bremen`` executable: :func:`main`, then exit; after a failed checkpoint write it
    exits without waiting for orbax's stuck background threads (they hold the exit for minutes)."""
    rc = main()
    if _STATE["abandon_threads"]:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc)
    sys.exit(rc)


if __name__ == "__main__":
    console_main()
