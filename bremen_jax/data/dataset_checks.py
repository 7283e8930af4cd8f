"""The rules of a ``bremen_jax.dataset`` file (format: :mod:`bremen_jax.data.dataset`).

The format's constants and errors, the checksum, and the checks that :func:`~bremen_jax.data.
dataset.save_dataset`, :func:`~bremen_jax.data.dataset.load_dataset` and
:func:`~bremen_jax.data.dataset.dataset_info` apply. Each check raises :class:`DatasetError` whose
message starts with ``where`` (the file, or ``save_dataset('<path>')``) and names the field and what
was expected.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping, Tuple

import numpy as np

FORMAT = "bremen_jax.dataset"
FORMAT_VERSION = 1
ARRAY_FIELDS = ("obs", "action", "reward", "next_obs", "done", "truncation")
BINARY_FIELDS = ("done", "truncation")
METADATA_MEMBER = "metadata_json"
REQUIRED_METADATA = ("format", "format_version", "task", "obs_dim", "act_dim", "size", "sha256")


class DatasetError(ValueError):
    """A dataset file or the data to be saved is invalid; the message names file and field."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset file does not exist (also a ``FileNotFoundError``)."""


def compute_checksum(arrays: Mapping[str, np.ndarray]) -> str:
    """Hex SHA-256 of the six arrays in the fixed order (:mod:`bremen_jax.data.dataset`)."""
    h = hashlib.sha256()
    for name in ARRAY_FIELDS:
        a = np.ascontiguousarray(arrays[name], dtype="<f4")
        h.update(f"{name}:{','.join(str(d) for d in a.shape)};".encode("ascii"))
        h.update(a.tobytes())
    return h.hexdigest()


def check_dtype(where: str, name: str, dtype: np.dtype) -> None:
    ok = dtype.kind == "f" or (name in BINARY_FIELDS and dtype.kind in "biu")
    if not ok:
        extra = ", or bool/int 0/1" if name in BINARY_FIELDS else ""
        raise DatasetError(f"{where}: field '{name}' has dtype {dtype}; expected float32 "
                           f"(or another floating dtype{extra})")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def check_metadata(where: str, meta: Any) -> None:
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


def check_shapes(where: str, shapes: Mapping[str, Tuple[int, ...]],
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


def check_values(where: str, arrays: Mapping[str, np.ndarray]) -> None:
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


def check_task(where: str, meta: Mapping[str, Any], task: Any) -> None:
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

