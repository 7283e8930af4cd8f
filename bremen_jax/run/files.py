"""The files of a work directory: read with one-line errors naming the file, written whole.

* :func:`read_json_object`: ``config.json``, ``run.json``, ``summary.json`` -- unreadable, not
  JSON or not an object is one :class:`RunFileError` line naming the file;
* :func:`atomic_write`: through a temporary file and a rename (a full disk leaves the old file);
* :func:`truncate_logs`: on resume, drops log rows written after the restored checkpoint (and a
  last line cut short by a failed write).
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib

STREAMS = ("chunks", "deployments")


def writable_file(path: str | pathlib.Path, suffixes: tuple[str, ...]) -> pathlib.Path:
    """``path`` if a file can be written there: its suffix one of ``suffixes``, not a folder, in
    an existing writable folder; else one ValueError line naming what was wrong and what was
    expected. Checked before anything heavy runs."""
    p = pathlib.Path(path)
    if p.suffix.lower() not in suffixes:
        names = (", ".join(suffixes[:-1]) + " or " + suffixes[-1]) if len(suffixes) > 1 \
            else suffixes[0]
        raise ValueError(f"cannot write {p}: the file name must end in {names}, "
                         f"got {p.suffix or 'no suffix'!r}")
    folder = p.parent
    why = ("is a directory" if p.is_dir() else
           f"is in {folder}, which does not exist" if not folder.exists() else
           f"is in {folder}, which is not a directory" if not folder.is_dir() else
           f"is in {folder}, which is not writable" if not os.access(folder, os.W_OK) else None)
    if why:
        raise ValueError(f"cannot write {p}: it {why}; expected a file in a writable folder")
    return p


RENDER_SUFFIXES = (".html", ".gif", ".mp4")


def render_output(path: str | pathlib.Path) -> pathlib.Path:
    """:func:`writable_file` for ``bremen render``: one of :data:`RENDER_SUFFIXES`, and for .mp4
    the imageio-ffmpeg package installed."""
    p = writable_file(path, RENDER_SUFFIXES)
    if p.suffix.lower() == ".mp4" and importlib.util.find_spec("imageio_ffmpeg") is None:
        raise ValueError(f"cannot write {p}: .mp4 needs the imageio-ffmpeg package "
                         f"(pip install -e '.[video]' or pip install imageio-ffmpeg); .gif and "
                         f".html need nothing more")
    return p


class RunFileError(ValueError):
    """A file inside a work directory is unreadable or malformed (the message names it)."""


_JSON_TYPES = {list: "an array", str: "a string", int: "a number", float: "a number",
               bool: "a boolean", type(None): "null"}


def read_json_object(path: pathlib.Path, what: str) -> dict:
    """A JSON object file of a work directory; one :class:`RunFileError` line naming the file if
    it is unreadable, not JSON, or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        why = (f"cannot be read ({e.strerror or e})" if isinstance(e, OSError)
               else f"is not valid JSON ({e})")
        raise RunFileError(f"{path} {why}; expected {what} (a JSON object) as bremen writes "
                           f"it") from None
    if not isinstance(data, dict):
        raise RunFileError(f"{path} holds {_JSON_TYPES.get(type(data), 'a JSON value')}; "
                           f"expected {what} (a JSON object) as bremen writes it")
    return data


def atomic_write(path: pathlib.Path, text: str) -> None:
    """Writes ``path`` through a temporary file and a rename: a failed write (disk full) leaves
    the old content, never half a file."""
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _log_rows(path: pathlib.Path, stream: str, n_chunks: int) -> tuple[list, int]:
    """``([(position, row), ...], lines)`` of a JSONL log; a last line cut short by a failed
    write is dropped; any other bad line is one :class:`RunFileError` naming the file."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            at = (row["deployment"], row["chunk"] if stream == "chunks" else n_chunks)
        except ValueError:
            if i == len(lines) - 1:
                break
            raise RunFileError(f"{path} line {i + 1} is not JSON; expected one JSON object "
                               f"per line as bremen writes it") from None
        except (KeyError, TypeError):
            raise RunFileError(f"{path} line {i + 1} has no deployment/chunk; expected the "
                               f"rows bremen writes") from None
        out.append((at, row))
    return out, len(lines)


def truncate_logs(workdir: pathlib.Path, pos: tuple[int, int], n_chunks: int) -> None:
    """Drops log rows written after checkpoint ``pos`` (a crash or a failed write between log
    and checkpoint)."""
    for stream in STREAMS:
        path = workdir / f"{stream}.jsonl"
        if not path.exists():
            continue
        rows, n_lines = _log_rows(path, stream, n_chunks)
        keep = [r for at, r in rows if at <= pos]
        if len(keep) != n_lines:
            atomic_write(path, "".join(json.dumps(r) + "\n" for r in keep))
        csv_path = workdir / f"{stream}.csv"
        if csv_path.exists():
            lines = csv_path.read_text(encoding="utf-8").splitlines(keepends=True)
            if len(lines) > 1 + len(keep):
                atomic_write(csv_path, "".join(lines[:1 + len(keep)]))
