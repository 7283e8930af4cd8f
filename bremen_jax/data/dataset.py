"""Transition datasets on disk: save, load and validate ``.npz`` files.

File format (``format = "bremen_jax.dataset"``, ``format_version = 1``)
-------------------------------------------------------------------------
One uncompressed NumPy ``.npz`` archive (a zip of ``.npy`` members) holding:

==============  ========  ===========================================================
member          dtype     shape / content
==============  ========  ===========================================================
``obs``         float32   ``[N, obs_dim]`` observation before the step
``action``      float32   ``[N, act_dim]`` action as sampled
``reward``      float32   ``[N]`` task reward
``next_obs``    float32   ``[N, obs_dim]`` true successor observation
``done``        float32   ``[N]`` 1.0 where the task's termination fired, else 0.0
``truncation``  float32   ``[N]`` 1.0 where the time limit cut the episode, else 0.0
metadata_json   unicode   0-d array holding one JSON object (below)
==============  ========  ===========================================================

Rows are transitions in collection order (the order matters: the buffer's train/validation
split takes the last 15% of a batch, ``reference/bremen-algorithm.md`` §2). ``N >= 1``; every
value is finite; ``done`` and ``truncation`` hold only 0 and 1.

Metadata keys. Required: ``format`` (``"bremen_jax.dataset"``), ``format_version`` (1),
``task`` (task name, str), ``obs_dim``, ``act_dim``, ``size`` (= N) (ints), ``sha256``.
Written by :func:`save_dataset` and optional on read: ``behavior_policy`` (free-form str or
dict describing the data-collecting policy), ``created`` (ISO-8601 UTC time),
``bremen_jax_version``. Any other JSON-serialisable user keys are kept as they are.

Checksum: ``sha256`` is the hex SHA-256 of, for each array in the fixed order
``obs, action, reward, next_obs, done, truncation``, the ASCII bytes ``"<name>:<d0>,<d1>;"``
(its shape) followed by its little-endian float32 C-order bytes (:func:`compute_checksum`).

Writes are atomic: the archive goes to a temporary file in the target directory, is fsync-ed,
then moved into place (``os.replace``, or a hard link when overwriting is not allowed), so a
crash never leaves a half-written file under the final name.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import pathlib
import secrets
import zipfile
from typing import Any, Dict, Mapping, Tuple, Union

import numpy as np

from bremen_jax.data.dataset_checks import (  # the format's names, importable from here too
    ARRAY_FIELDS, FORMAT, FORMAT_VERSION, METADATA_MEMBER, DatasetError, DatasetNotFoundError,
    check_dtype, check_metadata, check_shapes, check_task, check_values, compute_checksum)
from bremen_jax.types import Transition

PathLike = Union[str, os.PathLike]


# ----------------------------------------------------------------------------- saving


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):  # numpy / jax scalars and arrays
        return obj.tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def _field(transitions: Any, name: str) -> Any:
    if isinstance(transitions, Mapping):
        if name not in transitions:
            raise DatasetError(f"transitions: missing field '{name}'")
        return transitions[name]
    return getattr(transitions, name)


def save_dataset(path: PathLike, transitions: Union[Transition, Mapping[str, Any]],
                 metadata: Mapping[str, Any], *, overwrite: bool = False) -> pathlib.Path:
    """Validates and atomically writes a dataset file.

    Args:
        path: target file (written exactly there; ``.npz`` is the usual suffix). Missing
            parent directories are created.
        transitions: :class:`Transition` (or a mapping with the same six keys) with NumPy or
            JAX leaves ``[N, ...]``; floating leaves (and bool/int ``done``/``truncation``)
            are cast to float32.
        metadata: must contain ``task``; may contain ``behavior_policy``, ``created`` (kept;
            default now) and any JSON-serialisable user keys. ``obs_dim``/``act_dim``/
            ``size``/``format``/``format_version`` are computed and, if given, must agree;
            ``sha256`` and ``bremen_jax_version`` are always recomputed. So the metadata
            returned by :func:`load_dataset` can be passed back unchanged.
        overwrite: replace an existing file; otherwise ``FileExistsError``.

    Returns:
        The path written.

    Raises:
        DatasetError: invalid data or metadata (nothing is written).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = pathlib.Path(path)
    where = f"save_dataset({str(path)!r})"
    if path.exists() and not overwrite:
        raise _refuse(path)
    if not isinstance(metadata, Mapping):
        raise DatasetError(f"{where}: metadata must be a dict; got {type(metadata).__name__}")
    arrays = _float32_arrays(where, transitions)
    meta = _full_metadata(where, arrays, metadata)
    check_metadata(where, meta)
    check_shapes(where, {k: a.shape for k, a in arrays.items()}, meta)
    check_values(where, arrays)
    try:
        meta_json = json.dumps(meta, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{where}: metadata is not JSON-serialisable: {err}") from err
    _write_atomic(path, {**arrays, METADATA_MEMBER: np.array(meta_json)}, overwrite)
    return path


def _float32_arrays(where: str, transitions: Any) -> Dict[str, np.ndarray]:
    """The six fields as float32 arrays (dtype checked; ``obs``/``action`` must be 2-D)."""
    arrays = {}
    for name in ARRAY_FIELDS:
        a = np.asarray(_field(transitions, name))
        check_dtype(where, name, a.dtype)
        arrays[name] = a.astype(np.float32)
    for name in ("obs", "action"):
        if arrays[name].ndim != 2:
            raise DatasetError(f"{where}: field '{name}' has shape {arrays[name].shape}; "
                               "expected 2-D (N, dim)")
    return arrays


def _full_metadata(where: str, arrays: Mapping[str, np.ndarray],
                   metadata: Mapping[str, Any]) -> Dict[str, Any]:
    """The metadata written: computed keys (checked against ``metadata``), then the user's."""
    from bremen_jax import __version__

    computed = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "obs_dim": int(arrays["obs"].shape[1]),
        "act_dim": int(arrays["action"].shape[1]),
        "size": int(arrays["obs"].shape[0]),
    }
    if "task" not in metadata:
        raise DatasetError(f"{where}: metadata is missing the required key 'task'")
    for key, value in computed.items():
        if key in metadata and metadata[key] != value:
            raise DatasetError(f"{where}: metadata '{key}' is {metadata[key]!r}; expected "
                               f"{value!r} (computed from the arrays)")
    meta: Dict[str, Any] = dict(computed)
    meta["task"] = metadata["task"]
    meta["behavior_policy"] = metadata.get("behavior_policy", "unspecified")
    meta["created"] = metadata.get(
        "created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    meta["bremen_jax_version"] = __version__
    meta["sha256"] = compute_checksum(arrays)
    for key, value in metadata.items():
        meta.setdefault(key, value)
    return meta


def _write_atomic(path: pathlib.Path, members: Mapping[str, np.ndarray], overwrite: bool) -> None:
    """Writes ``members`` as an ``.npz`` to a temporary file, fsyncs it, moves it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **members)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            _move_no_overwrite(tmp, path)
        _fsync_dir(path.parent)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _refuse(path: pathlib.Path) -> FileExistsError:
    return FileExistsError(f"refusing to overwrite existing file {path}; "
                           "pass overwrite=True to replace it")


def _move_no_overwrite(tmp: pathlib.Path, path: pathlib.Path) -> None:
    """Publishes ``tmp`` as ``path`` unless ``path`` exists (atomic where hard links work)."""
    try:
        os.link(tmp, path)  # FileExistsError if someone created path meanwhile
    except FileExistsError:
        raise _refuse(path) from None
    except OSError:  # file system without hard links
        if path.exists():
            raise _refuse(path) from None
        os.replace(tmp, path)


def _fsync_dir(directory: pathlib.Path) -> None:
    with contextlib.suppress(OSError):  # not supported everywhere (e.g. Windows)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# ----------------------------------------------------------------------------- loading


def _corrupt(where: str, err: BaseException) -> DatasetError:
    return DatasetError(f"{where}: file is truncated or not a bremen_jax dataset "
                        f"(expected a readable .npz archive; {type(err).__name__}: {err})")


def _open(path: PathLike) -> Tuple[zipfile.ZipFile, str]:
    path = pathlib.Path(path)
    where = str(path)
    if not path.exists():
        raise DatasetNotFoundError(f"{where}: no such dataset file")
    if not path.is_file():
        raise DatasetError(f"{where}: not a regular file; expected a bremen_jax dataset (.npz)")
    try:
        return zipfile.ZipFile(path), where
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise _corrupt(where, err) from err


def _member(zf: zipfile.ZipFile, where: str, name: str, what: str) -> zipfile.ZipInfo:
    try:
        return zf.getinfo(name + ".npy")
    except KeyError:
        raise DatasetError(f"{where}: missing {what} '{name}'; expected a bremen_jax dataset "
                           f"with arrays {', '.join(ARRAY_FIELDS)} and {METADATA_MEMBER}") from None


def _read_header(zf: zipfile.ZipFile, where: str, name: str) -> Tuple[Tuple[int, ...], np.dtype]:
    info = _member(zf, where, name, "array")
    try:
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise _corrupt(f"{where}: field '{name}'", err) from err
    return tuple(shape), dtype


def _read_array(zf: zipfile.ZipFile, where: str, name: str, what: str = "array") -> np.ndarray:
    info = _member(zf, where, name, what)
    try:
        with zf.open(info) as f:
            return np.lib.format.read_array(f, allow_pickle=False)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as err:
        raise _corrupt(f"{where}: field '{name}'", err) from err


def _read_metadata(zf: zipfile.ZipFile, where: str) -> Dict[str, Any]:
    raw = _read_array(zf, where, METADATA_MEMBER, what="metadata")
    if raw.ndim != 0 or raw.dtype.kind not in "US":
        raise DatasetError(f"{where}: '{METADATA_MEMBER}' has dtype {raw.dtype} and shape "
                           f"{raw.shape}; expected a 0-d unicode array holding JSON")
    text = raw[()]
    text = text.decode("utf-8") if isinstance(text, bytes) else str(text)
    try:
        meta = json.loads(text)
    except ValueError as err:
        raise DatasetError(f"{where}: '{METADATA_MEMBER}' is not valid JSON ({err}); "
                           "expected a JSON object") from err
    check_metadata(where, meta)
    return meta


def _read_checked_headers(zf: zipfile.ZipFile, where: str) -> Dict[str, Any]:
    meta = _read_metadata(zf, where)
    headers = {name: _read_header(zf, where, name) for name in ARRAY_FIELDS}
    for name, (_, dtype) in headers.items():
        check_dtype(where, name, dtype)
    check_shapes(where, {name: shape for name, (shape, _) in headers.items()}, meta)
    return meta


def dataset_info(path: PathLike) -> Dict[str, Any]:
    """Metadata of a dataset file, validated without reading the array data.

    Checks the archive, the metadata and every array's presence, dtype and shape (from the
    ``.npy`` headers); :func:`load_dataset` additionally checks values and the checksum.

    Raises:
        DatasetError: as :func:`load_dataset` (DatasetNotFoundError if missing).
    """
    zf, where = _open(path)
    with zf:
        return _read_checked_headers(zf, where)


def load_dataset(path: PathLike, task: Any = None) -> Tuple[Transition, Dict[str, Any]]:
    """Loads and fully validates a dataset file.

    Args:
        path: dataset file.
        task: optional task name (str) or an object with ``.name``, ``.obs_size`` and
            ``.action_size`` (e.g. a ``bremen_jax.envs`` Task); the dataset must have been
            recorded on that task with matching dimensions.

    Returns:
        ``(transitions, metadata)``: a :class:`Transition` with NumPy float32 leaves
        (``obs [N, obs_dim]``, ``reward [N]``, ...) and the metadata dict.

    Raises:
        DatasetNotFoundError: the file does not exist.
        DatasetError: anything else wrong; the message names the file, the field and what
            was expected.
        TypeError: ``task`` is neither a str nor task-like.
    """
    zf, where = _open(path)
    with zf:
        meta = _read_checked_headers(zf, where)
        check_task(where, meta, task)
        arrays = {name: _read_array(zf, where, name).astype(np.float32, copy=False)
                  for name in ARRAY_FIELDS}
    check_values(where, arrays)
    sha = compute_checksum(arrays)
    if sha != meta["sha256"]:
        raise DatasetError(f"{where}: checksum mismatch: arrays hash to sha256 {sha}; expected "
                           f"{meta['sha256']} from the metadata (file modified or corrupt)")
    return Transition(**arrays), meta
