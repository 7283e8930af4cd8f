"""Third-party start-up noise, kept off the terminal unless ``--verbose``.

What a plain ``bremen train`` used to print besides its own output, and where it comes from:

* ``Failed to import warp`` / ``Failed to import mujoco_warp`` (stdout): ``mujoco.mjx.warp``
  prints them on import when the optional NVIDIA Warp backend is not installed (Brax imports it).
* ``WARNING: compiler attribute 'settotalmass' is deprecated`` (stderr, plus ``MUJOCO_LOG.TXT``
  in the current directory): MuJoCo's compiler, for Brax's half_cheetah.xml.
* ``UserWarning: Brax System, piplines and environments are not actively being maintained``:
  ``brax.io.mjcf`` on every model load.
* ``WARNING:absl:Waiting for previous save to complete took 1.35 seconds. If this number is
  high, consider checkpointing less frequently.`` (stderr): orbax's ``CheckpointManager`` when a
  save waits for the one before it, which happens on a loaded machine or a slow disk (seen in CI
  in front of a disk-full error that must be the command's only line).

:func:`quiet_third_party` silences exactly these: the warp module's prints are caught while it
is imported (an import hook; nothing is imported early), MuJoCo's deprecation messages are dropped
by a warning handler that passes every other MuJoCo warning on to stderr, and the Brax message is
ignored by a ``warnings`` filter that matches its text, and orbax's advisory by a filter on the
``absl`` logger that matches its text. Other warnings, ours included
(``UnstablePhysicsWarning``), still show. With ``verbose=True`` nothing is silenced, but the warp
prints still go to stderr, so that stdout holds only the command's output.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import io
import logging
import sys
import warnings
from typing import Iterator

BRAX_NOTICE = r"Brax System, piplines and environments are not actively being maintained"
PRINTING_MODULES = ("mujoco.mjx.warp",)   # print on import when the optional warp is missing
ORBAX_WAIT_NOTICE = "Waiting for previous save to complete"


class _OrbaxWaitFilter(logging.Filter):
    """Drops orbax's "Waiting for previous save to complete took ..." advisory (absl logger)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(ORBAX_WAIT_NOTICE)


class _HookedLoader(importlib.abc.Loader):
    """Runs a module's code with ``sys.stdout`` sent to ``sink`` (if given), then ``after()``."""

    def __init__(self, loader, sink=None, after=None):
        self.loader, self.sink, self.after = loader, sink, after

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with contextlib.redirect_stdout(self.sink) if self.sink else contextlib.nullcontext():
            self.loader.exec_module(module)
        if self.after is not None:
            self.after(module)


class _ImportHook(importlib.abc.MetaPathFinder):
    """Hooks the first import of the modules in ``hooks`` (name -> ``(sink, after)``)."""

    def __init__(self, hooks):
        self.hooks = hooks

    def find_spec(self, name, path, target=None):
        if name not in self.hooks:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path, target)
        if spec is not None and spec.loader is not None:
            spec.loader = _HookedLoader(spec.loader, *self.hooks[name])
        return spec


def _mujoco_warning(message: str) -> None:
    """MuJoCo's warning handler while quiet: deprecation notices dropped, the rest to stderr."""
    if "is deprecated" not in message:
        print(f"MuJoCo warning: {message.strip()}", file=sys.stderr)


class _MujocoHandler:
    """Installs :func:`_mujoco_warning` as MuJoCo's warning handler; :meth:`restore` undoes it."""

    def __init__(self):
        self.module, self.previous = None, None

    def install(self, mujoco) -> None:
        self.module, self.previous = mujoco, mujoco.get_mju_user_warning()
        mujoco.set_mju_user_warning(_mujoco_warning)

    def restore(self) -> None:
        if self.module is not None:
            self.module.set_mju_user_warning(self.previous)


@contextlib.contextmanager
def quiet_third_party(verbose: bool = False) -> Iterator[None]:
    """Within the block, the notices above are silenced (``verbose``: only the warp prints are
    moved to stderr). Nothing is imported early: MuJoCo's handler is installed when ``mujoco`` is
    first imported (at once if it already is). Filters, hook and handler are removed on exit."""
    handler = _MujocoHandler()
    hooks = {name: (sys.stderr if verbose else io.StringIO(), None) for name in PRINTING_MODULES}
    if not verbose:
        if "mujoco" in sys.modules:
            handler.install(sys.modules["mujoco"])
        else:
            hooks["mujoco"] = (None, handler.install)
    # The filter goes on absl's logger once absl.logging made it: a plain "absl" logger created
    # here first would stay plain, and its records would name absl's file instead of their
    # caller's (orbax), which the run's write-error filter (run/io_errors.py) relies on.
    absl_filter, installed = _OrbaxWaitFilter(), []

    def install_absl_filter(_module=None) -> None:
        logging.getLogger("absl").addFilter(absl_filter)
        installed.append(True)

    if not verbose:
        if "absl.logging" in sys.modules:
            install_absl_filter()
        else:
            hooks["absl.logging"] = (None, install_absl_filter)
    hook = _ImportHook(hooks)
    sys.meta_path.insert(0, hook)
    try:
        with warnings.catch_warnings():
            if not verbose:
                warnings.filterwarnings("ignore", message=BRAX_NOTICE, category=UserWarning)
            yield
    finally:
        sys.meta_path.remove(hook)
        handler.restore()
        if installed:
            logging.getLogger("absl").removeFilter(absl_filter)
