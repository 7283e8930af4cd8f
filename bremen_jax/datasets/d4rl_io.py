"""Import and export of data users already have: D4RL-format HDF5 and local Minari datasets.

D4RL layout (one HDF5 file, datasets at the root, ``N`` rows each)::

    observations       [N, obs_dim]  float
    actions            [N, act_dim]  float
    rewards            [N]           float
    terminals          [N]           bool or 0/1   -> Transition.done
    timeouts           [N]           bool or 0/1   -> Transition.truncation (where not terminal)
    next_observations  [N, obs_dim]  float         (optional)

Without ``next_observations`` the successor is derived within episodes (an episode ends at a row
with ``terminals`` or ``timeouts``): ``next_obs[i] = observations[i + 1]``, and the last step of
every episode, whose successor is not in the file, is dropped, as is the file's last row
(``d4rl.qlearning_dataset`` drops timeout steps but keeps terminal steps with the next episode's
first observation as their successor; BREMEN fits dynamics on ``next_obs``, so those are dropped
too). The kept row before a dropped one gets ``truncation = 1``, ``done`` is then 0 everywhere.
``timeouts`` may be absent only when ``next_observations`` is present (then all 0).

Minari layout (checked against ``minari/dataset/_storages/hdf5_storage.py`` and
``minari_storage.py``): ``<dir>/data/metadata.json`` (``data_format`` ``"hdf5"``,
``total_episodes``, ...) and ``<dir>/data/main_data.hdf5`` with one group ``episode_<i>`` per
episode holding ``observations [T + 1, obs_dim]`` (the last row is the final observation),
``actions [T, act_dim]``, ``rewards [T]``, ``terminations [T]``, ``truncations [T]`` and ``infos``
(ignored). Only Box (array) observation and action spaces are supported. The ``minari`` package is
not needed.

Errors are :class:`~bremen_jax.data.dataset.DatasetError` (a ``ValueError``) naming the file, the
key and the expected layout.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
from typing import Any, Dict, Mapping, Tuple

import numpy as np

from bremen_jax.data.dataset import DatasetError, PathLike, save_dataset
from bremen_jax.types import Transition

D4RL_LAYOUT = ("observations [N, obs_dim], actions [N, act_dim], rewards [N], terminals [N], "
               "timeouts [N], optional next_observations [N, obs_dim]")
MINARI_LAYOUT = ("data/metadata.json and data/main_data.hdf5 with groups episode_<i> holding "
                 "observations [T+1, obs_dim], actions [T, act_dim], rewards [T], "
                 "terminations [T], truncations [T]")
METADATA_ATTR = "bremen_jax_metadata"
# Keys save_dataset computes itself; dropped from imported metadata so it can be saved again.
_MANAGED = ("format", "format_version", "obs_dim", "act_dim", "size", "sha256",
            "bremen_jax_version", "created")


def _h5py():
    import h5py  # lazy: only the importers need it
    return h5py


def _as_float(where: str, key: str, a: np.ndarray, rank: int, layout: str) -> np.ndarray:
    if a.ndim != rank:
        shape = "[N, dim]" if rank == 2 else "[N]"
        raise DatasetError(f"{where}: '{key}' has shape {a.shape} (rank {a.ndim}); expected "
                           f"rank {rank} {shape} ({layout})")
    if a.dtype.kind != "f":
        raise DatasetError(f"{where}: '{key}' has dtype {a.dtype}; expected a floating dtype "
                           f"({layout})")
    a = a.astype(np.float32)
    bad = ~np.isfinite(a).reshape(a.shape[0], -1).all(axis=1)
    if bad.any():
        raise DatasetError(f"{where}: '{key}' has a non-finite value at row "
                           f"{int(np.argmax(bad))}; expected all values finite")
    return a


def _as_flag(where: str, key: str, a: np.ndarray, layout: str) -> np.ndarray:
    if a.ndim != 1:
        raise DatasetError(f"{where}: '{key}' has shape {a.shape} (rank {a.ndim}); expected "
                           f"rank 1 [N] ({layout})")
    if a.dtype.kind not in "biuf":
        raise DatasetError(f"{where}: '{key}' has dtype {a.dtype}; expected bool or 0/1 "
                           f"({layout})")
    ok = (a == 0) | (a == 1)
    if not ok.all():
        raise DatasetError(f"{where}: '{key}' is {a[int(np.argmin(ok))]} at row "
                           f"{int(np.argmin(ok))}; expected only 0/1 (or bool)")
    return a.astype(bool)


def _check_lengths(where: str, arrays: Mapping[str, np.ndarray], n: int, ref: str,
                   layout: str) -> None:
    for key, a in arrays.items():
        if a.shape[0] != n:
            raise DatasetError(f"{where}: '{key}' has {a.shape[0]} rows but '{ref}' has {n}; "
                               f"expected equal lengths ({layout})")


def _read(where: str, group: Any, key: str, layout: str, optional: bool = False):
    h5py = _h5py()
    if key not in group:
        if optional:
            return None
        raise DatasetError(f"{where}: missing key '{key}'; expected {layout}")
    node = group[key]
    if not isinstance(node, h5py.Dataset):
        raise DatasetError(f"{where}: '{key}' is a {type(node).__name__}, not an array; "
                           f"expected {layout} (only Box spaces are supported)")
    return np.asarray(node[()])


def _open_h5(path: pathlib.Path, what: str):
    h5py = _h5py()
    if not path.is_file():
        raise DatasetError(f"{path}: no such {what} file")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise DatasetError(f"{path}: not a readable HDF5 file ({err}); expected {what}") from err


def _saved_metadata(attrs: Mapping[str, Any]) -> Dict[str, Any]:
    raw = attrs.get(METADATA_ATTR)
    if raw is None:
        return {}
    try:
        meta = json.loads(raw.decode() if isinstance(raw, bytes) else str(raw))
    except ValueError:
        return {}
    if not isinstance(meta, dict):
        return {}
    return {k: v for k, v in meta.items() if k not in _MANAGED}


def import_d4rl_hdf5(path: PathLike, *, task: str | None = None
                     ) -> Tuple[Transition, Dict[str, Any]]:
    """Reads a D4RL-format HDF5 file (layout: module doc).

    Args:
        path: the ``.hdf5`` file.
        task: task name to record in the metadata (default: the file's own, if it has one).

    Returns:
        ``(transitions, metadata)``: NumPy float32 leaves ``[M, ...]`` (``M = N`` when
        ``next_observations`` is present) and a metadata dict ready for
        :func:`~bremen_jax.data.dataset.save_dataset` once ``task`` is set.

    Raises:
        DatasetError: missing key, wrong rank or dtype, length mismatch, non-finite value, or
            no rows left.
    """
    path = pathlib.Path(path)
    where, lay = str(path), "D4RL layout: " + D4RL_LAYOUT
    with _open_h5(path, "D4RL HDF5") as f:
        raw = {k: _read(where, f, k, lay) for k in ("observations", "actions", "rewards",
                                                    "terminals")}
        raw["timeouts"] = _read(where, f, "timeouts", lay, optional=True)
        raw["next_observations"] = _read(where, f, "next_observations", lay, optional=True)
        meta = _saved_metadata(f.attrs)
    obs = _as_float(where, "observations", raw["observations"], 2, lay)
    arrays = {"actions": _as_float(where, "actions", raw["actions"], 2, lay),
              "rewards": _as_float(where, "rewards", raw["rewards"], 1, lay),
              "terminals": _as_flag(where, "terminals", raw["terminals"], lay)}
    derived = raw["next_observations"] is None
    if raw["timeouts"] is None:
        if derived:
            raise DatasetError(f"{where}: missing key 'timeouts', needed to find episode ends "
                               f"when 'next_observations' is absent; expected {lay}")
        arrays["timeouts"] = np.zeros(obs.shape[0], bool)
    else:
        arrays["timeouts"] = _as_flag(where, "timeouts", raw["timeouts"], lay)
    if not derived:
        arrays["next_observations"] = _as_float(where, "next_observations",
                                                raw["next_observations"], 2, lay)
    n = obs.shape[0]
    _check_lengths(where, arrays, n, "observations", lay)
    if not derived and arrays["next_observations"].shape[1] != obs.shape[1]:
        raise DatasetError(f"{where}: 'next_observations' has width "
                           f"{arrays['next_observations'].shape[1]} but 'observations' has "
                           f"{obs.shape[1]}; expected the same obs_dim")
    terminals, timeouts = arrays["terminals"], arrays["timeouts"]
    if derived:
        ends = terminals | timeouts
        keep = np.zeros(n, bool)
        keep[:-1] = ~ends[:-1]
        trunc_next = np.zeros(n, bool)
        trunc_next[:-1] = ends[1:]
        trunc_next[n - 2:n - 1] = True  # the file's last row is dropped too
        tr = Transition(obs=obs[keep], action=arrays["actions"][keep],
                        reward=arrays["rewards"][keep], next_obs=obs[1:][keep[:-1]],
                        done=np.zeros(int(keep.sum()), np.float32),
                        truncation=trunc_next[keep].astype(np.float32))
    else:
        tr = Transition(obs=obs, action=arrays["actions"], reward=arrays["rewards"],
                        next_obs=arrays["next_observations"],
                        done=terminals.astype(np.float32),
                        truncation=(timeouts & ~terminals).astype(np.float32))
    if tr.obs.shape[0] == 0:
        raise DatasetError(f"{where}: no transitions left after deriving next_observations "
                           f"from {n} rows; expected at least one step with a successor")
    meta.update({"source_format": "d4rl_hdf5", "source_path": str(path), "source_rows": n,
                 "derived_next_observations": derived,
                 "dropped_rows": int(n - tr.obs.shape[0])})
    if task is not None:
        meta["task"] = task
    return tr, meta


def _write_atomic(path: pathlib.Path, overwrite: bool, write) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"refusing to overwrite existing file {path}; "
                              "pass overwrite=True to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        write(tmp)
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(f"refusing to overwrite existing file {path}") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def export_d4rl_hdf5(transitions: Transition | Mapping[str, Any], path: PathLike,
                     metadata: Mapping[str, Any] | None = None, *,
                     overwrite: bool = False) -> pathlib.Path:
    """Writes transitions in the D4RL layout (with ``next_observations``) plus metadata attrs.

    ``done`` -> ``terminals`` and ``truncation`` -> ``timeouts`` (bool); float arrays as float32.
    The metadata is stored as JSON in the root attribute ``bremen_jax_metadata``, and each
    top-level str/int/float/bool entry also as its own root attribute.

    Raises:
        DatasetError: invalid arrays (ranks, lengths, non-finite, non-0/1 flags).
        FileExistsError: ``path`` exists and ``overwrite`` is False.
    """
    path = pathlib.Path(path)
    where, lay = f"export_d4rl_hdf5({str(path)!r})", "bremen_jax Transition"
    get = (transitions.get if isinstance(transitions, Mapping)
           else lambda k: getattr(transitions, k, None))
    fields = {}
    for name in ("obs", "action", "reward", "next_obs", "done", "truncation"):
        if get(name) is None:
            raise DatasetError(f"{where}: transitions miss field '{name}'")
        fields[name] = np.asarray(get(name))
    out = {"observations": _as_float(where, "obs", fields["obs"], 2, lay),
           "actions": _as_float(where, "action", fields["action"], 2, lay),
           "rewards": _as_float(where, "reward", fields["reward"], 1, lay),
           "next_observations": _as_float(where, "next_obs", fields["next_obs"], 2, lay),
           "terminals": _as_flag(where, "done", fields["done"], lay),
           "timeouts": _as_flag(where, "truncation", fields["truncation"], lay)}
    _check_lengths(where, out, out["observations"].shape[0], "observations", lay)
    meta = dict(metadata or {})
    try:
        meta_json = json.dumps(meta, allow_nan=False,
                               default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
    except ValueError as err:
        raise DatasetError(f"{where}: metadata is not JSON-serialisable: {err}") from err

    def write(tmp: pathlib.Path) -> None:
        with _h5py().File(tmp, "w") as f:
            for key, value in out.items():
                f.create_dataset(key, data=value)
            f.attrs[METADATA_ATTR] = meta_json
            for key, value in meta.items():
                if isinstance(value, (str, bool, int, float)) and key != METADATA_ATTR:
                    f.attrs[key] = value

    _write_atomic(path, overwrite, write)
    return path


def _minari_dir(directory: pathlib.Path) -> pathlib.Path:
    for candidate in (directory / "data", directory):
        if (candidate / "metadata.json").is_file() or (candidate / "main_data.hdf5").is_file():
            return candidate
    if not directory.is_dir():
        raise DatasetError(f"{directory}: no such directory; expected a Minari dataset with "
                           f"{MINARI_LAYOUT}")
    raise DatasetError(f"{directory}: no Minari data found; expected {MINARI_LAYOUT}")


def _minari_metadata(meta_path: pathlib.Path) -> Dict[str, Any]:
    """``metadata.json`` as a dict (it must exist, be a JSON object and say ``hdf5``)."""
    if not meta_path.is_file():
        raise DatasetError(f"{meta_path}: missing; expected {MINARI_LAYOUT}")
    try:
        minari_meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as err:
        raise DatasetError(f"{meta_path}: not valid JSON ({err})") from err
    if not isinstance(minari_meta, dict):
        raise DatasetError(f"{meta_path}: expected a JSON object")
    fmt = minari_meta.get("data_format", "hdf5")
    if fmt != "hdf5":
        raise DatasetError(f"{meta_path}: data_format is {fmt!r}; only 'hdf5' is supported")
    return minari_meta


def _minari_episode_ids(main_path: pathlib.Path, f, minari_meta: Mapping[str, Any]) -> list[int]:
    """``[0, ..., total_episodes - 1]``: the ``episode_<i>`` groups of ``f``, all present."""
    ids = sorted(int(m.group(1)) for k in f.keys()
                 if (m := re.fullmatch(r"episode_(\d+)", k)))
    expected = minari_meta.get("total_episodes", len(ids))
    if ids != list(range(expected)):
        shown = f"{ids[:5]}{'...' if len(ids) > 5 else ''}"
        raise DatasetError(f"{main_path}: holds episodes {shown} ({len(ids)} groups); "
                           f"expected episode_0..episode_{expected - 1} "
                           f"(total_episodes={expected} in metadata.json)")
    if not ids:
        raise DatasetError(f"{main_path}: no episode_<i> groups; expected {MINARI_LAYOUT}")
    return ids


def _minari_episode(where: str, group) -> Transition:
    """One episode group's ``T`` transitions (``observations`` holds ``T + 1`` rows)."""
    raw = {k: _read(where, group, k, MINARI_LAYOUT) for k in
           ("observations", "actions", "rewards", "terminations", "truncations")}
    obs = _as_float(where, "observations", raw["observations"], 2, MINARI_LAYOUT)
    steps = obs.shape[0] - 1
    arrays = {k: _as_float(where, k, raw[k], rank, MINARI_LAYOUT)
              for k, rank in (("actions", 2), ("rewards", 1))}
    arrays.update({k: _as_flag(where, k, raw[k], MINARI_LAYOUT)
                   for k in ("terminations", "truncations")})
    if steps < 1:
        raise DatasetError(f"{where}: 'observations' has {obs.shape[0]} rows; expected "
                           "T + 1 >= 2 (T steps plus the final observation)")
    for key, a in arrays.items():
        if a.shape[0] != steps:
            raise DatasetError(f"{where}: '{key}' has {a.shape[0]} rows but "
                               f"'observations' has {obs.shape[0]}; expected T = "
                               f"{steps} (observations holds T + 1 rows)")
    return Transition(
        obs=obs[:-1], action=arrays["actions"], reward=arrays["rewards"],
        next_obs=obs[1:], done=arrays["terminations"].astype(np.float32),
        truncation=(arrays["truncations"] & ~arrays["terminations"]).astype(np.float32))


def import_minari(directory: PathLike, *, task: str | None = None
                  ) -> Tuple[Transition, Dict[str, Any]]:
    """Reads a local Minari HDF5 dataset (layout: module doc) without the ``minari`` package.

    ``directory`` is the dataset directory (holding ``data/``) or its ``data`` directory. Episode
    ``i`` contributes ``obs = observations[:-1]``, ``next_obs = observations[1:]``;
    ``done = terminations``, ``truncation = truncations and not terminations``. Episodes are read
    in index order. Minari's ``ref_min_score``/``ref_max_score``, if present, are kept as
    ``reference_returns``.

    Raises:
        DatasetError: missing files or keys, wrong ranks, ``observations`` not ``T + 1`` rows,
            mismatched lengths or widths, non-finite values, unsupported spaces or formats.
    """
    data_dir = _minari_dir(pathlib.Path(directory))
    meta_path, main_path = data_dir / "metadata.json", data_dir / "main_data.hdf5"
    minari_meta = _minari_metadata(meta_path)
    if not main_path.is_file():
        raise DatasetError(f"{main_path}: missing; expected {MINARI_LAYOUT}")
    with _open_h5(main_path, "Minari main_data.hdf5") as f:
        ids = _minari_episode_ids(main_path, f, minari_meta)
        parts = [_minari_episode(f"{main_path}: episode_{i}", f[f"episode_{i}"]) for i in ids]
    widths = {(p.obs.shape[1], p.action.shape[1]) for p in parts}
    if len(widths) != 1:
        raise DatasetError(f"{main_path}: episodes disagree on (obs_dim, act_dim): "
                           f"{sorted(widths)}; expected one Box observation/action shape")
    tr = Transition(*(np.concatenate([getattr(p, k) for p in parts]) for k in
                      ("obs", "action", "reward", "next_obs", "done", "truncation")))
    meta: Dict[str, Any] = {"source_format": "minari_hdf5", "source_path": str(data_dir),
                            "num_episodes": len(parts), "minari": minari_meta}
    if "ref_min_score" in minari_meta and "ref_max_score" in minari_meta:
        meta["reference_returns"] = {"random": minari_meta["ref_min_score"],
                                     "expert": minari_meta["ref_max_score"]}
    if task is not None:
        meta["task"] = task
    return tr, meta


def import_dataset(source: PathLike, out: PathLike, *, task: str,
                   fmt: str = "auto") -> Dict[str, Any]:
    """Imports a D4RL HDF5 file or a Minari directory into a bremen_jax dataset file ``out``.

    ``fmt``: ``"d4rl"``, ``"minari"`` or ``"auto"`` (a directory is Minari, a file D4RL).
    Returns the saved metadata. Never overwrites ``out``.
    """
    source = pathlib.Path(source)
    if fmt == "auto":
        fmt = "minari" if source.is_dir() else "d4rl"
    if fmt not in ("d4rl", "minari"):
        raise ValueError(f"fmt must be 'auto', 'd4rl' or 'minari', got {fmt!r}")
    if pathlib.Path(out).exists():
        raise FileExistsError(f"refusing to overwrite existing file {out}")
    reader = import_minari if fmt == "minari" else import_d4rl_hdf5
    tr, meta = reader(source, task=task)
    meta.setdefault("behavior_policy", {"imported_from": fmt, "source": str(source)})
    save_dataset(out, tr, meta)
    from bremen_jax.data.dataset import dataset_info
    return dataset_info(out)
