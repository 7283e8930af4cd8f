"""Failed writes of a run: why a write failed, and orbax's background reports kept quiet.

A failed orbax save reports the same error from several threads: absl ERROR records with
tracebacks, "Event loop is closed" from tensorstore callbacks, unfinished coroutines collected at
exit. :mod:`bremen_jax.run.checkpoint` raises one ``CheckpointWriteError`` instead and runs the
save inside :func:`orbax_errors_quiet`, which keeps the rest off the console.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Iterator

_BACKGROUND = ("/orbax/", "/asyncio/", "tensorstore", "/tensorboardX/")


def _from_background(tb) -> bool:
    while tb is not None:
        if any(m in tb.tb_frame.f_code.co_filename for m in _BACKGROUND):
            return True
        tb = tb.tb_next
    return False


class _OrbaxErrorFilter(logging.Filter):
    """Drops the ERROR records of orbax (one per failed background thread) and of asyncio
    ("Future exception was never retrieved" for each of its abandoned writes)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or not any(m in record.pathname
                                                         for m in _BACKGROUND)


_ORBAX_FILTER = _OrbaxErrorFilter()
_LOGGERS = ("absl", "asyncio")


class _Quiet:
    """The console hooks while quiet: orbax's ERROR records, and exceptions of its threads,
    callbacks (tensorstore reports them through ``sys.excepthook``) and abandoned coroutines
    (``sys.unraisablehook``), are not printed; anything else goes to the previous hooks."""

    saved: tuple | None = None
    forever = False

    @classmethod
    def on(cls) -> None:
        if cls.saved is not None:
            return
        cls.saved = unraisable, thread_hook, excepthook = (sys.unraisablehook,
                                                           threading.excepthook, sys.excepthook)

        def quiet_unraisable(u):
            if not (_from_background(u.exc_traceback) or "coroutine" in repr(u.object)):
                unraisable(u)

        def quiet_thread(a):
            if not _from_background(a.exc_traceback):
                thread_hook(a)

        def quiet_except(t, v, tb):
            if not _from_background(tb):
                excepthook(t, v, tb)

        sys.unraisablehook, threading.excepthook, sys.excepthook = (quiet_unraisable,
                                                                   quiet_thread, quiet_except)
        for name in _LOGGERS:
            logging.getLogger(name).addFilter(_ORBAX_FILTER)

    @classmethod
    def off(cls) -> None:
        if cls.saved is None or cls.forever:
            return
        sys.unraisablehook, threading.excepthook, sys.excepthook = cls.saved
        cls.saved = None
        for name in _LOGGERS:
            logging.getLogger(name).removeFilter(_ORBAX_FILTER)


def silence_background_errors() -> None:
    """After a failed write, for the rest of the process: orbax's late reports of it (from its
    threads, callbacks and coroutines collected at exit) are not printed."""
    _Quiet.on()
    _Quiet.forever = True
    # orbax's writes that never started are collected at exit ("coroutine ... never awaited").
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited",
                            category=RuntimeWarning)


@contextlib.contextmanager
def orbax_errors_quiet() -> Iterator[None]:
    """The body (an orbax save) runs with orbax's background reports kept quiet; if it raises,
    they stay quiet for the rest of the process (late threads report the same error again)."""
    _Quiet.on()
    try:
        yield
    except BaseException:
        silence_background_errors()
        raise
    finally:
        _Quiet.off()


# Status codes of the storage layer (tensorstore) that mean "the write failed", not "a bug".
_IO_STATUS = re.compile(r"\b(RESOURCE_EXHAUSTED|PERMISSION_DENIED|UNAVAILABLE|DATA_LOSS|"
                        r"DEADLINE_EXCEEDED|ABORTED)\b")


def os_error(e: BaseException) -> tuple[int | None, str] | None:
    """``(errno, strerror)`` of a failed write: from an ``OSError`` in the chain, else from the
    storage layer's message (tensorstore: ``[os_error_code='28']``, or an I/O status code with
    no errno: ``(None, message)``); None when ``e`` is no I/O failure (a bug: keep it)."""
    seen = e
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno is not None:
            return seen.errno, seen.strerror or os.strerror(seen.errno)
        seen = seen.__cause__ or seen.__context__
    code = re.search(r"os_error_code='?(\d+)", str(e))
    if code:
        n = int(code.group(1))
        return n, os.strerror(n)
    if _IO_STATUS.search(str(e)):
        return None, " ".join(str(e).split())[:300]
    return None
