"""Pieces every subcommand shares: the user-error type, ``--config.F=V`` parsing, config loading."""

from __future__ import annotations

import argparse
from typing import Sequence


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


def add_command(sub, name: str, handler, *, overrides: bool, help: str,
                description: str | None = None, **kwargs) -> argparse.ArgumentParser:
    """Adds subcommand ``name`` run by ``handler(args[, overrides])``; returns its parser."""
    p = sub.add_parser(name, help=help, description=description or help, **kwargs)
    p.set_defaults(handler=handler, takes_overrides=overrides)
    return p


def fmt(x) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def split_overrides(unknown: Sequence[str]) -> list[str]:
    """``--config.a.b=v`` / ``--config.a.b v`` flags -> ``["a.b=v", ...]``; anything else is an
    error."""
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


def load_cfg(args: argparse.Namespace, overrides: Sequence[str]):
    from bremen_jax import config as config_lib

    cfg = config_lib.load_config(args.config)
    cfg = config_lib.apply_overrides(cfg, overrides)
    config_lib.validate(cfg)
    return cfg
