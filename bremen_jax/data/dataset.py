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
import hashlib
import json
import os
import pathlib
import secrets
import zipfile
from typing import Any, Dict, Mapping, Tuple, Union

import numpy as np

from bremen_jax.types import Transition

FORMAT = "bremen_jax.dataset"
FORMAT_VERSION = 1
ARRAY_FIELDS = ("obs", "action", "reward", "next_obs", "done", "truncation")
BINARY_FIELDS = ("done", "truncation")
METADATA_MEMBER = "metadata_json"
REQUIRED_METADATA = ("format", "format_version", "task", "obs_dim", "act_dim", "size", "sha256")

PathLike = Union[str, os.PathLike]


class DatasetError(ValueError):
    """A dataset file or the data to be saved is invalid; the message names file and field."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset file does not exist (also a ``FileNotFoundError``)."""


# ----------------------------------------------------------------------------- validation


def compute_checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """Hex SHA-256 of the six arrays in the fixed order (see the module docstring)."""
    h = hashlib.sha256()
    for name in ARRAY_FIELDS:
        a = np.ascontiguousarray(arrays[name], dtype="<f4")
        h.update(f"{name}:{','.join(str(d) for d in a.shape)};".encode("ascii"))
        h.update(a.tobytes())
    return h.hexdigest()


def _check_dtype(where: str, name: str, dtype: np.dtype) -> None:
    ok = dtype.kind == "f" or (name in BINARY_FIELDS and dtype.kind in "biu")
    if not ok:
        extra = ", or bool/int 0/1" if name in BINARY_FIELDS else ""
        raise DatasetError(f"{where}: field '{name}' has dtype {dtype}; expected float32 "
                           f"(or another floating dtype{extra})")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _check_metadata(where: str, meta: Any) -> None:
    if not isinstance(meta, dict):
        raise DatasetError(f"{where}: metadata must be a JSON object; got {type(meta).__name__}")
    if meta.get("format") != FORMAT:
        raise DatasetError(f"{where}: metadata 'format' is {meta.get('format')!r}; expected "
                           f"{FORMAT!r} (not a bremen_jax dataset)")
    if meta.get("format_version") != FORMAT_VERSION:
        raise DatasetError(f"{where}: unsupported metadata 'format_version' "
                           f"{meta.get('format_version')!r}; expected {FORMAT_VERSION}")
    for key in REQUIRED_METADATA:
        if key not in meta:
            raise DatasetError(f"{where}: metadata is missing the required key '{key}'")
    if not isinstance(meta["task"], str) or not meta["task"]:
        raise DatasetError(f"{where}: metadata 'task' is {meta['task']!r}; expected a "
                           "non-empty task name (str)")
    for key, low in (("obs_dim", 1), ("act_dim", 1), ("size", 0)):
        if not _is_int(meta[key]) or meta[key] < low:
            raise DatasetError(f"{where}: metadata '{key}' is {meta[key]!r}; expected an int "
                               f">= {low}")
    sha = meta["sha256"]
    if not (isinstance(sha, str) and len(sha) == 64
            and all(c in "0123456789abcdef" for c in sha)):
        raise DatasetError(f"{where}: metadata 'sha256' is {sha!r}; expected 64 lowercase "
                           "hex digits")
    bp = meta.get("behavior_policy", "")
    if not isinstance(bp, (str, dict)):
        raise DatasetError(f"{where}: metadata 'behavior_policy' is a {type(bp).__name__}; "
                           "expected a str or a dict")


def _check_shapes(where: str, shapes: Mapping[str, Tuple[int, ...]],
                  meta: Mapping[str, Any]) -> int:
    """Checks ranks, row counts and widths against the metadata; returns N."""
    obs_dim, act_dim = meta["obs_dim"], meta["act_dim"]
    widths = {"obs": obs_dim, "action": act_dim, "next_obs": obs_dim}
    n = shapes["obs"][0] if len(shapes["obs"]) >= 1 else None
    for name in ARRAY_FIELDS:
        shape = tuple(shapes[name])
        if name in widths:
            rank_doc = f"(N, {'obs_dim' if name != 'action' else 'act_dim'})"
            expected = (n, widths[name])
        else:
            rank_doc, expected = "(N,)", (n,)
        if len(shape) != len(expected):
            raise DatasetError(f"{where}: field '{name}' has shape {shape}; expected "
                               f"{rank_doc} = {expected}")
        if shape[0] != n:
            raise DatasetError(f"{where}: field '{name}' has {shape[0]} rows; expected {n} "
                               "(the rows of 'obs')")
        if shape != expected:
            raise DatasetError(f"{where}: field '{name}' has shape {shape}; expected "
                               f"{rank_doc} = {expected} (obs_dim={obs_dim}, "
                               f"act_dim={act_dim} from the metadata)")
    if meta["size"] != n:
        raise DatasetError(f"{where}: metadata 'size' is {meta['size']}; expected {n} "
                           "(the rows of the arrays)")
    if n == 0:
        raise DatasetError(f"{where}: dataset is empty (0 transitions); expected N >= 1")
    return n


def _check_values(where: str, arrays: Mapping[str, np.ndarray]) -> None:
    for name in ARRAY_FIELDS:
        a = arrays[name]
        finite = np.isfinite(a).reshape(a.shape[0], -1).all(axis=1)
        if not finite.all():
            row = int(np.argmin(finite))
            bad = a[row][~np.isfinite(a[row])].ravel()[0] if a.ndim > 1 else a[row]
            raise DatasetError(f"{where}: field '{name}' has a non-finite value ({bad}) at row "
                               f"{row}; expected all values finite")
    for name in BINARY_FIELDS:
        a = arrays[name]
        binary = (a == 0) | (a == 1)
        if not binary.all():
            row = int(np.argmin(binary))
            raise DatasetError(f"{where}: field '{name}' is {a[row]} at row {row}; expected "
                               "only 0 or 1")


def _check_task(where: str, meta: Mapping[str, Any], task: Any) -> None:
    if task is None:
        return
    if isinstance(task, str):
        name, obs_size, act_size = task, None, None
    else:
        try:
            name, obs_size, act_size = task.name, task.obs_size, task.action_size
        except AttributeError as err:
            raise TypeError("task must be a task name (str) or an object with .name, "
                            f".obs_size and .action_size; got {type(task).__name__}") from err
    if meta["task"] != name:
        raise DatasetError(f"{where}: metadata 'task' is {meta['task']!r}; expected {name!r} "
                           "(dataset recorded on another task)")
    for key, size in (("obs_dim", obs_size), ("act_dim", act_size)):
        if size is not None and int(size) != meta[key]:
            raise DatasetError(f"{where}: metadata '{key}' is {meta[key]}; expected {int(size)}"
                               f" for task {name!r}")


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
    from bremen_jax import __version__

    path = pathlib.Path(path)
    where = f"save_dataset({str(path)!r})"
    if path.exists() and not overwrite:
        raise _refuse(path)
    if not isinstance(metadata, Mapping):
        raise DatasetError(f"{where}: metadata must be a dict; got {type(metadata).__name__}")
    arrays = {}
    for name in ARRAY_FIELDS:
        a = np.asarray(_field(transitions, name))
        _check_dtype(where, name, a.dtype)
        arrays[name] = a.astype(np.float32)
    for name in ("obs", "action"):
        if arrays[name].ndim != 2:
            raise DatasetError(f"{where}: field '{name}' has shape {arrays[name].shape}; "
                               "expected 2-D (N, dim)")
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

    _check_metadata(where, meta)
    _check_shapes(where, {k: a.shape for k, a in arrays.items()}, meta)
    _check_values(where, arrays)
    try:
        meta_json = json.dumps(meta, allow_nan=False, default=_json_default)
    except (TypeError, ValueError) as err:
        raise DatasetError(f"{where}: metadata is not JSON-serialisable: {err}") from err

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays, **{METADATA_MEMBER: np.array(meta_json)})
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
    return path


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
    _check_metadata(where, meta)
    return meta


def _read_checked_headers(zf: zipfile.ZipFile, where: str) -> Dict[str, Any]:
    meta = _read_metadata(zf, where)
    headers = {name: _read_header(zf, where, name) for name in ARRAY_FIELDS}
    for name, (_, dtype) in headers.items():
        _check_dtype(where, name, dtype)
    _check_shapes(where, {name: shape for name, (shape, _) in headers.items()}, meta)
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
        _check_task(where, meta, task)
        arrays = {name: _read_array(zf, where, name).astype(np.float32, copy=False)
                  for name in ARRAY_FIELDS}
    _check_values(where, arrays)
    sha = compute_checksum(arrays)
    if sha != meta["sha256"]:
        raise DatasetError(f"{where}: checksum mismatch: arrays hash to sha256 {sha}; expected "
                           f"{meta['sha256']} from the metadata (file modified or corrupt)")
    return Transition(**arrays), meta
