"""Helpers of the bad-input and fault tests (test_bad_configs, test_workdir_errors,
test_disk_errors): a command's one-line error, and hashes of every file under a folder."""

from __future__ import annotations

import hashlib
import pathlib
import subprocess

from bremen_jax.cli import main


def tree_hashes(root: pathlib.Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """``{relative path: sha256}`` of every file under ``root`` (names in ``skip`` left out)."""
    root = pathlib.Path(root)
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name not in skip}


def one_line_error(err: str, command: str, *needles: str) -> str:
    """Checks that ``err`` (a command's stderr) is exactly one ``bremen COMMAND: error: ...`` line
    holding every needle and no traceback; returns the line."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith(f"bremen {command}: error: "), line
    for needle in needles:
        assert needle in line, (needle, line)
    return line


def refused(capsys, argv: list[str], *needles: str, watch: tuple = ()) -> str:
    """Runs ``bremen ARGV`` in-process: exit status 2, one error line holding the needles, and
    every file under each path in ``watch`` unchanged. Returns the line."""
    before = [tree_hashes(p) if p.exists() else None for p in map(pathlib.Path, watch)]
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, (rc, err)
    after = [tree_hashes(p) if p.exists() else None for p in map(pathlib.Path, watch)]
    assert after == before, "files changed"
    return one_line_error(err, argv[0], *needles)


def can_mount(target: pathlib.Path) -> str | None:
    """None if a tmpfs can be mounted here (we run as root), else the reason it cannot."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target)],
                           check=False, capture_output=True, text=True)
    except OSError as e:
        return f"cannot run mount: {e}"
    if r.returncode != 0:
        return f"cannot mount a tmpfs here: {(r.stderr or r.stdout).strip() or r.returncode}"
    subprocess.run(["umount", str(target)], check=True)
    return None


def mount_tmpfs(target: pathlib.Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True)


def remount(target: pathlib.Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(target)], check=True)


def umount(target: pathlib.Path) -> None:
    subprocess.run(["umount", "-l", str(target)], check=False)
