"""Pieces every subcommand shares: the user-error type, ``--config.F=V`` parsing, config loading."""

from __future__ import annotations

import argparse
import re
from typing import Sequence


class CliError(Exception):
    """A user error: printed as one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose usage errors are one line on stderr (exit 2), like every
    other user error of ``bremen``: ``PROG: error: MESSAGE; did you mean '--x'? (`PROG --help`
    lists the arguments)`` instead of argparse's usage block followed by the message. The
    close-match hint is given for unrecognized options and invalid choices (a mistyped
    subcommand). Subparsers inherit the class."""

    def error(self, message: str):
        message = " ".join(str(message).split())
        close = None
        choice = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)$", message)
        if message.startswith("unrecognized arguments:"):
            words = message.split(":", 1)[1].split()
            close = closest(words, long_options(self))
        elif choice:
            close = closest([choice[1]], re.findall(r"'([^']*)'", choice[2]))
        hint = f"; did you mean {close!r}?" if close else ""
        self.exit(2, f"{self.prog}: error: {message}{hint} (`{self.prog} --help` lists the "
                     f"arguments)\n")


def closest(words: Sequence[str], options: Sequence[str], cutoff: float = 0.7) -> str | None:
    """The option closest to the first of ``words`` that is close to one (``--name=value``
    compared by its name; ``difflib`` similarity >= ``cutoff``), else None."""
    import difflib

    for word in words:
        close = difflib.get_close_matches(word.split("=", 1)[0], options, n=1, cutoff=cutoff)
        if close:
            return close[0]
    return None


def long_options(parser: argparse.ArgumentParser) -> list[str]:
    """The ``--name`` options ``parser`` takes (for close-match hints)."""
    return [o for o in parser._option_string_actions if o.startswith("--")]


def unrecognized(parser: argparse.ArgumentParser, unknown: Sequence[str]):
    """Exits with ``parser``'s one-line error for arguments it does not take."""
    parser.error(f"unrecognized arguments: {' '.join(unknown)}")


class HelpFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default when it has one (not for flags, ``None`` or
    empty defaults, or help that already says "default")."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if (action.option_strings and d not in (None, False, [], argparse.SUPPRESS)
                and "default" not in text):
            text += f" (default: {d})"
        return text


OVERRIDES_EPILOG = ("Any config field can be set with --config.FIELD=VALUE (repeatable), e.g. "
                    "--config.trpo.target_kl=0.05 --config.dynamics.num_members=3; the fields, "
                    "their defaults and ranges: bremen_jax/config/schema.py.")


def add_global_flags(parser: argparse.ArgumentParser, default) -> None:
    """``--debug``, ``--verbose`` and ``--fast-compile``: on ``bremen`` itself
    (``default=False``) and on every subcommand (``default=argparse.SUPPRESS``, so that
    ``bremen --debug train`` keeps it)."""
    group = parser.add_argument_group("general options")
    group.add_argument("--debug", action="store_true", default=default,
                       help="show Python tracebacks for errors (also BREMEN_DEBUG=1)")
    group.add_argument("--verbose", action="store_true", default=default,
                       help="also show third-party start-up notices (warp, MuJoCo and Brax "
                            "deprecation warnings), silenced by default")
    group.add_argument("--fast-compile", action="store_true", default=default,
                       help="compile with XLA's backend optimisation off and, on CPU, without "
                            "its fusion emitters: about half the compile time, slower small "
                            "TRPO steps (also BREMEN_JAX_COMPILE=fast); for first results, "
                            "tests, small sweeps")


def add_command(sub, name: str, handler, *, overrides: bool, help: str,
                description: str | None = None, **kwargs) -> argparse.ArgumentParser:
    """Adds subcommand ``name`` run by ``handler(args[, overrides])``; returns its parser. Its
    ``--help`` shows each option's default; with ``overrides`` it explains --config.FIELD=VALUE."""
    if overrides:
        kwargs.setdefault("epilog", OVERRIDES_EPILOG)
    p = sub.add_parser(name, help=help, description=description or help,
                       formatter_class=HelpFormatter, **kwargs)
    add_global_flags(p, default=argparse.SUPPRESS)
    p.set_defaults(handler=handler, takes_overrides=overrides, parser=p)
    return p


def add_sweep_checkpoint_flags(parser: argparse.ArgumentParser, *, scope: str = "") -> None:
    """``--checkpoint-every K`` and ``--resume`` for a command that runs sweeps
    (:func:`bremen_jax.sweep.run_sweep`'s ``checkpoint_every`` / ``resume``); ``scope`` prefixes
    their help, e.g. ``"BREMEN sweeps: "`` where the command also runs other things."""
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="K",
                        help=f"{scope}run K deployments per compiled call and checkpoint every "
                             "run's state after each (one process; numbers equal the "
                             "one-program sweep's to float rounding, not bit for bit: keep one "
                             "setting within a series); default: one call per outer value, no "
                             "checkpoint")
    parser.add_argument("--resume", action="store_true",
                        help=f"{scope}continue the interrupted sweep(s) in the work directory "
                             "(same flags, overrides and dataset): outer values done are read "
                             "back, the others continue from their last checkpoint, sweeps not "
                             "begun start")


def check_checkpoint_every(value: int | None) -> None:
    """Raises :class:`CliError` unless ``value`` (``--checkpoint-every``) is unset or >= 1."""
    if value is not None and value < 1:
        raise CliError(f"--checkpoint-every must be >= 1 (deployments per checkpoint), got "
                       f"{value}")


def fmt(x) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def split_overrides(unknown: Sequence[str], options: Sequence[str] = ()) -> list[str]:
    """``--config.a.b=v`` / ``--config.a.b v`` flags -> ``["a.b=v", ...]``; anything else is an
    error (naming the closest of the command's own ``options``, if one is close)."""
    out, i = [], 0
    unknown = list(unknown)
    while i < len(unknown):
        arg = unknown[i]
        if not arg.startswith("--config."):
            close = closest([arg], options)
            hint = f" (did you mean {close!r}?)" if close else ""
            raise CliError(f"unrecognized argument {arg!r}{hint}; config fields are overridden "
                           f"as --config.FIELD=VALUE (e.g. --config.trpo.target_kl=0.05)")
        body = arg[len("--config."):]
        if "=" not in body:
            if i + 1 >= len(unknown):
                raise CliError(f"{arg} needs a value (--config.FIELD=VALUE)")
            body = f"{body}={unknown[i + 1]}"
            i += 1
        out.append(body)
        i += 1
    return out


def check_task(cfg) -> None:
    """Raises ValueError (naming the valid tasks) unless ``cfg.task`` is registered: called before
    anything is printed or compiled."""
    from bremen_jax import envs

    try:
        envs.task_info(cfg.task)
    except ValueError as e:
        close = closest([str(cfg.task)], envs.list_tasks(), cutoff=0.6)
        raise ValueError(f"{e}; did you mean {close!r}?" if close else str(e)) from None


def load_cfg(args: argparse.Namespace, overrides: Sequence[str]):
    """``--config`` with the ``--config.F=V`` overrides, validated, its task checked."""
    from bremen_jax import config as config_lib

    cfg = config_lib.load_config(args.config)
    cfg = config_lib.apply_overrides(cfg, overrides)
    config_lib.validate(cfg)
    check_task(cfg)
    return cfg
