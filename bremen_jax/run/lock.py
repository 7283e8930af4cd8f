"""One process per work directory: a lock file ``<workdir>/.lock`` holding ``{pid, host, time}``.

The holder keeps an exclusive ``fcntl.flock`` on the file for as long as it runs, so on one host a
crashed holder's lock is released by the kernel; the JSON content names the holder in the message a
second process gets, and says which host holds it (a lock from another host is never broken
silently: ``flock`` does not reach across a network file system, the content does).
"""

from __future__ import annotations

import fcntl
import json
import os
import pathlib
import socket
import time
import warnings

LOCK_NAME = ".lock"


class WorkdirLocked(FileExistsError):
    """Another live process (or another host) holds the work directory."""


class StaleLockWarning(UserWarning):
    """A dead process's lock on this host was taken over."""


def _read(path: pathlib.Path) -> dict:
    try:
        data = json.loads(path.read_text() or "{}")
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _describe(holder: dict) -> str:
    since = holder.get("time")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else "?"
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')} (since {when})"


class WorkdirLock:
    """An acquired lock on a work directory; :meth:`release` (or process exit) frees it.

    ``created``: the directories the caller created for this claim, deepest first; the release
    removes those that are then empty, so a run refused before it wrote anything (a bad dataset,
    a compile error) leaves no empty work directory behind. A directory holding anything is kept.
    """

    def __init__(self, workdir: str | pathlib.Path,
                 created: tuple[pathlib.Path, ...] = ()):
        self.path = pathlib.Path(workdir) / LOCK_NAME
        self.created = tuple(created)
        self._fd: int | None = None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkdirLocked(f"work directory {workdir} is in use by "
                                f"{_describe(_read(self.path))}; wait for that run to end or stop "
                                f"it (nothing was changed)") from None
        holder, host = _read(self.path), socket.gethostname()
        if holder.get("host") not in (None, host):
            os.close(fd)
            raise WorkdirLocked(
                f"work directory {workdir} is locked by {_describe(holder)}, another host; if "
                f"that run is over, delete {self.path} (nothing was changed)")
        if holder.get("pid") not in (None, os.getpid()) and not _alive(int(holder["pid"])):
            warnings.warn(f"taking over the stale lock of {_describe(holder)} (no such process) "
                          f"on {workdir}", StaleLockWarning, stacklevel=2)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": host, "time": time.time()}).encode())
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        """Frees the lock (idempotent); the file goes with it, and so do the directories of
        ``created`` that are empty then (``rmdir`` never removes one that holds anything)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:  # e.g. the file system became read-only: flock still goes with the fd
            pass
        finally:
            os.close(self._fd)
            self._fd = None
        for d in self.created:
            try:
                d.rmdir()
            except OSError:   # not empty (the run wrote something), or gone: keep the rest
                break
