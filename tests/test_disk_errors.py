"""Disk full and permission lost in the middle of a run: exit 2, one line saying what happened and
that ``--resume`` continues, no traceback (orbax's background threads included), the last good
checkpoint intact, and the resumed run equal to an uninterrupted one (issue 13, part 4).

Faults: a monkeypatched orbax save raising ``OSError(ENOSPC)`` / ``PermissionError`` and a log
write raising ``EDQUOT`` (always, in-process); real ones in a fresh process, as a user sees them
(exit included): ENOSPC on a 400 KiB tmpfs (where the test may mount one: we run as root) and
EPERM from an immutable checkpoint folder (``chattr +i``); each skipped with the reason when the
machine does not allow it.
"""

from __future__ import annotations

import errno
import os
import pathlib
import subprocess
import sys

import orbax.checkpoint as ocp
import pytest
from errcheck import can_mount, mount_tmpfs, one_line_error, remount, tree_hashes, umount
from test_run import assert_rows_close, assert_trees_close

from bremen_jax import config as config_lib
from bremen_jax.cli import main
from bremen_jax.run import host as host_lib
from bremen_jax.run import run_host
from bremen_jax.run.lock import LOCK_NAME

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _cfg():
    return config_lib.load_config("test")


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run (checkpoint steps 3..8: deployment d, chunk c at d * 3 + c)."""
    workdir = tmp_path_factory.mktemp("reference")
    return workdir, run_host(_cfg(), workdir, progress=False)


@pytest.fixture
def tmpfs(tmp_path):
    """A mount point for a tmpfs, or a skip saying why none can be mounted here."""
    why = can_mount(tmp_path / "probe")
    if why is not None:
        pytest.skip(why)
    target = tmp_path / "mnt"
    yield target
    umount(target)


def _checkpoint_files(workdir: pathlib.Path) -> dict[str, str]:
    return {k: v for k, v in tree_hashes(workdir).items()
            if k.startswith("checkpoints/") and ".orbax-checkpoint-tmp" not in k}


def _no_tb(hashes: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in hashes.items() if not k.startswith("tb/")}


def _fail_save_at(monkeypatch, step: int, error: OSError, seen: dict) -> None:
    """orbax's save of checkpoint ``step`` raises ``error``; ``seen`` gets the hashes of every
    file of the work directory at that moment (the checkpoints already written)."""
    real = ocp.CheckpointManager.save

    def save(self, s, *args, **kwargs):
        if s == step:
            seen.update(tree_hashes(pathlib.Path(self.directory).parent, skip=(LOCK_NAME,)))
            raise error
        return real(self, s, *args, **kwargs)

    monkeypatch.setattr(ocp.CheckpointManager, "save", save)


def _bremen(*argv: str) -> subprocess.CompletedProcess:
    """``bremen ARGV`` in a fresh process (what a user sees, exit included); brax's import-time
    UserWarning is left out."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONWARNINGS": "ignore::UserWarning",
           "BREMEN_JAX_CACHE": str(ROOT / ".pytest_cache" / "jax")}
    return subprocess.run([sys.executable, "-m", "bremen_jax.cli", *argv], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=600, check=False)


def _resume_equals_reference(reference, workdir: pathlib.Path) -> None:
    resumed = run_host(_cfg(), workdir, resume=True, progress=False)
    assert_trees_close(resumed.state, reference[1].state)
    assert_rows_close(workdir, reference[0])


KEPT = "the run stopped and its last checkpoint (deployment 1, chunk 1) is intact"


@pytest.mark.parametrize("error, says", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)),
     f"No space left on device; {KEPT}; free space, then"),
    (PermissionError(errno.EACCES, os.strerror(errno.EACCES)),
     f"Permission denied; {KEPT}; make it writable again, then"),
])
def test_failed_checkpoint_save_is_one_line_and_resume_is_exact(reference, tmp_path, capfd,
                                                               monkeypatch, error, says):
    work = tmp_path / "run"
    seen: dict = {}
    _fail_save_at(monkeypatch, 5, error, seen)  # deployment 1, chunk 2
    rc = main(["train", "--config", "test", "--workdir", str(work), "--no-progress"])
    err = capfd.readouterr().err
    assert rc == 2
    one_line_error(err, "train", "cannot write the checkpoint of deployment 1, chunk 2 in "
                   f"{work}: ", says, f"continue with --resume --workdir {work}")
    # Nothing written after the failure (TensorBoard flushes its buffer at exit); no lock left.
    assert _no_tb(tree_hashes(work)) == _no_tb(seen)
    assert sorted(p.name for p in (work / "checkpoints").iterdir()) == ["3", "4"]
    monkeypatch.undo()
    _resume_equals_reference(reference, work)


def test_failed_log_write_is_one_line(reference, tmp_path, capfd, monkeypatch):
    work = tmp_path / "run"
    real = host_lib.Run.end_chunk

    def quota_exceeded(*args, **kwargs):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    def end_chunk(self, d, c, *args):
        if (d, c) == (2, 1):
            self.writer.write = quota_exceeded
        return real(self, d, c, *args)

    monkeypatch.setattr(host_lib.Run, "end_chunk", end_chunk)
    assert main(["train", "--config", "test", "--workdir", str(work), "--no-progress"]) == 2
    one_line_error(capfd.readouterr().err, "train", "cannot write the chunk log in", "quota",
                   "its last checkpoint (deployment 2, chunk 0) is intact; free space, then "
                   f"continue with --resume --workdir {work}")
    monkeypatch.undo()
    _resume_equals_reference(reference, work)


def test_disk_full_on_a_small_tmpfs(reference, tmpfs, tmp_path):
    """A real ENOSPC from orbax in a fresh process: stderr holds one line and no traceback
    (nor any from orbax's threads or at exit); after "freeing space" resume is exact."""
    mount_tmpfs(tmpfs, "size=400k")
    work = tmpfs / "run"
    proc = _bremen("train", "--config", "test", "--workdir", str(work), "--no-progress")
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc.stderr, "train", "No space left on device", "is intact; free space, "
                   f"then continue with --resume --workdir {work}")
    assert _checkpoint_files(work)  # the partial checkpoint was removed, the good ones kept
    assert not list((work / "checkpoints").glob("*.orbax-checkpoint-tmp*"))
    remount(tmpfs, "size=16m")  # space freed
    _resume_equals_reference(reference, work)


def _chattr(flag: str, path: pathlib.Path) -> str | None:
    """None if ``chattr FLAG PATH`` worked, else why not."""
    try:
        r = subprocess.run(["chattr", flag, str(path)], capture_output=True, text=True,
                           check=False)
    except OSError as e:
        return f"cannot run chattr: {e}"
    return None if r.returncode == 0 else f"chattr {flag} refused: {r.stderr.strip()}"


def test_permission_lost_mid_run(reference, tmp_path):
    """A real EPERM from orbax in a fresh process: the checkpoint folder of a run stopped at
    deployment 1, chunk 1 is made immutable (``chattr +i``: a read-only remount is refused while
    a run has files open, and chmod does not stop root), so the resumed run's next checkpoint
    fails; stderr holds one line (nothing at exit either); mutable again, resume is exact."""
    work = tmp_path / "run"
    run_host(_cfg(), work, progress=False, stop_at=(1, 1))
    before = _checkpoint_files(work)
    why = _chattr("+i", work / "checkpoints")
    if why is not None:
        pytest.skip(why)
    try:
        proc = _bremen("train", "--resume", "--workdir", str(work), "--no-progress")
    finally:
        _chattr("-i", work / "checkpoints")
    assert proc.returncode == 2, proc.stderr
    one_line_error(proc.stderr, "train", "cannot write the checkpoint of deployment 1, chunk 2",
                   f"Operation not permitted; {KEPT}; make it writable again, then continue "
                   f"with --resume --workdir {work}")
    assert _checkpoint_files(work) == before
    _resume_equals_reference(reference, work)
